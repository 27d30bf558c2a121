"""The national-peak mix scheduler: exact proportions, even spread, counted fallbacks."""

from __future__ import annotations

import threading
from collections import Counter

from bench.mix import PEAK_FALLBACKS, PEAK_WEIGHTS, MixScheduler


def test_each_cycle_issues_exactly_the_weights() -> None:
    scheduler = MixScheduler(PEAK_WEIGHTS)
    cycle = sum(PEAK_WEIGHTS.values())
    for _ in range(5):
        picks = Counter(scheduler.next() for _ in range(cycle))
        assert picks == Counter(PEAK_WEIGHTS)


def test_searches_to_bookings_is_three_to_one() -> None:
    scheduler = MixScheduler(PEAK_WEIGHTS)
    picks = Counter(scheduler.next() for _ in range(1800))
    assert picks["search"] == 3 * picks["book"]


def test_the_mix_is_spread_evenly_not_in_bursts() -> None:
    scheduler = MixScheduler({"search": 3, "book": 1})
    sequence = [scheduler.next() for _ in range(40)]
    # Never two bookings in a row, never more than three searches in a row.
    text = "".join("b" if k == "book" else "s" for k in sequence)
    assert "bb" not in text and "ssss" not in text


def test_the_sequence_is_deterministic() -> None:
    first = [MixScheduler(PEAK_WEIGHTS).next() for _ in range(1)]
    a, b = MixScheduler(PEAK_WEIGHTS), MixScheduler(PEAK_WEIGHTS)
    assert [a.next() for _ in range(100)] == [b.next() for _ in range(100)]
    assert first


def test_impossible_kinds_fall_back_along_the_chain_and_are_counted() -> None:
    scheduler = MixScheduler(PEAK_WEIGHTS, PEAK_FALLBACKS)
    nothing_booked = {"search", "book"}
    picks = Counter(scheduler.next(lambda k: k in nothing_booked) for _ in range(18))
    assert picks == Counter(search=12, book=6)
    assert scheduler.report()["substituted"] == {"reschedule->book": 1, "cancel->book": 1}
    # With nothing bookable either, a cancellation falls back twice: cancel -> book -> search.
    only_search = MixScheduler({"cancel": 1}, PEAK_FALLBACKS)
    assert only_search.next(lambda k: k == "search") == "search"


def test_a_kind_with_no_fallback_is_issued_anyway() -> None:
    scheduler = MixScheduler({"cancel": 1}, {})
    assert scheduler.next(lambda _: False) == "cancel"


def test_zero_weights_are_refused_or_dropped() -> None:
    import pytest

    with pytest.raises(ValueError):
        MixScheduler({"search": 0})
    assert set(MixScheduler({"search": 1, "book": 0}).weights) == {"search"}


def test_threads_share_one_sequence_without_losing_picks() -> None:
    scheduler = MixScheduler(PEAK_WEIGHTS)
    picks: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(180):
            kind = scheduler.next()
            with lock:
                picks.append(kind)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(picks) == Counter({k: w * 80 for k, w in PEAK_WEIGHTS.items()})
