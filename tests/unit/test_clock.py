"""The one clock (common/clock.py): shifts, the clock file, and refusal outside the emulators."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common import clock
from common.config import Settings


def test_a_shifted_clock_runs_from_its_offset() -> None:
    shifted = clock.ShiftedClock(3600.0)
    gap = shifted.now() - datetime.now(UTC)
    assert timedelta(minutes=59) < gap < timedelta(minutes=61)
    assert abs(shifted.time() - (datetime.now(UTC).timestamp() + 3600)) < 5


@pytest.mark.parametrize("hhmm", ["00:10", "11:00", "18:30", "23:50"])
def test_clock_at_is_that_warsaw_time_today(hhmm: str) -> None:
    real = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    moment = clock.parse_clock_at(hhmm, real).astimezone(clock.WARSAW)
    assert f"{moment:%H:%M}" == hhmm and moment.date() == real.astimezone(clock.WARSAW).date()


def test_clock_at_accepts_an_iso_datetime_naive_meaning_warsaw() -> None:
    real = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    moment = clock.parse_clock_at("2026-07-01T08:15", real)
    assert moment == datetime(2026, 7, 1, 6, 15, tzinfo=UTC)  # summer time: UTC+2


def test_clock_at_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        clock.parse_clock_at("late evening", datetime.now(UTC))


def test_clock_at_is_resolved_once_and_shared_with_children() -> None:
    env = {clock.AT_VARIABLE: "23:50"}
    offset = clock.resolve_offset(env)
    # Written back as seconds: a child process that inherits env gets exactly this offset,
    # however much later it starts.
    assert env[clock.OFFSET_VARIABLE] == f"{offset:.3f}"
    assert clock.resolve_offset(env) == pytest.approx(offset, abs=1e-3)
    moment = clock.ShiftedClock(offset).now().astimezone(clock.WARSAW)
    assert f"{moment:%H:%M}" in ("23:50", "23:51")


def test_no_variables_mean_the_real_time() -> None:
    assert clock.resolve_offset({}) == 0.0


def test_a_clock_file_moves_every_reader_at_once(tmp_path) -> None:
    path = tmp_path / "clock.json"
    writer = clock.FileClock(path)
    reader = clock.FileClock(path, check_every_s=0.0)
    assert reader.offset_s == 0.0  # no file yet: the real time
    target = datetime(2030, 1, 2, 17, 0, 5, tzinfo=clock.WARSAW)
    writer.move_to(target)
    assert abs((reader.now() - target).total_seconds()) < 2
    writer.set_offset(-60.0)
    assert reader.offset_s == -60.0


def test_a_half_written_clock_file_keeps_the_last_offset(tmp_path) -> None:
    path = tmp_path / "clock.json"
    reader = clock.FileClock(path, check_every_s=0.0)
    clock.write_clock_file(path, 120.0)
    assert reader.offset_s == 120.0
    path.write_text('{"offset')
    assert reader.offset_s == 120.0


def test_a_settable_clock_moves_only_by_hand() -> None:
    start = datetime(2026, 12, 2, 22, 50, tzinfo=UTC)
    settable = clock.SettableClock(start)
    assert settable.now() == start
    assert settable.advance(timedelta(minutes=20)) == start + timedelta(minutes=20)
    with pytest.raises(ValueError):
        clock.SettableClock(datetime(2026, 1, 1))


@pytest.mark.parametrize("variable", clock.CLOCK_VARIABLES)
def test_a_shifted_clock_is_refused_outside_the_emulators(variable: str) -> None:
    env = {"GOOGLE_CLOUD_PROJECT": "prod", "PESEL_HASH_KEY": "k", variable: "10"}
    with pytest.raises(RuntimeError, match="only with the local emulators"):
        Settings.from_env(env)
    # ... and allowed with them.
    Settings.from_env({**env, "LOCAL_STACK": "1", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080"})
