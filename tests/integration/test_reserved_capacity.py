"""Reserved capacity (issue 15, item 5), through the API against the emulators.

A slot's reserved seats are seat indices kept for a group (common/domain/reservations.py):
outsiders cannot book them before `until`, even in a rush, and can after it (the clock moves:
the services' clock is the test's own, `wiring.now`); members can; search shows them only to
members. The slots are three days ahead and `until` two hours ahead, so nothing here depends
on the hour of the day.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from common import clock, wiring
from common.adapters.firestore_store import APPOINTMENTS, AUDIT_LOG, SEATS
from common.config import Settings
from common.domain.errors import OverloadedError, SlotUnavailableError
from common.services.booking import Actor, BookAppointment, BookingService
from common.services.reservations import RESERVATION_LAYERS, RESERVATIONS, ReservationBook
from common.services.seats import seat_index
from common.services.unit_of_work import FirestoreUnitsOfWork
from tests.support.points import POINT_X, POINT_Y, check_seat_invariants, sid, snapshot
from tests.support.stack import Api, add_patient, add_point, firestore_client, folding

MEMBER_BORN = date(1944, 5, 14)  # in the group: born 1950 or earlier
OUTSIDER_BORN = date(1980, 5, 17)


class World:
    def __init__(self, project: str, settable: clock.SettableClock, capacity: int = 4) -> None:
        self.db = firestore_client(project)
        self.api = Api(project)
        self.clock = settable
        self.day = clock.today_warsaw() + timedelta(days=3)
        add_point(
            self.db,
            POINT_X,
            products=("jcovden", "comirnaty"),
            slots=[
                (self.day, time(9, 0), "jcovden", capacity),
                (self.day, time(10, 0), "jcovden", capacity),
                (self.day + timedelta(days=1), time(9, 0), "jcovden", capacity),
            ],
        )
        self.slot = sid(POINT_X, self.day, time(9, 0), "jcovden")
        self.serials = iter(range(1, 10_000))

    def patient(self, born: date) -> str:
        return add_patient(self.db, born=born, serial=next(self.serials))

    def token(self, role: str, pesel: str | None = None) -> str:
        if role == "patient":
            return self.api.token(f"p-{pesel}", "patient", pesel=pesel)
        if role == "staff":
            return self.api.token("staff-x", "staff", point_id=POINT_X)
        if role == "staff_y":
            return self.api.token("staff-y", "staff", point_id=POINT_Y)
        return self.api.token(f"{role}-1", role)

    def reserve(self, who: str = "staff", **body: Any):
        body = {
            "percent": 50,
            "born_to": 1950,
            "until": (self.clock.now() + timedelta(hours=2)).isoformat(),
        } | body
        return self.api.call(
            "POST",
            f"/v1/points/{POINT_X}/reservations",
            token=self.token(who),
            body=body,
            key=uuid.uuid4().hex,
        )

    def book(self, pesel: str, slot: str | None = None):
        return self.api.call(
            "POST",
            "/v1/appointments",
            token=self.token("patient", pesel),
            body={"slot_id": slot or self.slot},
            key=uuid.uuid4().hex,
        )

    def seats_of(self, slot: str) -> dict[int, dict[str, Any]]:
        where = firestore.FieldFilter("slot_id", "==", slot)
        found = self.db.collection(SEATS).where(filter=where).stream()
        return {seat_index(s.id): s.to_dict() for s in found}


@pytest.fixture
def settable(monkeypatch: pytest.MonkeyPatch) -> clock.SettableClock:
    moving = clock.SettableClock(clock.now())
    monkeypatch.setattr(wiring, "now", moving.now)
    return moving


@pytest.fixture
def world(project: str, settable: clock.SettableClock) -> World:
    return World(project, settable)


def _kept(world: World, slot: str, capacity: int = 4) -> set[int]:
    """The indices the slot's reservation keeps (its band), from the stored reservation."""
    from common.domain.calendar import SlotRef
    from common.domain.reservations import Reservation

    ref = SlotRef.parse(slot)
    found = set()
    for document in world.db.collection(RESERVATIONS).stream():
        reservation = Reservation.from_document(document.to_dict())
        if reservation.covers(ref):
            found |= reservation.band(ref, capacity)
    return found


