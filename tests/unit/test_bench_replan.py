"""The re-plan benchmark's pure helpers (bench/replan.py): its calendar, phases, arithmetic."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from bench.replan import (
    PROBE_PRODUCT,
    PROBE_STARTS,
    Plan,
    _args,
    _Timers,
    by_phase,
    calendar_entries,
    check_offers,
    extrapolate,
    latency_summary,
    phase_of,
    plan_from,
    probe_pesels,
    probe_slot_ids,
    rate_by_window,
)
from common.domain.pesel import parse_pesel

TODAY = date(2026, 12, 2)
OPENS = TODAY + timedelta(days=30)


def test_the_stream_books_before_the_opening_and_the_re_plan_has_room_after_it() -> None:
    entries = calendar_entries(TODAY, OPENS, replan_days=50, probe_days=14)
    before = [e for e in entries if e[0] < OPENS]
    after = [e for e in entries if e[0] >= OPENS]
    # The stream's slots: Jcovden only, tomorrow on, never on or after the opening.
    assert {e[2] for e in before} == {PROBE_PRODUCT}
    assert min(e[0] for e in before) == TODAY + timedelta(days=1)
    assert len(before) == 14 * 2
    # Both products every day from the opening; a dose 1 on the opening finds its dose 2 on
    # any day of its window (21-42 days), at the same point.
    days = {e[0] for e in after if e[2] == "comirnaty"}
    assert {OPENS + timedelta(days=n) for n in range(21, 43)} <= days
    assert {e[0] for e in after if e[2] == "jcovden"} == days
    # A short wait to the opening: the stream's days stop short of it.
    soon = calendar_entries(TODAY, TODAY + timedelta(days=5), replan_days=1, probe_days=14)
    assert max(e[0] for e in soon if e[1] in PROBE_STARTS) == TODAY + timedelta(days=4)


def test_stream_slots_are_before_the_opening() -> None:
    ids = probe_slot_ids(["pt-00001", "pt-00002"], TODAY, OPENS, 3)
    assert len(ids) == 2 * 3 * 2 and len(set(ids)) == len(ids)
    assert all(i.endswith("_jcovden") for i in ids)
    assert "pt-00001_20261203_0800_jcovden" in ids


def test_stream_patients_are_distinct_and_outside_the_band() -> None:
    pesels = probe_pesels(3000)
    assert len(set(pesels)) == 3000
    years = {parse_pesel(p, TODAY).birth_date.year for p in pesels}
    assert min(years) == 1940 and max(years) == 1960  # the band (1961-1980) is never booked


def test_a_booking_belongs_to_the_phase_it_was_due_in() -> None:
    phases = [("baseline", 0.0, 10.0), ("re-plan", 10.0, 30.0)]
    assert phase_of(0.0, phases) == "baseline"
    assert phase_of(10.0, phases) == "re-plan"
    assert phase_of(30.0, phases) is None
    samples = [(1.0, 0.1, "ok"), (2.0, 0.3, "ok"), (12.0, 0.5, "ok"), (15.0, 9.0, "409:full")]
    found = by_phase(samples, phases)
    assert found["baseline"]["bookings"] == 2 and found["baseline"]["p50_ms"] == 200.0
    assert found["baseline"]["per_s"] == 0.2
    # Failures are counted, not mixed into the latencies of the bookings made.
    assert found["re-plan"]["ok"] == 1 and found["re-plan"]["failed"] == 1
    assert found["re-plan"]["max_ms"] == 500.0
    assert found["re-plan"]["outcomes"] == {"409:full": 1, "ok": 1}


def test_an_empty_phase_has_no_made_up_latency() -> None:
    empty = latency_summary([], 0.0)
    assert empty["bookings"] == 0 and empty["p99_ms"] is None and empty["per_s"] is None


def test_extrapolation_and_the_default_pace() -> None:
    # The 60,000 cases at the default 20 a second: 50 minutes, when the system keeps up.
    fast = extrapolate(60_000, 40.0)
    assert fast["at_measured_rate_s"] == 1500
    assert fast["default_pace_alone_s"] == 3000 and fast["at_default_rate_s"] == 3000
    assert fast["pace_decides"]
    # A system slower than the pace: the measured rate decides.
    slow = extrapolate(60_000, 7.5)
    assert slow["at_measured_rate_s"] == slow["at_default_rate_s"] == 8000
    assert slow["default_pace_alone_s"] == 3000 and not slow["pace_decides"]
    assert extrapolate(10, 0.0)["at_measured_rate_s"] is None


def _offer(offer_id: str, *seats: tuple[str, str, date]) -> dict:
    return {
        "offer_id": offer_id,
        "seats": [{"seat_id": s, "point_id": p, "day": d.isoformat()} for s, p, d in seats],
    }


def test_offers_are_checked_for_the_opening_the_window_and_double_holds() -> None:
    good = [
        _offer("a", ("s1", "pt-1", OPENS)),
        _offer("b", ("s2", "pt-1", OPENS), ("s3", "pt-1", OPENS + timedelta(days=35))),
        _offer("c"),  # escalated: no seats
    ]
    assert check_offers(good, OPENS)["correct"]
    assert check_offers(good, OPENS)["seats_held"] == 3
    bad = [
        _offer("d", ("s4", "pt-1", OPENS - timedelta(days=1))),
        _offer("e", ("s5", "pt-1", OPENS), ("s6", "pt-2", OPENS + timedelta(days=50))),
        _offer("f", ("s4", "pt-1", OPENS)),
    ]
    found = check_offers(bad, OPENS)
    assert found["before_opening"] == 1 and found["doses_at_two_points"] == 1
    assert found["dose_2_out_of_window"] == 1 and found["seats_held_twice"] == 1
    assert not found["correct"]


def test_quick_and_flags_make_the_plan() -> None:
    assert plan_from(_args([])) == Plan()
    quick = plan_from(_args(["--quick"]))
    assert (quick.points, quick.cases, quick.replan_cases) == (700, 6000, 1000)
    given = plan_from(_args(["--quick", "--replan-cases", "50", "--probe-rate", "0"]))
    assert given.replan_cases == 50 and given.probe_rate == 0.0 and given.points == 700
    with pytest.raises(SystemExit):
        _args(["--no-such-flag"])


def test_the_rate_minute_by_minute() -> None:
    ended = [0.5, 1.0, 61.0, 62.0, 63.0, 121.0]
    assert rate_by_window(ended, 0.0, 150.0, 60.0) == [0.0, 0.1, 0.0]
    assert rate_by_window([1.0, 2.0], 0.0, 4.0, 60.0) == [0.5]  # a short run: its own length
    assert rate_by_window([], 5.0, 5.0) == []


def test_timers_wrap_and_restore_methods() -> None:
    class Service:
        def work(self, x: int) -> int:
            return x + 1

    class Plain:
        def work(self) -> str:
            return "plain"

    service, timers = Service(), _Timers()
    timers.wrap(service, "work", "work")
    timers.wrap(Plain, "work", "class")
    assert service.work(1) == 2 and Plain().work() == "plain"
    assert set(timers.seconds) == {"work", "class"}
    timers.restore()
    assert "work" not in vars(service) and Plain.work.__name__ == "work"
