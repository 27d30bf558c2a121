"""Point staff edit their calendar: publish, add, change capacity, block, remove.

Every request goes through the gateway to the real functions on the Firestore emulator. A
decrease never drops a patient silently: the displaced visits are cancelled in the commit
that releases their seats, each with an `appointment.displaced` event offering the nearest
alternatives, and the audit entry is in that same commit (same commit time).
"""

from __future__ import annotations

import functools
import random
import threading
from datetime import time, timedelta

import pytest

from common import wiring
from common.adapters.firestore_store import ACTIVE_DOSES, APPOINTMENTS, AUDIT_LOG, SEATS
from tests.support.points import (
    POINT_X,
    POINT_Y,
    POINT_Z,
    audits,
    check_seat_invariants,
    events,
    make_world,
    sid,
    slot_state,
    snapshot,
    update_time,
)
from tests.support.stack import add_patient, today_warsaw

CONCURRENCY_SEEDS = 3


@functools.cache
def _no_publisher() -> None:
    return None


@pytest.fixture(autouse=True)
def events_stay_in_outbox(project: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "publisher", _no_publisher)
    wiring.reset()


@pytest.fixture
def world(project: str):
    return make_world(project)


def _template(world, **overrides):
    start = world.day + timedelta(days=1)
    body = {
        "date_from": start.isoformat(),
        "date_to": (start + timedelta(days=6)).isoformat(),
        "weekdays": [0, 1, 2, 3, 4],
        "opens": "11:00",
        "closes": "13:00",
        "slot_minutes": 30,
        "capacity": 4,
        "product": "jcovden",
    }
    return body | overrides


def test_publish_adds_the_template_and_keeps_existing_slots(world) -> None:
    path = f"/v1/points/{POINT_X}/calendar/publish"
    body = _template(world)
    first = world.call("POST", path, "staff-x", body=body, key="p1")
    assert first.status_code == 200, first.get_json()
    weekdays = sum(1 for i in range(7) if (world.day + timedelta(days=1 + i)).weekday() < 5)
    assert first.get_json()["added"] == weekdays * 4 and first.get_json()["kept"] == 0
    assert world.call("POST", path, "staff-x", body=body, key="p1").get_json() == first.get_json()
    # Publishing again with a smaller capacity never lowers what exists.
    again = world.call("POST", path, "staff-x", body=body | {"capacity": 1}, key="p2")
    assert again.get_json() == first.get_json() | {"added": 0, "kept": weekdays * 4, "slot_ids": []}
    some = first.get_json()["slot_ids"][0]
    assert slot_state(world.db, some) == {"cap": 4, "free": 4}
    entry = audits(world.db, "calendar.publish")
    assert len(entry) == 2 and entry[0]["actor_point_id"] == POINT_X
    # The new slots are bookable at once.
    assert world.book(0, some).status_code == 201
    check_seat_invariants(world.db, POINT_X)


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"date_from": "2020-01-01"}, 400, "invalid_request"),
        ({"date_to": "2099-01-01"}, 400, "invalid_request"),
        ({"product": "spikevax"}, 400, "product_not_offered"),
        ({"product": "sputnik"}, 400, "unknown_product"),
        ({"opens": "13:00", "closes": "11:00"}, 400, "invalid_request"),
        ({"slot_minutes": 3}, 400, "invalid_request"),
        ({"capacity": 101}, 400, "invalid_request"),
        ({"weekdays": [7]}, 400, "invalid_request"),
    ],
)
def test_publish_refusals_write_nothing(world, change, status, code) -> None:
    before = snapshot(world.db)
    response = world.write(
        "POST", f"/v1/points/{POINT_X}/calendar/publish", "staff-x", _template(world, **change)
    )
    assert (response.status_code, response.get_json()["error"]["code"]) == (status, code)
    assert snapshot(world.db) == before


