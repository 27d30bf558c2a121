"""The expected wait for a first dose: the pure estimate (common/domain/wait_estimate.py) and
the scheduled measurement on an in-memory store (common/services/expected_wait.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from common.adapters.firestore_store import APPOINTMENTS
from common.domain.rulebook import load_rule_book
from common.domain.wait_estimate import estimate_wait
from common.services.expected_wait import (
    WAIT_ESTIMATES,
    WAITLIST,
    BookingRateMeter,
    cohort_of,
    cohorts,
    county_id,
    no_waitlist,
)
from tests.support.fake_store import FakeUnitsOfWork

NOW = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("free", "rate", "waitlist", "opens_in", "days", "basis"),
    [
        ([0, 0, 3, 0, 2], 0.0, 0, 0, 2, "free_seats"),  # the first free seat's day
        ([0, 0, 3, 0, 2], 0.0, 2, 0, 2, "free_seats"),  # the 3rd seat, still day 2
        ([0, 0, 3, 0, 2], 0.0, 3, 0, 4, "free_seats"),  # the 4th: day 4
        ([5], 10.0, 0, 0, 0, "free_seats"),  # today
        ([0, 0, 3, 0, 2], 5.0, 5, 0, 15, "booking_rate"),  # ceil(1 / 5 + 14)
        ([0, 0, 3, 0, 2], 0.5, 9, 0, 24, "booking_rate"),  # ceil(5 / 0.5 + 14)
        ([], 2.0, 0, 0, 15, "booking_rate"),  # ceil(1 / 2 + 14)
        ([], 0.0, 0, 0, None, "no_basis"),  # nothing free, nothing booked
        ([0, 4], 0.0, 0, 30, 30, "free_seats"),  # not before the cohort opens
        ([], 1.0, 0, 3, 15, "booking_rate"),
    ],
)
def test_the_formula(free, rate, waitlist, opens_in, days, basis) -> None:
    estimate = estimate_wait(free, rate, waitlist, opens_in_days=opens_in, lead_days=14)
    assert (estimate.days, estimate.basis) == (days, basis)
    assert estimate.free_seats == sum(free) and estimate.position == waitlist + 1


def test_the_wait_grows_as_free_seats_go_and_shrinks_as_the_rate_rises() -> None:
    days = [estimate_wait([2, 2, 2], 3.0, w).days for w in range(10)]
    assert days == sorted(days)  # more people ahead: never sooner
    slower, faster = estimate_wait([], 1.0, 20), estimate_wait([], 10.0, 20)
    assert slower.days > faster.days


def test_the_formula_refuses_negative_inputs() -> None:
    with pytest.raises(ValueError):
        estimate_wait([1], -1.0)
    with pytest.raises(ValueError):
        estimate_wait([1], 1.0, -2)


def test_county_ids_keep_voivodeship_and_county_apart() -> None:
    assert county_id("małopolskie", "Kraków") == "malopolskie--krakow"
    assert county_id("dolnośląskie", "Powiat średzki") == "dolnoslaskie--powiat-sredzki"
    assert county_id("wielkopolskie", "Powiat średzki") != county_id(
        "dolnośląskie", "Powiat średzki"
    )


def test_cohorts_of_the_rules_in_force() -> None:
    book = load_rule_book()
    keys = [c[0] for c in cohorts(book, NOW)]
    assert "1941-1950" in keys and "-1940" in keys and "2010-" in keys
    assert len(keys) == len(set(keys))
    # Overlapping ranges: the one that opens first is the person's cohort.
    assert cohort_of(book, date(1944, 5, 14), NOW) == "1941-1950"
    assert cohort_of(book, date(1980, 5, 17), NOW) == "-2009"
    assert cohort_of(book, date(2015, 1, 1), NOW) == "2010-"


def test_the_meter_counts_each_countys_bookings_of_the_last_day() -> None:
    units = FakeUnitsOfWork(now=lambda: NOW)
    points = [
        {"point_id": f"pt-{i:05d}", "county": "Kraków", "voivodeship": "małopolskie"}
        for i in range(1, 46)  # more than one `in` chunk of 30
    ] + [{"point_id": "pt-00099", "county": "Warszawa", "voivodeship": "mazowieckie"}]
    created = [
        ("pt-00001", NOW - timedelta(hours=1)),
        ("pt-00040", NOW - timedelta(hours=23)),  # the second chunk
        ("pt-00002", NOW - timedelta(hours=25)),  # too old
        ("pt-00099", NOW - timedelta(minutes=5)),
    ]
    for n, (point_id, at) in enumerate(created):
        units.store.put(APPOINTMENTS, f"a{n}", {"point_id": point_id, "created_at": at})
    krakow = county_id("małopolskie", "Kraków")
    units.store.put(WAITLIST, "w1", {"county_id": krakow, "status": "waiting"})
    units.store.put(WAITLIST, "w2", {"county_id": krakow, "status": "offered"})
    result = BookingRateMeter(units, lambda: points).measure(NOW)
    assert result["counties"] == 2 and result["bookings"] == 3
    document = units.store.data(WAIT_ESTIMATES, krakow)
    assert (document["bookings"], document["rate_per_day"], document["waitlist"]) == (2, 2.0, 1)
    assert document["points"] == 45 and document["measured_at"] == NOW
    warsaw = units.store.data(WAIT_ESTIMATES, county_id("mazowieckie", "Warszawa"))
    assert (warsaw["bookings"], warsaw["waitlist"]) == (1, 0)
    # Another waitlist's length comes through the interface: a function per county.
    BookingRateMeter(units, lambda: points, waitlist=no_waitlist).measure(NOW)
    assert units.store.data(WAIT_ESTIMATES, krakow)["waitlist"] == 0
