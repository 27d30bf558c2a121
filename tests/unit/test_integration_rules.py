"""Pure rules of the P1/SDS integrations: supply allocation, versioned rules, cursors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from common.domain.eligibility import load_cohort_rules
from common.domain.rulebook import load_rule_book
from common.domain.supply import SupplySlot, allocate, iso_week, week_days
from common.domain.vaccines import load_catalogue
from common.services.sync_cursor import cursor_behind

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _slot(n: int, booked: int = 0, template: int = 5, capacity: int | None = None, fixed=False):
    return SupplySlot(
        slot_id=f"s{n}",
        starts_at=T0 + timedelta(hours=n),
        capacity=template if capacity is None else capacity,
        booked=booked,
        template=template,
        fixed=fixed,
    )


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (0, [0, 0, 0]),
        (6, [5, 1, 0]),
        (15, [5, 5, 5]),
        (100, [5, 5, 5]),
    ],
)
def test_budget_opens_seats_earliest_first_up_to_the_template(budget, expected):
    targets = allocate([_slot(0), _slot(1), _slot(2)], budget)
    assert [targets[f"s{i}"] for i in range(3)] == expected


def test_bookings_are_kept_earliest_first_and_the_latest_lose_their_seats():
    slots = [_slot(0, booked=3), _slot(1), _slot(2, booked=3), _slot(3, booked=3)]
    targets = allocate(slots, 6)
    assert [targets[f"s{i}"] for i in range(4)] == [3, 0, 3, 0]
    # Enough for the bookings: they all stay, the rest opens earliest first.
    targets = allocate(slots, 12)
    assert [targets[f"s{i}"] for i in range(4)] == [5, 1, 3, 3]


def test_started_and_blocked_slots_use_budget_but_are_never_changed():
    slots = [_slot(0, booked=4, fixed=True), _slot(1), _slot(2, capacity=0, fixed=True)]
    targets = allocate(slots, 6)
    assert targets == {"s1": 2}


def test_iso_weeks():
    assert iso_week(date(2021, 1, 3)) == "2020-W53"
    assert iso_week(date(2026, 3, 2)) == "2026-W10"
    assert week_days("2026-W10") == (date(2026, 3, 2), date(2026, 3, 8))


def test_rules_for_a_day_picks_the_version_in_force():
    book = load_rule_book()
    assert book.rules_for(date(2021, 4, 19)).cohorts.version == "2021.03"
    assert book.rules_for(date(2021, 4, 20)).cohorts.version == "2021.12"
    assert book.rules_for(date(2020, 6, 1)).cohorts.version == "2021.03"  # before the first
    # The latest versions are the files every other part of the code loads by default.
    assert book.latest.cohorts == load_cohort_rules()
    assert book.latest.catalogue == load_catalogue()


def test_an_older_version_really_differs():
    book = load_rule_book()
    born_1985 = date(1985, 6, 1)
    may = datetime(2021, 5, 2, 12, 0, tzinfo=UTC)
    assert book.cohorts_for(date(2021, 4, 1)).opens_at(born_1985, "portal") is None
    assert book.cohorts_for(may.date()).is_open(born_1985, "portal", may)


def test_the_cursor_never_goes_backwards():
    assert cursor_behind("5", "9") and not cursor_behind("10", "9")
    assert not cursor_behind("9", "9") and not cursor_behind("1", None)
    assert cursor_behind("", "3")