def test_outsiders_cannot_take_reserved_seats_until_their_time_then_can(world: World) -> None:
    made = world.reserve()
    assert made.status_code == 201, made.get_json()
    reservation = made.get_json()["reservation"]
    assert reservation["state"] == "active" and reservation["group"]["born_to"] == 1950
    kept = _kept(world, world.slot)
    assert len(kept) == 2  # 50 % of 4
    outsiders = [world.patient(OUTSIDER_BORN) for _ in range(3)]
    assert world.book(outsiders[0]).status_code == 201
    assert world.book(outsiders[1]).status_code == 201
    refused = world.book(outsiders[2])
    assert refused.status_code == 409, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "slot_unavailable" and error["details"]["reason"] == "reserved"
    assert datetime.fromisoformat(error["details"]["until"]) == datetime.fromisoformat(
        reservation["until"]
    )
    assert set(world.seats_of(world.slot)).isdisjoint(kept)
    # A member of the group takes a reserved seat.
    member = world.patient(MEMBER_BORN)
    booked = world.book(member)
    assert booked.status_code == 201, booked.get_json()
    assert set(world.seats_of(world.slot)) & kept
    # Still before `until`: refused. A second after it, the last seat is anyone's (no job ran).
    world.clock.advance(timedelta(hours=1, minutes=59))
    assert world.book(outsiders[2]).status_code == 409
    world.clock.advance(timedelta(minutes=1, seconds=1))
    after = world.book(outsiders[2])
    assert after.status_code == 201, after.get_json()
    assert len(world.seats_of(world.slot)) == 4
    check_seat_invariants(world.db, POINT_X)
    listing = world.api.call(
        "GET", f"/v1/points/{POINT_X}/reservations", token=world.token("staff")
    ).get_json()
    assert [r["state"] for r in listing["reservations"]] == ["expired"]


def test_a_member_books_a_reserved_seat_when_the_rest_is_taken(world: World) -> None:
    # Outsiders first fill what is theirs (two of four seats), then members take the rest.
    assert world.reserve(percent=50).status_code == 201
    for _ in range(2):
        assert world.book(world.patient(OUTSIDER_BORN)).status_code == 201
    members = [world.patient(MEMBER_BORN) for _ in range(3)]
    assert world.book(members[0]).status_code == 201
    assert world.book(members[1]).status_code == 201
    full = world.book(members[2])
    assert full.status_code == 409 and full.get_json()["error"]["details"]["reason"] == "full"
    taken = world.seats_of(world.slot)
    assert len(taken) == 4
    check_seat_invariants(world.db, POINT_X)


def test_an_age_band_on_the_visit_day_and_a_cancelled_reservation(world: World) -> None:
    # Ages 70 and over on the visit day: a member by age; cancelling opens the seats at once
    # in this instance (others within the cache bound).
    made = world.reserve(percent=100, born_to=None, age_min=70)
    assert made.status_code == 201, made.get_json()
    outsider = world.patient(OUTSIDER_BORN)
    assert world.book(outsider).status_code == 409
    assert world.book(world.patient(MEMBER_BORN)).status_code == 201
    reservation_id = made.get_json()["reservation"]["reservation_id"]
    cancelled = world.api.call(
        "POST",
        f"/v1/points/{POINT_X}/reservations/{reservation_id}/cancel",
        token=world.token("admin"),
        body={"reason": "the group is served elsewhere"},
        key=uuid.uuid4().hex,
    )
    assert cancelled.status_code == 200, cancelled.get_json()
    assert cancelled.get_json()["reservation"]["state"] == "cancelled"
    assert world.book(outsider).status_code == 201
    actions = sorted(d.to_dict()["action"] for d in world.db.collection(AUDIT_LOG).stream())
    assert actions == ["reservation.cancel", "reservation.create"]


