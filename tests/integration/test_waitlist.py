"""The waitlist across channels (issue 15 item 3, common/services/waitlist.py), through the API.

A freed seat goes to the first person waiting whom it fits, is passed to the next on a NIE or
after silence, and is booked by an agent for a caller; many seats freed at once go to as many
people, in the order they joined, each held by its own seat. The services' clock is the
test's own (`wiring.now`): two hours pass when the test says.
"""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

import pytest

from common import clock, wiring
from common.adapters.firestore_store import APPOINTMENTS, AUDIT_LOG
from common.services.availability import AvailabilityFolder
from common.services.expected_wait import county_id, waitlist_in_collection
from common.services.search import SearchService
from common.services.waitlist import WAITLIST, WaitlistService, entry_id
from tests.support.points import POINT_X, POINT_Y, World, key_of, make_world, sid

KRAKOW = {"lat": 50.0614, "lon": 19.9366, "radius_km": 10}


@pytest.fixture
def world(project: str, monkeypatch: pytest.MonkeyPatch) -> World:
    settable = clock.SettableClock(clock.now())
    monkeypatch.setattr(wiring, "now", settable.now)
    day = clock.today_warsaw() + timedelta(days=3)
    w = make_world(
        project,
        patients=8,
        slots={
            POINT_X: [(day, time(9, 0), "jcovden", 2), (day, time(12, 0), "jcovden", 20)],
            POINT_Y: [(day, time(9, 0), "jcovden", 5)],  # Warsaw: too far for Kraków's list
        },
    )
    w.clock = settable  # type: ignore[attr-defined]
    return w


class Told:
    def __init__(self) -> None:
        self.told: list[str] = []

    def __call__(self, entry: dict[str, Any], hold: dict[str, Any], now) -> dict[str, Any]:
        self.told.append(entry["entry_id"])
        return {"told": "portal"}


def _sweep(world: World, told: Told | None = None) -> dict[str, int]:
    """The minute's sweep as a fresh instance runs it (search's view read afresh)."""
    AvailabilityFolder(world.db).fold_all()
    db, rules = wiring.firestore_client(), wiring.rule_book()
    service = WaitlistService(
        wiring.units(), wiring.hold_service(), lambda: SearchService(db, rules), wiring.vault(),
        wiring.settings().pesel_hash_key, told or Told(),
    )  # fmt: skip
    return service.match(world.clock.now())  # type: ignore[attr-defined]


def _join(world: World, who: str, **body: Any):
    response = world.write("POST", "/v1/waitlist", who, {**KRAKOW, **body})
    assert response.status_code == 201, response.get_json()
    world.clock.advance(timedelta(seconds=1))  # type: ignore[attr-defined]
    return response.get_json()["entry"]


def _entry(world: World, patient: int) -> dict[str, Any]:
    key = key_of(world.pesels[patient])
    return world.db.collection(WAITLIST).document(entry_id(key)).get().to_dict()


