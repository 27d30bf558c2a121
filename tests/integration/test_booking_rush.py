"""docs/reliability.md items 1 and 2: a rush at a cohort opening.

A barrier releases N = 10 x (K slots x capacity C) bookers at once, all wanting the same point
and day. Each behaves like a real portal client: it lists the day's free slots, books one at
random, and when that slot has just filled up it looks again, until it has a booking or the
day shows no free seat. The listing trails the bookings by the folder's round (it runs in the
background, as in production), so a booker may find a listed slot full a few times first.
Exactly min(N, K*C) must succeed, no slot may exceed its capacity, no patient may hold two
bookings, the availability figures must equal the bookings (once folded), and no booker may
fail in any other way (a 5xx, an abort that surfaced) while seats remained.
"""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from datetime import time, timedelta

import pytest

from common.adapters.firestore_store import APPOINTMENTS, AVAILABILITY, SEATS
from common.domain.calendar import PointCalendar
from tests.support.stack import (
    Api,
    add_patient,
    add_point,
    firestore_client,
    folding,
    today_warsaw,
)

REPEATS = int(os.environ.get("RUSH_REPEATS", "4"))


def _rush(project: str, seed: int, product: str, second_dose_capacity: int = 0):
    rng = random.Random(seed)
    slots_k = rng.randint(1, 3)
    capacity_c = rng.randint(1, 3)
    bookers_n = 10 * slots_k * capacity_c
    db = firestore_client(project)
    day = today_warsaw() + timedelta(days=2)
    slots = [(day, time(9, 15 * i), product, capacity_c) for i in range(slots_k)]
    if second_dose_capacity:
        slots.append((day + timedelta(days=35), time(10, 0), product, second_dose_capacity))
    add_point(db, "pt-00001", products=(product,), slots=slots)
    pesels = [add_patient(db, serial=i) for i in range(bookers_n)]
    api = Api(project)
    barrier = threading.Barrier(bookers_n)
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()

    def booker(index: int) -> None:
        token = api.token(f"patient-{index}", "patient", pesel=pesels[index])
        local = random.Random(seed * 1000 + index)
        barrier.wait()
        outcome = ("failed", "gave up")
        for attempt in range(60):
            listing = api.call(
                "GET",
                "/v1/points/pt-00001/slots",
                token=token,
                query={
                    "date_from": day.isoformat(),
                    "date_to": day.isoformat(),
                    "product": product,
                },
            )
            if listing.status_code != 200:
                outcome = ("failed", f"listing {listing.status_code}")
                break
            free = listing.get_json()["slots"]
            if not free:
                outcome = ("refused_full", "no free seat that day")
                break
            choice = local.choice(free)["slot_id"]
            response = api.call(
                "POST",
                "/v1/appointments",
                token=token,
                body={"slot_id": choice},
                key=f"rush-{index}-{attempt}",
            )
            if response.status_code == 201:
                outcome = ("booked", choice)
                break
            code = response.get_json()["error"]["code"]
            if response.status_code == 409 and code == "slot_unavailable":
                continue  # that slot filled up a moment ago: look again
            outcome = ("failed", f"{response.status_code} {code}")
            break
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=booker, args=(i,)) for i in range(bookers_n)]
    with folding(db):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    return db, slots_k, capacity_c, bookers_n, outcomes, day


def _assert_consistent(db, product: str, expected_bookings: int) -> None:
    seats = [s.to_dict() for s in db.collection(SEATS).stream()]
    appointments = [s.to_dict() for s in db.collection(APPOINTMENTS).stream()]
    booked = [a for a in appointments if a["status"] == "booked"]
    assert len(booked) == expected_bookings
    assert len(seats) == len(booked)
    # Every seat belongs to exactly one booked appointment and vice versa.
    assert sorted(s["appointment_id"] for s in seats) == sorted(a["appointment_id"] for a in booked)
    # No patient holds two bookings for one dose.
    per_dose = Counter((a["patient_key"], a["dose_number"]) for a in booked)
    assert max(per_dose.values(), default=0) == 1
    # No slot over capacity, and the availability figures equal the bookings.
    calendar = PointCalendar.from_document(
        "pt-00001", db.collection(AVAILABILITY).document("pt-00001").get().to_dict()
    )
    taken = Counter(s["slot_id"] for s in seats)
    for ref, slot in calendar.slots.items():
        assert taken[ref.slot_id] <= slot.capacity, ref.slot_id
        assert slot.free == slot.capacity - taken[ref.slot_id], ref.slot_id
        assert slot.free >= 0


@pytest.mark.parametrize("seed", range(REPEATS))
def test_rush_single_dose_books_exactly_the_capacity(project: str, seed: int) -> None:
    db, k, c, n, outcomes, _ = _rush(project, seed, "jcovden")
    results = Counter(kind for kind, _ in outcomes)
    failures = [detail for kind, detail in outcomes if kind == "failed"]
    assert failures == [], f"bookers failed while seats remained: {failures}"
    assert len(outcomes) == n
    assert results["booked"] == min(n, k * c)
    assert results["refused_full"] == n - min(n, k * c)
    _assert_consistent(db, "jcovden", k * c)


@pytest.mark.parametrize("seed", range(100, 100 + max(1, REPEATS // 2)))
def test_rush_two_doses_books_both_or_neither(project: str, seed: int) -> None:
    rng = random.Random(seed)
    db, k, c, n, outcomes, _ = _rush(project, seed, "comirnaty", second_dose_capacity=40)
    failures = [detail for kind, detail in outcomes if kind == "failed"]
    assert failures == []
    booked = sum(1 for kind, _ in outcomes if kind == "booked")
    assert booked == min(n, k * c)
    del rng
    # Each success holds two seats (dose 1 on the day, dose 2 thirty-five days later).
    _assert_consistent(db, "comirnaty", 2 * k * c)
    appointments = [s.to_dict() for s in db.collection(APPOINTMENTS).stream()]
    series = Counter(a["series_id"] for a in appointments)
    assert set(series.values()) == {2}