def test_search_hides_reserved_seats_from_outsiders_and_shows_them_to_members(
    world: World,
) -> None:
    assert world.reserve(percent=50, date_from=world.day.isoformat()).status_code == 201
    member, outsider = world.patient(MEMBER_BORN), world.patient(OUTSIDER_BORN)
    query = {"lat": 50.06, "lon": 19.94, "product": "jcovden"}

    def shown(token: str) -> tuple[int, dict[str, int]]:
        found = world.api.call("GET", "/v1/slots", token=token, query=query).get_json()
        [item] = found["items"]
        listing = world.api.call(
            "GET", f"/v1/points/{POINT_X}/slots", token=token, query={"product": "jcovden"}
        ).get_json()
        return item["free_seats"], {s["slot_id"]: s["free"] for s in listing["slots"]}

    assert shown(world.token("patient", member)) == (12, {
        world.slot: 4,
        sid(POINT_X, world.day, time(10, 0), "jcovden"): 4,
        sid(POINT_X, world.day + timedelta(days=1), time(9, 0), "jcovden"): 4,
    })  # fmt: skip
    # Outsiders (a patient of another cohort, an agent who names nobody) see half.
    for token in (world.token("patient", outsider), world.token("agent")):
        total, slots = shown(token)
        assert total == 6 and set(slots.values()) == {2}
    # Once the outsiders' seats of a slot are taken, the slot vanishes for them only.
    with folding(world.db):
        for _ in range(2):
            assert world.book(world.patient(OUTSIDER_BORN)).status_code == 201
    wiring.search_service().view.invalidate()
    total, slots = shown(world.token("patient", outsider))
    assert total == 4 and world.slot not in slots
    total, slots = shown(world.token("patient", member))
    assert total == 10 and slots[world.slot] == 2
    # After `until`, everyone sees every free seat.
    world.clock.advance(timedelta(hours=2, seconds=1))
    total, slots = shown(world.token("patient", outsider))
    assert total == 10 and slots[world.slot] == 2


def test_a_new_reservation_avoids_taken_seats_and_other_groups(world: World) -> None:
    # Two seats taken before the reservation: its band is chosen among the free seats, so
    # the group keeps its two whole seats (taken seats count as taken).
    for _ in range(2):
        assert world.book(world.patient(OUTSIDER_BORN)).status_code == 201
    before = set(world.seats_of(world.slot))
    assert world.reserve(percent=50).status_code == 201
    kept = _kept(world, world.slot)
    assert len(kept) == 2 and kept.isdisjoint(before)
    # A second group's reservation on the same slot takes another layer; 100 % is the cap.
    second = world.reserve(percent=50, born_to=None, born_from=2000)
    assert second.status_code == 201, second.get_json()
    before_third = snapshot(world.db)
    third = world.reserve(percent=10, born_to=None, age_min=18)
    assert third.status_code == 409 and third.get_json()["error"]["code"] == "reservation_conflict"
    assert snapshot(world.db) == before_third  # nothing written
    # Every seat is now kept for one group or taken: an outsider of both gets nothing.
    assert world.book(world.patient(OUTSIDER_BORN)).status_code == 409
    layers = world.db.collection(RESERVATION_LAYERS).document(POINT_X).get().to_dict()
    assert sorted((e["layer"], e["percent"]) for e in layers["layers"].values()) == [
        (0, 50),
        (50, 50),
    ]