def _mine(world: World, patient: int) -> dict[str, Any]:
    response = world.call("GET", "/v1/waitlist", f"patient-{patient}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["entry"]


def _booked_in(world: World, slot_id: str) -> list[str]:
    return [
        d.to_dict()["patient_key"]
        for d in world.db.collection(APPOINTMENTS).stream()
        if d.to_dict()["slot_id"] == slot_id and d.to_dict()["status"] == "booked"
    ]


def test_a_freed_seat_goes_to_the_first_waiting_then_the_next(world: World) -> None:
    slot = sid(POINT_X, world.day, time(9, 0), "jcovden")
    busy = sid(POINT_X, world.day, time(12, 0), "jcovden")
    for patient in (0, 1):
        assert world.book(patient, slot).status_code == 201
    # The big slot is full too, for this test: a booking each by others, then blocked.
    blocked = world.write("PATCH", f"/v1/points/{POINT_X}/slots/{busy}", "admin", {"blocked": True})
    assert blocked.status_code == 200, blocked.get_json()
    _join(world, "patient-2", products=["jcovden"])
    _join(world, "patient-3")  # any product
    agent = world.write(
        "POST", "/v1/waitlist", "agent",
        {**KRAKOW, "pesel": world.pesels[4], "reason": "caller on the 989 line"},
    )  # fmt: skip
    assert agent.status_code == 201, agent.get_json()
    world.clock.advance(timedelta(seconds=1))  # type: ignore[attr-defined]
    _join(world, "patient-5", products=["comirnaty"])  # nothing of it here
    assert _mine(world, 3)["waiting_ahead"] == 1 and _mine(world, 5)["waiting_ahead"] == 3

    # Each entry counts in its county's waitlist, for the expected wait (item 6).
    krakow = county_id("małopolskie", "Kraków")
    assert _entry(world, 2)["county_id"] == krakow
    assert waitlist_in_collection(wiring.units().reader(), krakow, world.clock.now()) == 4

    assert _sweep(world)["offered"] == 0  # nothing free
    # Patient 0 cancels: the seat is held for the first in line (2), nobody else.
    (visit,) = [
        d.id for d in world.db.collection(APPOINTMENTS).stream()
        if d.to_dict()["patient_key"] == key_of(world.pesels[0])
    ]  # fmt: skip
    cancelled = world.write("POST", f"/v1/appointments/{visit}/cancel", "patient-0", {})
    assert cancelled.status_code == 200, cancelled.get_json()
    assert _sweep(world)["offered"] == 1
    assert _entry(world, 2)["status"] == "offered" and _entry(world, 3)["status"] == "waiting"
    offer = _mine(world, 2)["offer"]
    assert offer["status"] == "held" and offer["slots"][0]["slot_id"] == slot
    assert world.book(6, slot).status_code == 409  # held: taken to everyone else

    # NIE (released in the portal): the next sweep gives it to the next in line (3).
    released = world.write("POST", f"/v1/holds/{offer['hold_id']}/release", "patient-2", {})
    assert released.status_code == 200, released.get_json()
    assert _sweep(world)["offered"] == 1
    assert _entry(world, 2)["status"] == "waiting" and slot in _entry(world, 2)["declined_slots"]
    assert _entry(world, 3)["status"] == "offered"

    # Silence: two hours pass, the hold lapses, and it goes to the agent's caller (4).
    world.clock.advance(timedelta(hours=2, minutes=1))  # type: ignore[attr-defined]
    wiring.hold_service().expire(world.clock.now())  # type: ignore[attr-defined]
    assert _sweep(world)["offered"] == 1
    assert _entry(world, 3)["status"] == "waiting" and _entry(world, 4)["status"] == "offered"
    hold_id = _entry(world, 4)["hold_id"]
    # The hotline books it for the caller (a reason, audited).
    booked = world.write("POST", f"/v1/holds/{hold_id}/book", "agent", {"reason": "called back"})
    assert booked.status_code == 201, booked.get_json()
    _sweep(world)
    assert _entry(world, 4)["status"] == "booked" and _entry(world, 4)["pesel_enc"] is None
    assert sorted(_booked_in(world, slot)) == sorted(key_of(world.pesels[i]) for i in (1, 4))
    # Patient 5 (comirnaty only) was never offered jcovden.
    assert _entry(world, 5)["status"] == "waiting" and _entry(world, 5).get("passed") is None
    # No PESEL in clear in any entry or audit record.
    text = str([d.to_dict() for d in world.db.collection(WAITLIST).stream()]) + str(
        [d.to_dict() for d in world.db.collection(AUDIT_LOG).stream()]
    )
    assert not any(pesel in text for pesel in world.pesels)


def test_many_seats_freed_at_once_go_to_as_many_people_in_order(world: World) -> None:
    """Twenty seats appear at once (a slot unblocked): the first five waiting (of seven, two
    of them elsewhere) are each held their own seat in one sweep, in the order they joined."""
    busy = sid(POINT_X, world.day, time(12, 0), "jcovden")
    path = f"/v1/points/{POINT_X}/slots/{busy}"
    assert world.write("PATCH", path, "admin", {"blocked": True}).status_code == 200
    small = sid(POINT_X, world.day, time(9, 0), "jcovden")
    for patient in (6, 7):
        assert world.book(patient, small).status_code == 201
    order = [3, 0, 4, 1, 2]
    for patient in order:
        _join(world, f"patient-{patient}")
    _join(world, "patient-5", lat=52.2297, lon=21.0122)  # Warsaw: Y has seats; X is far
    assert world.write("PATCH", path, "admin", {"blocked": False}).status_code == 200
    told = Told()
    summary = _sweep(world, told)
    assert summary["offered"] == 6
    expected = [entry_id(key_of(world.pesels[p])) for p in order]
    assert told.told[:5] == expected  # the order they joined
    holds = [_entry(world, p)["hold_id"] for p in order]
    seats = {
        wiring.hold_service().view(h, _system(), None)["hold"]["slots"][0]["seat"] for h in holds
    }
    assert len(seats) == 5  # five seats, one each
    warsaw = _mine(world, 5)["offer"]
    assert warsaw["slots"][0]["point_id"] == POINT_Y


def test_one_who_booked_elsewhere_is_taken_off_not_offered(world: World) -> None:
    _join(world, "patient-0")
    _join(world, "patient-1")
    slot = sid(POINT_X, world.day, time(9, 0), "jcovden")
    assert world.book(0, slot).status_code == 201  # booked in the portal meanwhile
    _sweep(world)
    assert _entry(world, 0)["status"] == "booked" and _entry(world, 0)["pesel_enc"] is None
    assert _entry(world, 1)["status"] == "offered"  # the next one gets a seat


def test_bad_input_changes_nothing(world: World) -> None:
    before = world.db.collection(WAITLIST).count().get()[0][0].value
    for body in (
        {},
        {"lat": 50.0},
        {**KRAKOW, "postcode": "31-001"},
        {**KRAKOW, "products": ["aspirin"]},
        {**KRAKOW, "radius_km": 1000},
        {**KRAKOW, "date_from": "2031-01-10", "date_to": "2031-01-01"},
    ):
        response = world.write("POST", "/v1/waitlist", "patient-0", body)
        assert response.status_code == 400, (body, response.get_json())
    assert world.write("POST", "/v1/waitlist", "agent", KRAKOW).status_code == 400  # whom?
    assert world.write("POST", "/v1/waitlist", "staff-x", KRAKOW).status_code == 403
    assert world.call("GET", "/v1/waitlist", "patient-0").status_code == 404
    assert world.db.collection(WAITLIST).count().get()[0][0].value == before
    # Leaving: off the list, the PESEL gone.
    _join(world, "patient-0")
    left = world.write("POST", "/v1/waitlist/leave", "patient-0", {})
    assert left.status_code == 200, left.get_json()
    assert _entry(world, 0)["status"] == "left" and _entry(world, 0)["pesel_enc"] is None
    assert world.call("GET", "/v1/waitlist", "patient-0").status_code == 404


def _system():
    from common.services.booking import Actor

    return Actor(uid="test", role="system")