def test_add_one_slot_then_a_duplicate_is_409_and_the_staff_view_shows_it(world) -> None:
    day = world.day + timedelta(days=2)
    body = {"day": day.isoformat(), "start": "15:45", "product": "comirnaty", "capacity": 2}
    added = world.write("POST", f"/v1/points/{POINT_X}/slots", "staff-x", body)
    assert added.status_code == 201
    slot_id = sid(POINT_X, day, time(15, 45), "comirnaty")
    assert added.get_json()["slot"]["slot_id"] == slot_id
    before = snapshot(world.db)
    duplicate = world.write("POST", f"/v1/points/{POINT_X}/slots", "staff-x", body)
    assert duplicate.status_code == 409 and duplicate.get_json()["error"]["code"] == "slot_exists"
    assert snapshot(world.db) == before
    past = body | {"day": (today_warsaw() - timedelta(days=1)).isoformat()}
    assert world.write("POST", f"/v1/points/{POINT_X}/slots", "staff-x", past).status_code == 400
    view = world.call(
        "GET",
        f"/v1/points/{POINT_X}/calendar",
        "staff-x",
        query={"date_from": day.isoformat(), "date_to": day.isoformat()},
    )
    assert view.status_code == 200
    assert [s["slot_id"] for s in view.get_json()["slots"]] == [slot_id]
    assert view.get_json()["slots"][0] | {} == {
        "slot_id": slot_id,
        "point_id": POINT_X,
        "starts_at": view.get_json()["slots"][0]["starts_at"],
        "product": "comirnaty",
        "capacity": 2,
        "free": 2,
        "booked": 0,
        "blocked": False,
        "blocked_capacity": None,
    }


def _book_all(world, slot_id: str, patients: list[int]) -> list[str]:
    ids = []
    for p in patients:
        response = world.book(p, slot_id)
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["appointments"][0]["appointment_id"])
    return ids


