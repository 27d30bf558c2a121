"""Functional tests of booking, cancelling and rescheduling through the public API.

Every request goes through the dev gateway to the real functions, against an empty emulator
database of the test's own. Besides the answers, each test looks at what was stored: seats,
active-dose locks, the availability figures and the outbox, because a right answer over a
wrong database is the failure that matters in a health record. "Nothing written" is checked
by comparing every booking collection before and after a refused request.

The immediate Pub/Sub publish is switched off (the booking service gets no publisher, as if
the bus were down), so that every event a commit wrote stays in `outbox` for the test to read;
`test_documents_counted_with_the_event_bus_up` measures the other case.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from common import clock, wiring
from common.adapters.firestore_metering import DocumentCounts, DocumentMeter
from common.adapters.firestore_store import (
    ACTIVE_DOSES,
    APPOINTMENTS,
    AVAILABILITY,
    AVAILABILITY_DELTAS,
    IDEMPOTENCY,
    OUTBOX,
    SEATS,
)
from common.adapters.pubsub_publisher import EventPublisher
from common.domain.calendar import PointCalendar, SlotRef
from common.services.availability import AvailabilityFolder
from tests.support.stack import (
    Api,
    add_patient,
    add_point,
    firestore_client,
    provision_topics,
    today_warsaw,
)

POINT = "pt-00001"
OTHER_POINT = "pt-00002"
BOOKING_COLLECTIONS = (
    APPOINTMENTS,
    SEATS,
    ACTIVE_DOSES,
    AVAILABILITY,
    AVAILABILITY_DELTAS,
    OUTBOX,
    IDEMPOTENCY,
)


def changes_no_point_document(commit: set[str]) -> bool:
    """A booking path writes a delta, never the point's one availability document (the hot
    spot of a rush): search's counts are folded from the deltas in the background."""
    return not any(d.startswith(f"{AVAILABILITY}/") for d in commit) and (
        sum(d.startswith(f"{AVAILABILITY_DELTAS}/") for d in commit) == 1
    )


def sid(point: str, day: date, start: time, product: str) -> str:
    return SlotRef(point, day, start, product).slot_id


@dataclass
class World:
    """Two points and four patients; slots named by what each test uses them for."""

    api: Api
    db: Any
    day: date
    pesels: list[str]
    slots: dict[str, str] = field(default_factory=dict)
    capacity: dict[str, int] = field(default_factory=dict)

    def token(self, patient: int) -> str:
        return self.api.token(f"patient-{patient}", "patient", pesel=self.pesels[patient])

    def book(self, patient: int, slot: str, key: str, **extra: Any):
        body = {"slot_id": self.slots.get(slot, slot), **extra}
        return self.api.call(
            "POST", "/v1/appointments", token=self.token(patient), body=body, key=key
        )

    def cancel(self, patient: int, appointment_id: str, key: str):
        return self.api.call(
            "POST",
            f"/v1/appointments/{appointment_id}/cancel",
            token=self.token(patient),
            body={},
            key=key,
        )

    def reschedule(self, patient: int, appointment_id: str, slot: str, key: str, **extra: Any):
        body = {"slot_id": self.slots.get(slot, slot), **extra}
        return self.api.call(
            "POST",
            f"/v1/appointments/{appointment_id}/reschedule",
            token=self.token(patient),
            body=body,
            key=key,
        )

    def free(self, slot: str) -> int:
        """The free seats search shows, once the folder has caught up with the bookings."""
        AvailabilityFolder(self.db).fold_all()
        ref = SlotRef.parse(self.slots[slot])
        document = self.db.collection(AVAILABILITY).document(ref.point_id).get().to_dict()
        found = PointCalendar.from_document(ref.point_id, document).get(ref)
        assert found is not None, (ref, repr(document)[:3000])
        return found.free

    def appointment(self, appointment_id: str) -> dict[str, Any]:
        document = self.db.collection(APPOINTMENTS).document(appointment_id).get()
        assert document.exists
        return document.to_dict()

    def seats(self) -> dict[str, str]:
        """seat id -> appointment id"""
        return {s.id: s.to_dict()["appointment_id"] for s in self.db.collection(SEATS).stream()}

    def active_doses(self) -> set[str]:
        return {s.to_dict()["appointment_id"] for s in self.db.collection(ACTIVE_DOSES).stream()}

    def events(self) -> list[tuple[str, str]]:
        """(event_type, appointment_id) of every event in the outbox, sorted."""
        found = []
        for snapshot in self.db.collection(OUTBOX).stream():
            data = snapshot.to_dict()
            found.append((data["event_type"], json.loads(data["payload"])["appointment_id"]))
        return sorted(found)

    def snapshot(self) -> dict[str, Any]:
        return {
            f"{name}/{s.id}": s.to_dict()
            for name in BOOKING_COLLECTIONS
            for s in self.db.collection(name).stream()
        }