def test_refusals_and_bad_input_write_nothing(world: World) -> None:
    before = snapshot(world.db)
    cases = [
        ("staff_y", {}, 403),
        ("patient", {}, 403),
        ("staff", {"percent": 0}, 400),
        ("staff", {"percent": 101}, 400),
        ("staff", {"until": (world.clock.now() - timedelta(minutes=1)).isoformat()}, 400),
        ("staff", {"until": "2026-12-02T10:00:00"}, 400),  # no offset: ambiguous
        ("staff", {"born_to": None}, 400),  # no group
        ("staff", {"age_min": 60}, 400),  # two kinds of group
        ("staff", {"born_from": 1960, "born_to": 1950}, 400),
        ("staff", {"product": "aspirin"}, 400),
        ("staff", {"date_from": "2026-02-30"}, 400),
        ("staff", {"extra": 1}, 400),
    ]
    for who, body, status in cases:
        token = world.token("patient", world.patient(OUTSIDER_BORN)) if who == "patient" else None
        before = snapshot(world.db)
        response = world.api.call(
            "POST",
            f"/v1/points/{POINT_X}/reservations",
            token=token or world.token(who),
            body={
                "percent": 50,
                "born_to": 1950,
                "until": (world.clock.now() + timedelta(hours=2)).isoformat(),
            }
            | body,
            key=uuid.uuid4().hex,
        )
        assert response.status_code == status, (body, response.get_json())
        assert snapshot(world.db) == before, body
    until = (world.clock.now() + timedelta(hours=1)).isoformat()
    missing = world.api.call(
        "POST",
        "/v1/points/pt-99999/reservations",
        token=world.token("admin"),
        body={"percent": 50, "born_to": 1950, "until": until},
        key=uuid.uuid4().hex,
    )
    assert missing.status_code == 404


def test_the_same_key_replays_the_reservation(world: World) -> None:
    until = (world.clock.now() + timedelta(hours=3)).isoformat()
    body = {"percent": 25, "born_to": 1950, "until": until}
    path, staff = f"/v1/points/{POINT_X}/reservations", world.token("staff")
    first = world.api.call("POST", path, token=staff, body=body, key="same-key")
    again = world.api.call("POST", path, token=staff, body=body, key="same-key")
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert len(list(world.db.collection(RESERVATIONS).stream())) == 1
    other = world.api.call("POST", path, token=staff, body=body | {"percent": 30}, key="same-key")
    assert other.status_code == 422


def test_an_admin_reserves_at_every_point_of_a_voivodeship(world: World) -> None:
    add_point(world.db, POINT_Y, slots=[(world.day, time(9, 0), "jcovden", 2)])
    # add_point writes a directory of its own point only; the voivodeship is read from points.
    body = {
        "voivodeship": "małopolskie",
        "percent": 50,
        "born_to": 1950,
        "until": (world.clock.now() + timedelta(hours=1)).isoformat(),
    }
    made = world.api.call(
        "POST", "/v1/admin/reservations", token=world.token("admin"), body=body, key="v1"
    )
    assert made.status_code == 201, made.get_json()
    assert sorted(r["point_id"] for r in made.get_json()["reservations"]) == [POINT_X, POINT_Y]
    # Replayed with the same key: the same answer, nothing made twice.
    again = world.api.call(
        "POST", "/v1/admin/reservations", token=world.token("admin"), body=body, key="v1"
    )
    assert again.get_json() == made.get_json()
    assert len(list(world.db.collection(RESERVATIONS).stream())) == 2
    assert (
        world.api.call(
            "POST", "/v1/admin/reservations", token=world.token("staff"), body=body, key="v2"
        ).status_code
        == 403
    )
    slot_y = sid(POINT_Y, world.day, time(9, 0), "jcovden")
    outsider = world.patient(OUTSIDER_BORN)
    assert world.book(outsider, slot_y).status_code == 201
    assert world.book(world.patient(OUTSIDER_BORN), slot_y).status_code == 409


