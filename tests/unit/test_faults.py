"""The simulators' fault switches, as pure logic (no HTTP)."""

from __future__ import annotations

import random
import threading

import pytest
from pydantic import ValidationError

from emulator.faults import FaultConfig, FaultInjector, decide, should_duplicate


def _run(config: FaultConfig, n: int, seed: str = "s") -> list[int | None]:
    rng = random.Random(seed)
    statuses = []
    for _ in range(n):
        decision, config = decide(config, rng)
        statuses.append(decision.status)
    return statuses


def test_no_faults_pass_without_delay_or_randomness() -> None:
    rng = random.Random(1)
    before = rng.getstate()
    decision, after = decide(FaultConfig(), rng)
    assert decision.passes and decision.delay_s == 0 and decision.reason is None
    assert after == FaultConfig()
    assert rng.getstate() == before  # no draw: adding error_rate later does not shift others


def test_latency_delays_passing_and_failing_requests() -> None:
    decision, _ = decide(FaultConfig(latency_ms=250), random.Random(0))
    assert decision.passes and decision.delay_s == pytest.approx(0.25)
    decision, _ = decide(FaultConfig(latency_ms=250, fail_next=1), random.Random(0))
    assert decision.status == 503 and decision.delay_s == pytest.approx(0.25)


def test_fail_next_counts_down_then_recovers() -> None:
    config = FaultConfig(fail_next=2, retry_after_s=7)
    rng = random.Random(0)
    first, config = decide(config, rng)
    second, config = decide(config, rng)
    third, config = decide(config, rng)
    assert (first.status, first.reason, first.retry_after_s) == (503, "fail_next", 7)
    assert second.status == 503
    assert third.passes
    assert config.fail_next == 0


def test_down_answers_at_once_and_does_not_consume_fail_next() -> None:
    config = FaultConfig(down=True, latency_ms=5000, fail_next=3)
    decision, after = decide(config, random.Random(0))
    assert (decision.status, decision.reason, decision.delay_s) == (503, "down", 0.0)
    assert decision.close_connection
    assert after.fail_next == 3
    decision, _ = decide(FaultConfig(down=True, down_mode="503"), random.Random(0))
    assert decision.status == 503 and not decision.close_connection


def test_error_rate_extremes_and_status() -> None:
    assert _run(FaultConfig(error_rate=1.0, error_status=429), 20) == [429] * 20
    assert _run(FaultConfig(error_rate=0.0), 20) == [None] * 20


def test_error_rate_is_deterministic_for_a_seed_and_roughly_right() -> None:
    config = FaultConfig(error_rate=0.3)
    first = _run(config, 500, seed="x")
    assert first == _run(config, 500, seed="x")
    assert first != _run(config, 500, seed="y")
    failures = sum(1 for s in first if s is not None)
    assert 100 < failures < 200


@pytest.mark.parametrize(
    "bad",
    [
        {"error_rate": 1.5},
        {"duplicate_rate": -0.1},
        {"latency_ms": -1},
        {"fail_next": -1},
        {"error_status": 404},
        {"error_status": 200},
        {"down_mode": "refuse"},
        {"surprise": True},
    ],
)
def test_config_rejects_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FaultConfig.model_validate(bad)


def test_error_status_may_be_429_or_any_5xx() -> None:
    assert FaultConfig(error_status=429).error_status == 429
    assert FaultConfig(error_status=599).error_status == 599


def test_duplicates_follow_their_rate_deterministically() -> None:
    rng = random.Random(3)
    before = rng.getstate()
    assert not should_duplicate(FaultConfig(), rng)
    assert rng.getstate() == before
    assert all(should_duplicate(FaultConfig(duplicate_rate=1.0), rng) for _ in range(10))
    pattern = [should_duplicate(FaultConfig(duplicate_rate=0.5), random.Random(9)) for _ in "ab"]
    assert pattern == [should_duplicate(FaultConfig(duplicate_rate=0.5), random.Random(9))] * 2


def test_injector_replace_reseeds_so_runs_are_reproducible() -> None:
    injector = FaultInjector(seed=5)
    config = FaultConfig(error_rate=0.5, duplicate_rate=0.5, seed=42)
    injector.replace(config)
    first = [(injector.next_decision().status, injector.duplicate()) for _ in range(50)]
    injector.replace(config)
    second = [(injector.next_decision().status, injector.duplicate()) for _ in range(50)]
    assert first == second


def test_duplicate_stream_does_not_shift_error_stream() -> None:
    config = FaultConfig(error_rate=0.5, duplicate_rate=0.5, seed=1)
    quiet, noisy = FaultInjector(), FaultInjector()
    quiet.replace(config)
    noisy.replace(config)
    statuses_quiet = [quiet.next_decision().status for _ in range(40)]
    statuses_noisy = []
    for _ in range(40):
        noisy.duplicate()
        statuses_noisy.append(noisy.next_decision().status)
    assert statuses_quiet == statuses_noisy


def test_injector_reset_restores_defaults_with_its_seed() -> None:
    injector = FaultInjector(seed=11)
    injector.replace(FaultConfig(down=True, fail_next=4, seed=3))
    assert injector.reset() == FaultConfig(seed=11)
    assert injector.next_decision().passes


def test_fail_next_is_exact_under_concurrency() -> None:
    injector = FaultInjector()
    injector.replace(FaultConfig(fail_next=50))
    failures: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        count = sum(1 for _ in range(40) if not injector.next_decision().passes)
        with lock:
            failures.append(count)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(failures) == 50
    assert injector.config.fail_next == 0