@pytest.fixture(scope="module", autouse=True)
def _warm_emulator(local_cloud: Any) -> None:
    # On a loaded machine a freshly started emulator answers its first requests slower than
    # the services' 6 s RPC budget; one unhurried round trip first keeps that out of the
    # first test's result.
    client = firestore.Client(project=f"warmup-{uuid.uuid4().hex[:8]}")
    document = client.collection("warmup").document("w")
    document.set({"ok": True}, timeout=120)
    document.get(timeout=120)
    list(client.collection("warmup").stream(timeout=120))
    client.close()


@functools.cache
def _no_publisher() -> None:
    return None


@pytest.fixture(autouse=True)
def events_stay_in_outbox(project: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A cached function, so that wiring.reset() can still call cache_clear() on it.
    monkeypatch.setattr(wiring, "publisher", _no_publisher)
    wiring.reset()


@pytest.fixture
def world(project: str) -> World:
    db = firestore_client(project)
    d = today_warsaw() + timedelta(days=2)
    at9, at10 = time(9, 0), time(10, 0)
    plan: dict[str, tuple[str, date, time, str, int]] = {
        "J1": (POINT, d, at9, "jcovden", 2),
        "J2": (POINT, d + timedelta(days=1), at10, "jcovden", 1),
        "C1": (POINT, d, at9, "comirnaty", 3),
        # Dose 1 moved here keeps dose 2 at d+35: the window becomes d+24..d+45.
        "C_NEAR": (POINT, d + timedelta(days=3), at9, "comirnaty", 1),
        # Dose 1 moved here pushes dose 2 out: window d+41..d+62, planned d+55.
        "C_FAR": (POINT, d + timedelta(days=20), at9, "comirnaty", 1),
        # Window d+39..d+60: its dose 2s land on S50 and S56.
        "C_MID": (POINT, d + timedelta(days=18), at9, "comirnaty", 2),
        # Second-dose slots of a dose 1 on d: window d+21..d+42, planned d+35.
        "S30": (POINT, d + timedelta(days=30), at9, "comirnaty", 1),
        "S35": (POINT, d + timedelta(days=35), at9, "comirnaty", 2),
        "S36": (POINT, d + timedelta(days=36), at10, "comirnaty", 1),
        "S50": (POINT, d + timedelta(days=50), at9, "comirnaty", 1),
        "S56": (POINT, d + timedelta(days=56), at9, "comirnaty", 1),
        # Another point's slot on the planned day: never chosen for a dose 1 at POINT.
        "B35": (OTHER_POINT, d + timedelta(days=35), at9, "comirnaty", 1),
        "BJ": (OTHER_POINT, d, time(11, 0), "jcovden", 1),
        "B56": (OTHER_POINT, d + timedelta(days=56), at9, "comirnaty", 1),
        "J56": (POINT, d + timedelta(days=56), at10, "jcovden", 1),
    }
    for point in (POINT, OTHER_POINT):
        add_point(
            db,
            point,
            slots=[
                (day, start, product, cap)
                for p, day, start, product, cap in plan.values()
                if p == point
            ],
        )
    pesels = [add_patient(db, serial=i) for i in range(4)]
    return World(
        api=Api(project),
        db=db,
        day=d,
        pesels=pesels,
        slots={
            name: sid(p, day, start, product) for name, (p, day, start, product, _) in plan.items()
        },
        capacity={name: cap for name, (*_, cap) in plan.items()},
    )


def ok(response: Any, status: int = 200) -> list[dict[str, Any]]:
    assert response.status_code == status, response.get_json()
    return response.get_json()["appointments"]


def refused(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code, response.get_json()


class CommitLog:
    """Records the documents of every Commit the client sends, one set per commit."""

    def __init__(self, client: Any) -> None:
        self.commits: list[set[str]] = []
        api = client._firestore_api
        original: Callable[..., Any] = api.commit

        def commit(*args: Any, **kwargs: Any) -> Any:
            request = kwargs.get("request") or args[0]
            names = set()
            for write in request["writes"]:
                name = write.update.name or write.delete or write.transform.document
                names.add(name.split("/documents/", 1)[1])
            self.commits.append(names)
            return original(*args, **kwargs)

        api.commit = commit

    def holding(self, document: str) -> set[str]:
        found = [c for c in self.commits if document in c]
        assert len(found) == 1, (document, self.commits)
        return found[0]


@pytest.fixture
def commits(world: World) -> Iterator[CommitLog]:
    # The functions share wiring's client; built now, it is the one every request uses.
    yield CommitLog(wiring.firestore_client())


# -- book ----------------------------------------------------------------------------------


def test_one_dose_booking_claims_one_seat_and_writes_its_event_in_the_same_commit(
    world: World, commits: CommitLog
) -> None:
    [appointment] = ok(world.book(0, "J1", "b1"), 201)
    aid = appointment["appointment_id"]
    assert appointment["slot_id"] == world.slots["J1"]
    assert appointment["dose_number"] == 1
    assert appointment["status"] == "booked"
    assert appointment["linked_appointment_id"] is None
    assert appointment["channel"] == "portal"
    # The PESEL-derived key and the seat stay internal.
    assert "patient_key" not in appointment and "seat_id" not in appointment

    stored = world.appointment(aid)
    seats = world.seats()
    assert list(seats.values()) == [aid]
    [seat] = list(seats)
    assert seat.startswith(world.slots["J1"] + "_")
    assert stored["seat_id"] == seat
    assert world.active_doses() == {aid}
    assert world.free("J1") == world.capacity["J1"] - 1
    assert world.events() == [("appointment.booked", aid)]

    commit = commits.holding(f"{APPOINTMENTS}/{aid}")
    [event_doc] = [d for d in commit if d.startswith(f"{OUTBOX}/")]
    assert {f"{SEATS}/{seat}", event_doc} <= commit
    assert changes_no_point_document(commit)
    assert sum(d.startswith(f"{ACTIVE_DOSES}/") for d in commit) == 1
    assert sum(d.startswith(f"{IDEMPOTENCY}/") for d in commit) == 1


def test_two_dose_booking_links_dose_two_at_the_same_point_nearest_the_planned_day(
    world: World, commits: CommitLog
) -> None:
    first, second = ok(world.book(0, "C1", "b1"), 201)
    assert (first["dose_number"], second["dose_number"]) == (1, 2)
    assert first["slot_id"] == world.slots["C1"]
    # d+35 is the planned day; the other point's slot that day is not a candidate.
    assert second["slot_id"] == world.slots["S35"]
    assert second["point_id"] == POINT
    assert first["linked_appointment_id"] == second["appointment_id"]
    assert second["linked_appointment_id"] == first["appointment_id"]
    assert first["series_id"] == second["series_id"]
    ids = {first["appointment_id"], second["appointment_id"]}
    assert set(world.seats().values()) == ids
    assert world.active_doses() == ids
    assert (world.free("C1"), world.free("S35")) == (2, 1)
    assert world.free("B35") == 1
    assert world.events() == sorted(("appointment.booked", i) for i in ids)
    # Both doses, both seats, both events: one commit.
    commit = commits.holding(f"{APPOINTMENTS}/{first['appointment_id']}")
    assert f"{APPOINTMENTS}/{second['appointment_id']}" in commit
    assert sum(d.startswith(f"{OUTBOX}/") for d in commit) == 2
    assert sum(d.startswith(f"{SEATS}/") for d in commit) == 2
    assert changes_no_point_document(commit)

    # Fill the planned day; the next patient's dose 2 goes to the nearest day: d+36 (1 day
    # off) beats d+30 (5 days off).
    ok(world.book(1, "C1", "b2"), 201)
    assert world.free("S35") == 0
    _, third = ok(world.book(2, "C1", "b3"), 201)
    assert third["slot_id"] == world.slots["S36"]


def test_second_slot_id_is_honoured_inside_the_window(world: World) -> None:
    _, second = ok(world.book(0, "C1", "b1", second_slot_id=world.slots["S30"]), 201)
    assert second["slot_id"] == world.slots["S30"]
    assert world.free("S30") == 0 and world.free("S35") == 2


@pytest.mark.parametrize(
    ("second", "status", "code"),
    [
        ("S50", 400, "dose_interval_violated"),  # d+50: after the d+21..d+42 window
        ("C_NEAR", 400, "dose_interval_violated"),  # d+3: before it
        ("B35", 400, "invalid_request"),  # the right day at another point
    ],
)
def test_second_slot_id_outside_the_rules_is_refused_and_writes_nothing(
    world: World, second: str, status: int, code: str
) -> None:
    before = world.snapshot()
    refused(world.book(0, "C1", "b1", second_slot_id=world.slots[second]), status, code)
    assert world.snapshot() == before


def test_second_booking_for_the_same_dose_is_refused_and_writes_nothing(world: World) -> None:
    ok(world.book(0, "J1", "b1"), 201)
    before = world.snapshot()
    refused(world.book(0, "J2", "b2"), 409, "already_booked")
    # One active dose 1 per patient, whatever the product.
    refused(world.book(0, "C1", "b3"), 409, "already_booked")
    assert world.snapshot() == before


# -- cancel --------------------------------------------------------------------------------


def test_cancelling_dose_one_frees_both_seats_and_the_linked_dose(world: World) -> None:
    first, second = ok(world.book(0, "C1", "b1"), 201)
    cancelled = ok(world.cancel(0, first["appointment_id"], "c1"))
    ids = {first["appointment_id"], second["appointment_id"]}
    assert {a["appointment_id"] for a in cancelled} == ids
    assert {a["status"] for a in cancelled} == {"cancelled"}
    assert {world.appointment(i)["status"] for i in ids} == {"cancelled"}
    assert world.seats() == {}
    assert world.active_doses() == set()
    assert (world.free("C1"), world.free("S35")) == (3, 2)
    assert world.events() == sorted(
        [("appointment.booked", i) for i in ids] + [("appointment.cancelled", i) for i in ids]
    )

    before = world.snapshot()
    refused(world.cancel(0, first["appointment_id"], "c2"), 409, "invalid_state")
    refused(world.cancel(0, second["appointment_id"], "c3"), 409, "invalid_state")
    assert world.snapshot() == before
    # The locks are gone, so the patient may book again.
    ok(world.book(0, "J1", "b2"), 201)


def test_cancelling_dose_two_alone_leaves_dose_one(world: World) -> None:
    first, second = ok(world.book(0, "C1", "b1"), 201)
    [cancelled] = ok(world.cancel(0, second["appointment_id"], "c1"))
    assert cancelled["appointment_id"] == second["appointment_id"]
    assert world.appointment(first["appointment_id"])["status"] == "booked"
    assert world.appointment(second["appointment_id"])["status"] == "cancelled"
    assert set(world.seats().values()) == {first["appointment_id"]}
    assert world.active_doses() == {first["appointment_id"]}
    assert (world.free("C1"), world.free("S35")) == (2, 2)
    assert ("appointment.cancelled", second["appointment_id"]) in world.events()

    before = world.snapshot()
    refused(world.cancel(0, second["appointment_id"], "c2"), 409, "invalid_state")
    assert world.snapshot() == before


# -- reschedule ----------------------------------------------------------------------------


def test_reschedule_frees_the_old_seat_and_takes_the_new_one_in_one_commit(
    world: World, commits: CommitLog
) -> None:
    [booked] = ok(world.book(0, "J1", "b1"), 201)
    aid = booked["appointment_id"]
    old_seat = next(iter(world.seats()))
    [moved] = ok(world.reschedule(0, aid, "J2", "r1"))
    assert moved["appointment_id"] == aid
    assert moved["slot_id"] == world.slots["J2"]
    assert world.appointment(aid)["slot_id"] == world.slots["J2"]
    [new_seat] = world.seats()
    assert new_seat.startswith(world.slots["J2"] + "_")
    assert (world.free("J1"), world.free("J2")) == (2, 0)
    assert world.active_doses() == {aid}
    assert world.events() == [("appointment.booked", aid), ("appointment.rescheduled", aid)]
    # Free the old, take the new, update the visit and record the event: all or nothing.
    commit = commits.holding(f"{SEATS}/{new_seat}")
    assert {f"{SEATS}/{old_seat}", f"{APPOINTMENTS}/{aid}"} <= commit
    assert changes_no_point_document(commit)
    assert sum(d.startswith(f"{OUTBOX}/") for d in commit) == 1


def test_moving_dose_one_keeps_dose_two_that_stays_in_the_window(world: World) -> None:
    first, second = ok(world.book(0, "C1", "b1"), 201)
    [moved] = ok(world.reschedule(0, first["appointment_id"], "C_NEAR", "r1"))
    assert moved["appointment_id"] == first["appointment_id"]
    assert world.appointment(second["appointment_id"])["slot_id"] == world.slots["S35"]
    assert (world.free("C1"), world.free("C_NEAR"), world.free("S35")) == (3, 0, 1)


def test_moving_dose_one_moves_dose_two_out_of_the_window(world: World) -> None:
    first, second = ok(world.book(0, "C1", "b1"), 201)
    moved = ok(world.reschedule(0, first["appointment_id"], "C_FAR", "r1"))
    by_dose = {a["dose_number"]: a for a in moved}
    assert by_dose[1]["slot_id"] == world.slots["C_FAR"]
    # The new window is d+41..d+62, planned d+55: d+56 (1 day off) beats d+50 (5 days off).
    assert by_dose[2]["slot_id"] == world.slots["S56"]
    assert by_dose[2]["appointment_id"] == second["appointment_id"]
    assert by_dose[1]["linked_appointment_id"] == second["appointment_id"]
    assert world.appointment(second["appointment_id"])["slot_id"] == world.slots["S56"]
    assert [world.free(s) for s in ("C1", "C_FAR", "S35", "S56", "S50")] == [3, 0, 2, 0, 1]
    assert len(world.seats()) == 2
    rescheduled = [e for e in world.events() if e[0] == "appointment.rescheduled"]
    assert len(rescheduled) == 2


def test_reschedule_to_a_full_slot_is_refused_and_changes_nothing(world: World) -> None:
    ok(world.book(1, "J2", "b1"), 201)  # J2 has one seat: now full
    [mine] = ok(world.book(0, "J1", "b2"), 201)
    before = world.snapshot()
    refused(world.reschedule(0, mine["appointment_id"], "J2", "r1"), 409, "slot_unavailable")
    assert world.snapshot() == before


def test_moving_dose_one_when_dose_two_has_nowhere_to_go_changes_nothing(world: World) -> None:
    first, _ = ok(world.book(0, "C1", "b1"), 201)
    # C_FAR's window (d+41..d+62) holds S50 and S56: two dose 1s on C_MID take both.
    ok(world.book(1, "C_MID", "b2"), 201)
    ok(world.book(2, "C_MID", "b3"), 201)
    assert (world.free("S50"), world.free("S56"), world.free("C_FAR")) == (0, 0, 1)
    before = world.snapshot()
    response = world.reschedule(0, first["appointment_id"], "C_FAR", "r1")
    refused(response, 409, "slot_unavailable")
    assert response.get_json()["error"]["details"]["reason"] == "no_second_dose_slot"
    assert world.snapshot() == before


@pytest.mark.parametrize("second", ["J56", "B56"])  # a jcovden slot; another point's slot
def test_moving_dose_one_refuses_a_second_slot_of_another_product_or_point(
    world: World, second: str
) -> None:
    first, _ = ok(world.book(0, "C1", "b1"), 201)
    before = world.snapshot()
    response = world.reschedule(
        0, first["appointment_id"], "C_FAR", "r1", second_slot_id=world.slots[second]
    )
    refused(response, 400, "invalid_request")
    assert world.snapshot() == before


# -- reading and privacy -------------------------------------------------------------------


def test_my_appointments_lists_mine_earliest_first(world: World) -> None:
    first, second = ok(world.book(0, "C1", "b1"), 201)
    ok(world.book(1, "J1", "b2"), 201)
    ok(world.cancel(0, second["appointment_id"], "c1"))
    listed = ok(world.api.call("GET", "/v1/me/appointments", token=world.token(0)))
    assert [(a["appointment_id"], a["status"]) for a in listed] == [
        (first["appointment_id"], "booked"),
        (second["appointment_id"], "cancelled"),
    ]
    assert all("patient_key" not in a and "seat_id" not in a for a in listed)
    assert ok(world.api.call("GET", "/v1/me/appointments", token=world.token(2))) == []


def test_a_patient_cannot_see_cancel_or_move_another_patients_appointment(
    world: World,
) -> None:
    [theirs] = ok(world.book(0, "J1", "b1"), 201)
    aid = theirs["appointment_id"]
    assert ok_one(world.api.call("GET", f"/v1/appointments/{aid}", token=world.token(0)))
    before = world.snapshot()
    intruder = world.token(1)
    refused(
        world.api.call("GET", f"/v1/appointments/{aid}", token=intruder),
        404,
        "appointment_not_found",
    )
    refused(world.cancel(1, aid, "c1"), 404, "appointment_not_found")
    refused(world.reschedule(1, aid, "J2", "r1"), 404, "appointment_not_found")
    # Someone else's id and a made-up one look the same: no oracle for ids.
    refused(world.cancel(1, "0" * 32, "c2"), 404, "appointment_not_found")
    assert world.snapshot() == before


def ok_one(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# -- documents counted ---------------------------------------------------------------------


def _measure(meter: DocumentMeter, action: Callable[[], Any]) -> DocumentCounts:
    # Each operation as the first of its instance at that point: the calendar read included
    # (later ones within a second take it from the instance's cache); the quota policy and
    # the openings, read once a minute / five seconds per instance, are warm, and so are
    # the points' names and addresses the answer shows (cached a minute per instance).
    wiring.calendar_cache().clear()
    wiring.quota_policy().policy()
    wiring.waiting_room().openings(clock.now())
    wiring.appointment_places().points([POINT, OTHER_POINT])
    # The reservations in force (reserved capacity), read once per 15 s per instance: warm too.
    wiring.reservation_book().at_point(POINT, clock.now())
    before = meter.counts()
    action()
    return meter.counts() - before


def test_documents_counted_per_booking_cancel_and_reschedule(world: World) -> None:
    meter = DocumentMeter(wiring.firestore_client())
    one_dose = _measure(meter, lambda: ok(world.book(0, "J1", "b1"), 201))
    two_doses_box: list[list[dict[str, Any]]] = []
    two_doses = _measure(meter, lambda: two_doses_box.append(ok(world.book(1, "C1", "b2"), 201)))
    first, _ = two_doses_box[0]
    [j] = world.api.call("GET", "/v1/me/appointments", token=world.token(0)).get_json()[
        "appointments"
    ]
    move = _measure(meter, lambda: ok(world.reschedule(0, j["appointment_id"], "J2", "r1")))
    cancel = _measure(meter, lambda: ok(world.cancel(1, first["appointment_id"], "c1")))
    measured = (
        f"1-dose booking {one_dose}; 2-dose booking {two_doses}; "
        f"1-dose reschedule {move}; 2-dose cancel {cancel}"
    )
    # Booking reads the idempotency key (not there yet), the point's calendar, the slot's
    # taken-seat count (one aggregation) and its taken seats (none), the patient's two
    # booking-write counters (minute and day windows, one BatchGet), history (none) and
    # referral; then ONE commit: seat, lock, appointment, one availability delta (never the
    # point's document), the event, the key's stored answer and the two counters' Increments.
    # A two-dose series counts and lists the dose-2 slot too, and adds a seat, a lock, an
    # appointment, an event.
    assert one_dose == DocumentCounts(
        reads=5, writes=8, queries=3, commits=1, empty_queries=2, aggregations=1
    ), measured
    assert two_doses == DocumentCounts(
        reads=5, writes=12, queries=4, commits=1, empty_queries=3, aggregations=2
    ), measured
    # Reschedule reads the key, the new point's calendar, the appointment, the counters, the
    # new slot's seats (count and list) and (moving a dose 1) the referral; writes new seat,
    # old seat delete, appointment, a delta, the event, the key and the counters.
    assert move == DocumentCounts(
        reads=6, writes=8, queries=2, commits=1, empty_queries=1, deletes=1, aggregations=1
    ), measured
    # Cancel reads the key, both doses and the counters; per dose: appointment, seat, lock,
    # event; one delta, the key and the counters.
    assert cancel == DocumentCounts(reads=5, writes=12, queries=0, commits=1, deletes=4), measured


def test_documents_counted_with_the_event_bus_up(
    world: World, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real publisher and topics: each event is published right after the commit and
    # its outbox document deleted, one more write (and commit) per event.
    provision_topics(project)
    monkeypatch.setattr(wiring, "publisher", functools.cache(lambda: EventPublisher(project)))
    wiring.reset()
    meter = DocumentMeter(wiring.firestore_client())
    one_dose = _measure(meter, lambda: ok(world.book(0, "J1", "b1"), 201))
    two_doses = _measure(meter, lambda: ok(world.book(1, "C1", "b2"), 201))
    measured = f"1-dose booking {one_dose}; 2-dose booking {two_doses}"
    assert one_dose == DocumentCounts(
        reads=5, writes=9, queries=3, commits=2, empty_queries=2, deletes=1, aggregations=1
    ), measured
    assert two_doses == DocumentCounts(
        reads=5, writes=14, queries=4, commits=3, empty_queries=3, deletes=2, aggregations=2
    ), measured
    assert world.events() == []