def _rush(world: World, seed: int, members_n: int, outsiders_n: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    people = [("member", world.patient(MEMBER_BORN)) for _ in range(members_n)] + [
        ("outsider", world.patient(OUTSIDER_BORN)) for _ in range(outsiders_n)
    ]
    rng.shuffle(people)
    tokens = [world.token("patient", pesel) for _, pesel in people]
    barrier = threading.Barrier(len(people))
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()

    def booker(index: int) -> None:
        kind, _ = people[index]
        barrier.wait()
        outcome = "failed: gave up"
        for _ in range(30):
            response = world.api.call(
                "POST",
                "/v1/appointments",
                token=tokens[index],
                body={"slot_id": world.slot},
                key=f"rush-{seed}-{index}",  # the same request again after a 503
            )
            if response.status_code == 201:
                outcome = "booked"
                break
            error = response.get_json()["error"]
            if response.status_code == 409 and error["code"] == "slot_unavailable":
                outcome = f"refused: {error['details']['reason']}"
                break
            if response.status_code == 503:
                continue  # the client contract: the same again after Retry-After
            outcome = f"failed: {response.status_code} {error['code']}"
            break
        with lock:
            outcomes.append((kind, outcome))

    def other_instance(index: int) -> None:
        """A booker served by another instance: its own seat broker, its own copy of the
        reservations (so its bookers and the gateway's may try the very same seats)."""
        kind, pesel = people[index]
        barrier.wait()
        command = BookAppointment(
            pesel=pesel,
            slot_id=world.slot,
            channel="portal",
            actor=Actor(uid=f"p-{pesel}", role="patient"),
        )
        outcome = "failed: gave up"
        for _ in range(30):
            try:
                second.book(command, world.clock.now())
                outcome = "booked"
                break
            except SlotUnavailableError as refusal:
                outcome = f"refused: {refusal.details['reason']}"
                break
            except OverloadedError:
                continue
            except Exception as err:
                outcome = f"failed: {type(err).__name__}"
                break
        with lock:
            outcomes.append((kind, outcome))

    second = BookingService.on_firestore(
        world.db,
        wiring.rule_book(),
        Settings.from_env().pesel_hash_key,
        reservations=ReservationBook(FirestoreUnitsOfWork(world.db, None)),
    )
    threads = [
        threading.Thread(target=other_instance if i % 2 else booker, args=(i,))
        for i in range(len(people))
    ]
    with folding(world.db):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    return outcomes


@pytest.mark.parametrize("seed", [1, 2])
def test_a_rush_of_outsiders_and_members_never_gives_outsiders_reserved_seats(
    project: str, settable: clock.SettableClock, seed: int
) -> None:
    world = World(project, settable, capacity=6)
    assert world.reserve(percent=50).status_code == 201
    kept = _kept(world, world.slot, capacity=6)
    assert len(kept) == 3
    outcomes = _rush(world, seed, members_n=5, outsiders_n=20)
    assert [o for _, o in outcomes if o.startswith("failed")] == []
    booked = Counter(kind for kind, o in outcomes if o == "booked")
    seats = world.seats_of(world.slot)
    # Never oversold; the slot is full (25 people wanted 6 seats).
    assert len(seats) == 6 and max(seats) < 6
    appointments = {d.id: d.to_dict() for d in world.db.collection(APPOINTMENTS).stream()}
    live = [a for a in appointments.values() if a["status"] == "booked"]
    assert sum(booked.values()) == len(live) == 6
    # No outsider holds a reserved seat; outsiders leave the group its k seats, less what
    # members took beyond them: o + max(0, m - k) <= C - k.
    member_keys = _patient_keys(world, MEMBER_BORN)
    for index, seat in seats.items():
        holder = appointments[seat["appointment_id"]]["patient_key"]
        if index in kept:
            assert holder in member_keys, (index, "an outsider took a reserved seat")
    members, outsiders = booked["member"], booked["outsider"]
    assert outsiders + max(0, members - 3) <= 3
    assert members >= 3  # the group's seats went to the group
    refused = Counter(o for kind, o in outcomes if kind == "outsider" and o != "booked")
    assert set(refused) <= {"refused: reserved", "refused: full"}
    check_seat_invariants(world.db, POINT_X)


def _patient_keys(world: World, born: date) -> set[str]:
    """The keyed ids of the patients born that day (the patient document's id)."""
    return {
        d.id
        for d in world.db.collection("patients").stream()
        if d.to_dict().get("birth_date") == born.isoformat()
    }
