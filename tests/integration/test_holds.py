"""Timed holds of a series ($hold / $book, issue 15 item 4), through the API.

The services' clock is the test's own (`wiring.now`), so a hold's five minutes pass when the
test says.
"""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from common import clock, wiring
from common.adapters.firestore_store import APPOINTMENTS, SEATS
from tests.support.points import POINT_X, make_world, sid, slot_state


@pytest.fixture
def world(project: str, monkeypatch: pytest.MonkeyPatch):
    settable = clock.SettableClock(clock.now())
    monkeypatch.setattr(wiring, "now", settable.now)
    day = clock.today_warsaw() + timedelta(days=3)
    w = make_world(
        project,
        patients=4,
        slots={
            POINT_X: [
                (day, time(9, 0), "jcovden", 1),
                (day, time(10, 0), "comirnaty", 1),
                (day + timedelta(days=35), time(10, 0), "comirnaty", 1),
            ]
        },
    )
    w.clock = settable  # type: ignore[attr-defined]
    return w


def hold(world, patient: int, slot: str):
    return world.write("POST", "/v1/holds", f"patient-{patient}", {"slot_id": slot})


def test_a_held_series_is_taken_for_others_and_confirms_without_fail(world) -> None:
    first = sid(POINT_X, world.day, time(10, 0), "comirnaty")
    held = hold(world, 0, first)
    assert held.status_code == 201, held.get_json()
    body = held.get_json()["hold"]
    assert [s["dose_number"] for s in body["slots"]] == [1, 2]  # the series, both doses
    hold_id = body["hold_id"]
    # Both seats are taken for everyone else: the one-seat slots are full to them.
    other = world.book(1, first)
    assert other.status_code == 409, other.get_json()
    assert other.get_json()["error"]["details"]["reason"] == "full"
    assert slot_state(world.db, first)["free"] == 0
    # Within the hold, confirming cannot fail for want of a seat.
    world.clock.advance(timedelta(minutes=4))
    booked = world.write("POST", f"/v1/holds/{hold_id}/book", "patient-0", {})
    assert booked.status_code == 201, booked.get_json()
    appointments = booked.get_json()["appointments"]
    assert [a["dose_number"] for a in appointments] == [1, 2]
    seats = {s.id: s.to_dict() for s in world.db.collection(SEATS).stream()}
    assert {a["appointment_id"] for a in appointments} == {
        s["appointment_id"] for s in seats.values()
    }
    assert all("held_until" not in s and isinstance(s["index"], int) for s in seats.values())
    # The free count was taken by the hold and stays taken by the booking.
    assert slot_state(world.db, first)["free"] == 0
    # Confirming twice is refused; another patient cannot see it.
    again = world.write("POST", f"/v1/holds/{hold_id}/book", "patient-0", {})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "hold_expired"
    assert world.call("GET", f"/v1/holds/{hold_id}", "patient-1").status_code == 404


def test_a_hold_expires_by_itself_and_its_seat_goes_to_the_next(world) -> None:
    slot = sid(POINT_X, world.day, time(9, 0), "jcovden")
    hold_id = hold(world, 0, slot).get_json()["hold"]["hold_id"]
    assert world.book(1, slot).status_code == 409
    world.clock.advance(timedelta(minutes=5, seconds=1))
    # Past its time the seat is anyone's, before any sweeper: the booker takes it over.
    taken = world.book(1, slot)
    assert taken.status_code == 201, taken.get_json()
    late = world.write("POST", f"/v1/holds/{hold_id}/book", "patient-0", {})
    assert late.status_code == 409 and late.get_json()["error"]["code"] == "hold_expired"
    # The sweeper ends the hold once, gives its -1 back; the booking keeps its seat.
    assert wiring.hold_service().expire(wiring.now()) == {"found": 1, "expired": 1}
    assert wiring.hold_service().expire(wiring.now()) == {"found": 0, "expired": 0}
    assert slot_state(world.db, slot)["free"] == 0
    [seat] = [s.to_dict() for s in world.db.collection(SEATS).stream()]
    assert seat["appointment_id"] == taken.get_json()["appointments"][0]["appointment_id"]


def test_an_expired_hold_nobody_took_gives_its_seat_back(world) -> None:
    slot = sid(POINT_X, world.day, time(9, 0), "jcovden")
    hold(world, 0, slot)
    assert slot_state(world.db, slot)["free"] == 0
    world.clock.advance(timedelta(minutes=6))
    assert wiring.hold_service().expire(wiring.now())["expired"] == 1
    assert slot_state(world.db, slot)["free"] == 1
    assert list(world.db.collection(SEATS).stream()) == []
    assert world.book(2, slot).status_code == 201


def test_a_released_hold_frees_its_seats_at_once_and_a_booked_patient_cannot_hold(world) -> None:
    slot = sid(POINT_X, world.day, time(9, 0), "jcovden")
    hold_id = hold(world, 0, slot).get_json()["hold"]["hold_id"]
    released = world.write("POST", f"/v1/holds/{hold_id}/release", "patient-0", {})
    assert released.status_code == 200 and released.get_json()["hold"]["status"] == "released"
    assert slot_state(world.db, slot)["free"] == 1
    assert world.book(0, slot).status_code == 201
    second = sid(POINT_X, world.day, time(10, 0), "comirnaty")
    refused = hold(world, 0, second)  # already booked for dose 1 (Jcovden)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "already_booked"
    assert [a.to_dict()["status"] for a in world.db.collection(APPOINTMENTS).stream()] == ["booked"]