def test_lowering_capacity_displaces_visits_with_events_and_audit_in_one_commit(world) -> None:
    slot_id = sid(POINT_X, world.day, time(9, 0), "jcovden")
    booked = _book_all(world, slot_id, [0, 1, 2])
    response = world.write(
        "PATCH", f"/v1/points/{POINT_X}/slots/{slot_id}", "staff-x", {"capacity": 1}
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["slot"]["capacity"] == 1 and body["slot"]["free"] == 0
    displaced = {d["appointment_id"] for d in body["displaced"]}
    assert len(displaced) == 2 and displaced < set(booked)
    assert all(d["patient"]["masked_pesel"].endswith("*****") for d in body["displaced"])
    kept = (set(booked) - displaced).pop()
    assert world.appointment(kept)["status"] == "booked"
    # Seats [C', C) are displaced, so the visit that stays holds seat 0.
    assert int(world.appointment(kept)["seat_id"].rsplit("_", 1)[1]) == 0
    fired = events(world.db, "appointment.displaced")
    assert {e["appointment_id"] for e in fired} == displaced
    for event in fired:
        assert event["reason"] == "point_capacity_reduced"
        # The nearest alternatives: same product, from the visit's day, never the lost slot.
        assert event["alternatives"], event
        assert all(a["slot_id"] != slot_id for a in event["alternatives"])
        assert event["alternatives"][0]["point_id"] == POINT_Z
    entry = audits(world.db, "slot.change")
    assert len(entry) == 1 and set(entry[0]["appointment_ids"]) == displaced
    for appointment_id in displaced:
        stored = world.appointment(appointment_id)
        assert (stored["status"], stored["cancel_reason"]) == (
            "cancelled",
            "point_capacity_reduced",
        )
        # One commit: the visit, the audit entry and the events carry one commit time.
        assert update_time(world.db, APPOINTMENTS, appointment_id) == entry[0]["_create_time"]
    assert {e["_create_time"] for e in fired} == {entry[0]["_create_time"]}
    check_seat_invariants(world.db, POINT_X)
    # A displaced patient may book again (the dose lock went with the visit).
    locks = {s.to_dict()["appointment_id"] for s in world.db.collection(ACTIVE_DOSES).stream()}
    assert locks.isdisjoint(displaced)


def test_block_keeps_the_slot_visible_and_unblock_restores_it(world) -> None:
    slot_id = sid(POINT_X, world.day, time(9, 0), "jcovden")
    [one] = _book_all(world, slot_id, [0])
    path = f"/v1/points/{POINT_X}/slots/{slot_id}"
    blocked = world.write("PATCH", path, "staff-x", {"blocked": True})
    assert blocked.status_code == 200
    assert blocked.get_json()["slot"] | {"starts_at": None} == {
        "slot_id": slot_id,
        "point_id": POINT_X,
        "starts_at": None,
        "product": "jcovden",
        "capacity": 0,
        "free": 0,
        "booked": 0,
        "blocked": True,
        "blocked_capacity": 3,
    }
    assert [d["appointment_id"] for d in blocked.get_json()["displaced"]] == [one]
    public = world.call("GET", f"/v1/points/{POINT_X}/slots", "patient-1")
    assert slot_id not in {s["slot_id"] for s in public.get_json()["slots"]}
    assert world.book(1, slot_id).status_code == 409
    view = world.call("GET", f"/v1/points/{POINT_X}/calendar", "staff-x")
    assert {s["slot_id"]: s["blocked"] for s in view.get_json()["slots"]}[slot_id] is True
    check_seat_invariants(world.db, POINT_X)
    unblocked = world.write("PATCH", path, "staff-x", {"blocked": False})
    assert unblocked.get_json()["slot"]["capacity"] == 3
    assert slot_state(world.db, slot_id) == {"cap": 3, "free": 3}
    assert len(_book_all(world, slot_id, [1, 2, 3])) == 3
    check_seat_invariants(world.db, POINT_X)


def test_raising_capacity_adds_free_seats(world) -> None:
    slot_id = sid(POINT_Y, world.day, time(9, 0), "jcovden")
    _book_all(world, slot_id, [0, 1])
    assert world.book(2, slot_id).status_code == 409
    path = f"/v1/points/{POINT_Y}/slots/{slot_id}"
    lowered = world.write("PATCH", path, "staff-y", {"capacity": 1})
    assert len(lowered.get_json()["displaced"]) == 1
    raised = world.write("PATCH", path, "staff-y", {"capacity": 4})
    assert raised.get_json()["slot"] | {"starts_at": None} == {
        "slot_id": slot_id,
        "point_id": POINT_Y,
        "starts_at": None,
        "product": "jcovden",
        "capacity": 4,
        "free": 3,
        "booked": 1,
        "blocked": False,
        "blocked_capacity": None,
    }
    assert len(_book_all(world, slot_id, [2, 3])) == 2
    check_seat_invariants(world.db, POINT_Y)


def test_removing_a_slot_displaces_with_slot_removed_and_it_can_come_back(world) -> None:
    slot_id = sid(POINT_X, world.day, time(9, 0), "jcovden")
    booked = _book_all(world, slot_id, [0, 1])
    path = f"/v1/points/{POINT_X}/slots/{slot_id}"
    removed = world.call("DELETE", path, "staff-x", key="rm1")
    assert removed.status_code == 200, removed.get_json()
    assert {d["appointment_id"] for d in removed.get_json()["displaced"]} == set(booked)
    assert {e["reason"] for e in events(world.db, "appointment.displaced")} == {"slot_removed"}
    view = world.call("GET", f"/v1/points/{POINT_X}/calendar", "staff-x")
    assert slot_id not in {s["slot_id"] for s in view.get_json()["slots"]}
    assert world.call("DELETE", path, "staff-x", key="rm2").status_code == 404
    assert world.book(2, slot_id).status_code == 409
    # Added again: the blockers of its old seats are gone, every seat is bookable.
    body = {"day": world.day.isoformat(), "start": "09:00", "product": "jcovden", "capacity": 3}
    assert world.write("POST", f"/v1/points/{POINT_X}/slots", "staff-x", body).status_code == 201
    assert len(_book_all(world, slot_id, [2, 3, 0])) == 3
    check_seat_invariants(world.db, POINT_X)


def test_displacing_dose_one_also_cancels_its_dose_two(world) -> None:
    slot_id = sid(POINT_X, world.day, time(10, 0), "comirnaty")
    response = world.book(0, slot_id)
    dose1, dose2 = (a["appointment_id"] for a in response.get_json()["appointments"])
    second_slot = world.appointment(dose2)["slot_id"]
    free_before = slot_state(world.db, second_slot)["free"]
    world.write("PATCH", f"/v1/points/{POINT_X}/slots/{slot_id}", "staff-x", {"capacity": 0})
    assert world.appointment(dose1)["status"] == "cancelled"
    assert world.appointment(dose2)["status"] == "cancelled"
    assert slot_state(world.db, second_slot)["free"] == free_before + 1
    assert [e["appointment_id"] for e in events(world.db, "appointment.cancelled")] == [dose2]
    check_seat_invariants(world.db, POINT_X)


def test_other_points_staff_and_patients_are_refused_and_nothing_changes(world) -> None:
    slot_id = sid(POINT_X, world.day, time(9, 0), "jcovden")
    before = snapshot(world.db)
    for who, status in (("staff-y", 403), ("patient-0", 403), ("agent", 403), (None, 401)):
        response = world.write(
            "PATCH", f"/v1/points/{POINT_X}/slots/{slot_id}", who, {"capacity": 0}
        )
        assert response.status_code == status, (who, response.get_json())
    assert (
        world.write(
            "PATCH",
            f"/v1/points/{POINT_X}/slots/{sid(POINT_Y, world.day, time(9, 0), 'jcovden')}",
            "staff-x",
            {"capacity": 0},
        ).status_code
        == 404
    )
    assert snapshot(world.db) == before


@pytest.mark.parametrize("seed", range(CONCURRENCY_SEEDS))
def test_lowering_capacity_during_a_rush_drops_nobody_silently(project: str, seed: int) -> None:
    rng = random.Random(seed)
    capacity = rng.randint(4, 8)
    target = rng.randint(0, capacity - 2)
    day = today_warsaw() + timedelta(days=2)
    world = make_world(
        project, patients=0, slots={POINT_X: [(day, time(9, 0), "jcovden", capacity)]}
    )
    pesels = [add_patient(world.db, serial=100 + i) for i in range(capacity + 4)]
    world.pesels = pesels
    slot_id = sid(POINT_X, day, time(9, 0), "jcovden")
    barrier = threading.Barrier(len(pesels) + 1)
    outcomes: list[int] = []
    lock = threading.Lock()

    def booker(index: int) -> None:
        barrier.wait()
        response = world.book(index, slot_id)
        with lock:
            outcomes.append(response.status_code)

    def staff() -> None:
        barrier.wait()
        threading.Event().wait(rng.uniform(0, 0.05))
        response = world.write(
            "PATCH", f"/v1/points/{POINT_X}/slots/{slot_id}", "staff-x", {"capacity": target}
        )
        with lock:
            outcomes.append(("staff", response.status_code, response.get_json()))

    threads = [threading.Thread(target=booker, args=(i,)) for i in range(len(pesels))]
    threads.append(threading.Thread(target=staff))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    staff_result = next(o for o in outcomes if isinstance(o, tuple))
    assert staff_result[1] == 200, staff_result
    assert all(o in (201, 409) for o in outcomes if not isinstance(o, tuple)), outcomes
    check_seat_invariants(world.db, POINT_X)
    appointments = [s.to_dict() for s in world.db.collection(APPOINTMENTS).stream()]
    booked = [a for a in appointments if a["status"] == "booked"]
    cancelled = {a["appointment_id"] for a in appointments if a["status"] == "cancelled"}
    assert len(booked) <= target
    # Every visit that lost its seat was cancelled with its event, and listed to the staff.
    assert {e["appointment_id"] for e in events(world.db, "appointment.displaced")} == cancelled
    assert {d["appointment_id"] for d in staff_result[2]["displaced"]} == cancelled
    assert sum(1 for o in outcomes if o == 201) == len(booked) + len(cancelled)
    seats = [s.to_dict() for s in world.db.collection(SEATS).stream()]
    assert sum(1 for s in seats if s.get("blocker")) == capacity - target
    assert len(list(world.db.collection(AUDIT_LOG).stream())) == 1
