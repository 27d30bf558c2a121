"""The re-plan's pure decisions (common/domain/replan.py): where and when, which first, what
after a NIE, and one offer per case and job."""

from __future__ import annotations

from datetime import date, timedelta

from common.domain.replan import (
    Candidate,
    after_no,
    has_alternative,
    offer_id,
    rank,
    window,
)

TODAY = date(2031, 4, 1)  # a Tuesday
X, Z = "pt-x", "pt-z"


def test_never_before_tomorrow_and_never_the_slot_cut() -> None:
    limits = window(reasons=["capacity"], today=TODAY, original_slots=[(X, "slot-1", TODAY)])
    assert limits.date_from == TODAY + timedelta(days=1) and limits.date_to is None
    assert not limits.allows(X, "slot-1", TODAY + timedelta(days=2))
    assert limits.allows(X, "slot-2", TODAY + timedelta(days=2))
    assert not limits.allows(X, "slot-2", TODAY)


def test_a_shortfall_keeps_away_from_its_point_for_that_week_only() -> None:
    day = TODAY + timedelta(days=6)  # Monday of the next week
    limits = window(reasons=["supply"], today=TODAY, original_slots=[(X, "s", day)])
    assert not limits.allows(X, "other", day + timedelta(days=2))  # same ISO week at X
    assert limits.allows(Z, "other", day + timedelta(days=2))  # another point
    assert limits.allows(X, "other", day + timedelta(days=7))  # the week after


def test_a_cohort_case_waits_for_its_opening() -> None:
    opens = TODAY + timedelta(days=50)
    limits = window(
        reasons=["cohort"], today=TODAY, original_slots=[(X, "s", TODAY + timedelta(days=3))],
        cohort_opens=opens,
    )  # fmt: skip
    assert limits.date_from == opens
    assert not limits.allows(Z, "a", opens - timedelta(days=1))
    assert limits.allows(Z, "a", opens)


def test_a_lone_dose_2_stays_in_its_window_and_offered_slots_are_not_offered_again() -> None:
    interval = (TODAY + timedelta(days=21), TODAY + timedelta(days=42))
    limits = window(
        reasons=["interval"], today=TODAY, original_slots=[(X, "s", TODAY)],
        offered_before=["seen"], dose_window=interval,
    )  # fmt: skip
    assert limits.date_from == TODAY + timedelta(days=21)
    assert limits.date_to == TODAY + timedelta(days=42)
    assert not limits.allows(Z, "seen", TODAY + timedelta(days=30))
    assert not limits.allows(Z, "new", TODAY + timedelta(days=43))


def test_nearest_point_first_then_the_day_nearest_the_booked_one() -> None:
    booked = TODAY + timedelta(days=10)
    far_soon = Candidate(Z, "z1", booked, 30.0)
    near_late = Candidate(X, "x2", booked + timedelta(days=5), 1.2)
    near_close = Candidate(X, "x1", booked - timedelta(days=1), 1.4)
    assert rank([far_soon, near_late, near_close], booked) == [near_close, near_late, far_soon]


def test_a_product_refused_has_no_alternative_of_it() -> None:
    assert has_alternative(["capacity"]) and has_alternative(["cohort", "interval"])
    assert not has_alternative(["product"]) and not has_alternative(["age", "cohort"])


def test_after_a_nie_the_next_offer_until_the_limit_then_the_hotline() -> None:
    assert [after_no(n, 3) for n in (1, 2, 3)] == ["offer", "offer", "escalate"]


def test_one_offer_per_case_and_job() -> None:
    assert offer_id("job", "series") == offer_id("job", "series")
    assert offer_id("job", "series") != offer_id("job2", "series")
    assert len(offer_id("j", "s")) == 32 and "series" not in offer_id("job", "series")
