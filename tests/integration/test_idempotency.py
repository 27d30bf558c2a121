"""docs/reliability.md item 6: Idempotency-Key on every write, through the public API.

A client that times out retries with the same key; the retry must neither book twice nor
answer differently. The key is scoped to the caller; a refused request lets go of its key so
the retry is judged again; a completed one is replayed byte for byte even when the world has
changed since. Each test counts what was written (appointments, seats, outbox events), not
only what was answered.

The immediate Pub/Sub publish is switched off (no publisher, as if the bus were down), so
every event a commit wrote stays in `outbox` and "one event" can be counted there.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from common import wiring
from common.adapters.firestore_store import (
    ACTIVE_DOSES,
    APPOINTMENTS,
    AVAILABILITY,
    AVAILABILITY_DELTAS,
    IDEMPOTENCY,
    OUTBOX,
    SEATS,
)
from common.domain.calendar import PointCalendar, SlotRef
from common.services.availability import AvailabilityFolder
from common.services.idempotency import record_id
from tests.support.stack import Api, add_patient, add_point, firestore_client, today_warsaw

POINT = "pt-00001"
THREADS = 8
BOOKING_COLLECTIONS = (
    APPOINTMENTS,
    SEATS,
    ACTIVE_DOSES,
    AVAILABILITY,
    AVAILABILITY_DELTAS,
    OUTBOX,
    IDEMPOTENCY,
)


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


@dataclass
class World:
    api: Api
    db: Any
    pesels: list[str]
    slots: dict[str, str]

    def uid(self, patient: int) -> str:
        return f"patient-{patient}"

    def token(self, patient: int) -> str:
        return self.api.token(self.uid(patient), "patient", pesel=self.pesels[patient])

    def post(self, patient: int, path: str, body: dict[str, Any], key: str | None):
        return self.api.call("POST", path, token=self.token(patient), body=body, key=key)

    def book(self, patient: int, slot: str, key: str | None):
        return self.post(patient, "/v1/appointments", {"slot_id": self.slots[slot]}, key)

    def cancel(self, patient: int, appointment_id: str, key: str):
        return self.post(patient, f"/v1/appointments/{appointment_id}/cancel", {}, key)

    def reschedule(self, patient: int, appointment_id: str, slot: str, key: str):
        return self.post(
            patient,
            f"/v1/appointments/{appointment_id}/reschedule",
            {"slot_id": self.slots[slot]},
            key,
        )

    def count(self, collection: str) -> int:
        return sum(1 for _ in self.db.collection(collection).stream())

    def booked(self) -> list[dict[str, Any]]:
        return [
            a
            for a in (s.to_dict() for s in self.db.collection(APPOINTMENTS).stream())
            if a["status"] == "booked"
        ]

    def events(self) -> Counter[str]:
        return Counter(s.to_dict()["event_type"] for s in self.db.collection(OUTBOX).stream())

    def free(self, slot: str) -> int:
        """Free seats as search shows them, once the background folder has caught up."""
        AvailabilityFolder(self.db).fold_all()
        ref = SlotRef.parse(self.slots[slot])
        document = self.db.collection(AVAILABILITY).document(POINT).get().to_dict()
        found = PointCalendar.from_document(POINT, document).get(ref)
        assert found is not None
        return found.free

    def key_record(self, patient: int, key: str) -> dict[str, Any] | None:
        snapshot = self.db.collection(IDEMPOTENCY).document(record_id(self.uid(patient), key)).get()
        return snapshot.to_dict() if snapshot.exists else None

    def snapshot(self) -> dict[str, Any]:
        return {
            f"{name}/{s.id}": s.to_dict()
            for name in BOOKING_COLLECTIONS
            for s in self.db.collection(name).stream()
        }


@pytest.fixture
def world(project: str) -> World:
    db = firestore_client(project)
    d = today_warsaw() + timedelta(days=2)
    plan = {
        "ONE": (d, time(9, 0), "jcovden", 1),
        "TWO": (d, time(9, 30), "jcovden", 2),
        "LATER": (d + timedelta(days=1), time(9, 0), "jcovden", 2),
        "COMIRNATY": (d, time(9, 0), "comirnaty", 2),
        "DOSE2": (d + timedelta(days=35), time(9, 0), "comirnaty", 2),
    }
    add_point(db, POINT, slots=list(plan.values()))
    return World(
        api=Api(project),
        db=db,
        pesels=[add_patient(db, serial=i) for i in range(3)],
        slots={
            name: SlotRef(POINT, day, at, product).slot_id
            for name, (day, at, product, _) in plan.items()
        },
    )


def concurrently(count: int, request: Any) -> list[tuple[int, bytes]]:
    """Send `request()` from `count` threads released together; (status, raw body) each."""
    barrier = threading.Barrier(count)
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        response = request()
        with lock:
            results.append((response.status_code, response.get_data()))

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == count, "a request hung"
    return results


@pytest.mark.parametrize(("slot", "doses"), [("TWO", 1), ("COMIRNATY", 2)])
def test_concurrent_retries_with_one_key_book_once_and_answer_alike(
    world: World, slot: str, doses: int
) -> None:
    results = concurrently(THREADS, lambda: world.book(0, slot, "same-key"))
    assert len(set(results)) == 1, results  # same status, byte-identical body
    status, body = results[0]
    assert status == 201, body
    assert len(json.loads(body)["appointments"]) == doses
    assert world.count(APPOINTMENTS) == doses
    assert world.count(SEATS) == doses
    assert world.count(ACTIVE_DOSES) == doses
    assert world.events() == Counter({"appointment.booked": doses})
    assert world.free(slot) == 1
    assert world.key_record(0, "same-key")["status"] == "COMPLETED"


def test_same_key_with_another_body_is_refused_and_writes_nothing(world: World) -> None:
    first = world.book(0, "ONE", "k")
    assert first.status_code == 201
    before = world.snapshot()
    mismatch = world.book(0, "LATER", "k")
    assert mismatch.status_code == 422, mismatch.get_json()
    assert mismatch.get_json()["error"]["code"] == "idempotency_key_mismatch"
    # A key is per caller, not per operation: the same key on a cancel is another request.
    aid = first.get_json()["appointments"][0]["appointment_id"]
    other_op = world.cancel(0, aid, "k")
    assert other_op.status_code == 422, other_op.get_json()
    assert world.snapshot() == before
    # The original request still replays.
    again = world.book(0, "ONE", "k")
    assert (again.status_code, again.get_data()) == (201, first.get_data())


def test_keys_are_scoped_per_caller(world: World) -> None:
    a = world.book(0, "TWO", "shared-key")
    b = world.book(1, "TWO", "shared-key")
    assert (a.status_code, b.status_code) == (201, 201), (a.get_json(), b.get_json())
    assert a.get_data() != b.get_data()
    assert len({x["patient_key"] for x in world.booked()}) == 2
    assert world.count(SEATS) == 2
    assert world.free("TWO") == 0
    assert world.key_record(0, "shared-key") is not None
    assert world.key_record(1, "shared-key") is not None


def test_a_refused_request_lets_go_of_its_key_and_a_retry_is_judged_again(world: World) -> None:
    holder = world.book(1, "ONE", "holder")
    assert holder.status_code == 201
    before = world.snapshot()
    full = world.book(0, "ONE", "retry-me")
    assert full.status_code == 409 and full.get_json()["error"]["code"] == "slot_unavailable"
    assert world.key_record(0, "retry-me") is None
    assert world.snapshot() == before
    # The seat frees up; the same key and body now books (a replay would answer 409 again).
    aid = holder.get_json()["appointments"][0]["appointment_id"]
    assert world.cancel(1, aid, "holder-cancel").status_code == 200
    retry = world.book(0, "ONE", "retry-me")
    assert retry.status_code == 201, retry.get_json()
    assert world.free("ONE") == 0
    assert world.key_record(0, "retry-me")["status"] == "COMPLETED"


def test_a_completed_request_replays_even_after_the_appointment_was_cancelled(
    world: World,
) -> None:
    first = world.book(0, "ONE", "k")
    assert first.status_code == 201
    aid = first.get_json()["appointments"][0]["appointment_id"]
    assert world.cancel(0, aid, "cancel-k").status_code == 200
    before = world.snapshot()
    replay = world.book(0, "ONE", "k")
    # The stored answer, not a new booking: the seat stays free, nothing is written.
    assert (replay.status_code, replay.get_data()) == (201, first.get_data())
    assert world.snapshot() == before
    assert world.booked() == []
    assert world.free("ONE") == 1


@pytest.mark.parametrize("key", [None, "   "])
def test_a_write_without_a_key_is_refused_and_writes_nothing(world: World, key: str | None) -> None:
    before = world.snapshot()
    headers = {} if key is None else {"Idempotency-Key": key}
    response = world.api.call(
        "POST",
        "/v1/appointments",
        token=world.token(0),
        body={"slot_id": world.slots["ONE"]},
        headers=headers,
    )
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == "invalid_request"
    assert world.snapshot() == before


def test_cancel_is_idempotent(world: World) -> None:
    booked = world.book(0, "COMIRNATY", "b")
    aid = booked.get_json()["appointments"][0]["appointment_id"]
    results = concurrently(THREADS, lambda: world.cancel(0, aid, "c"))
    assert len(set(results)) == 1, results
    assert results[0][0] == 200
    again = world.cancel(0, aid, "c")
    assert (again.status_code, again.get_data()) == results[0]
    # Both doses cancelled once: two events, not 2 x 9.
    assert world.events() == Counter({"appointment.booked": 2, "appointment.cancelled": 2})
    assert world.count(SEATS) == 0
    assert world.free("COMIRNATY") == 2 and world.free("DOSE2") == 2
    # A new key is a new request: judged again, and refused.
    fresh = world.cancel(0, aid, "c2")
    assert fresh.status_code == 409 and fresh.get_json()["error"]["code"] == "invalid_state"


def test_reschedule_is_idempotent(world: World) -> None:
    booked = world.book(0, "ONE", "b")
    aid = booked.get_json()["appointments"][0]["appointment_id"]
    results = concurrently(THREADS, lambda: world.reschedule(0, aid, "LATER", "r"))
    assert len(set(results)) == 1, results
    assert results[0][0] == 200
    # Judged again, this would be 400 "already in this slot"; replayed, it is the same 200.
    again = world.reschedule(0, aid, "LATER", "r")
    assert (again.status_code, again.get_data()) == results[0]
    assert world.events() == Counter({"appointment.booked": 1, "appointment.rescheduled": 1})
    [seat] = [s.to_dict() for s in world.db.collection(SEATS).stream()]
    assert seat["slot_id"] == world.slots["LATER"]
    assert (world.free("ONE"), world.free("LATER")) == (1, 1)


def test_a_retry_after_a_lost_commit_response_replays_the_booking(world: World) -> None:
    # The booking's commit lands but its answer is lost (a deadline, a dropped connection):
    # the caller gets a 503 and retries with the same key, as it is told to.
    api = wiring.firestore_client()._firestore_api
    original = api.commit

    def commit_then_lose_the_answer(*args: Any, **kwargs: Any) -> Any:
        response = original(*args, **kwargs)
        request = kwargs.get("request") or args[0]
        if any(f"/documents/{APPOINTMENTS}/" in w.update.name for w in request["writes"]):
            api.commit = original  # once
            raise gexc.DeadlineExceeded("the commit's response was lost")
        return response

    api.commit = commit_then_lose_the_answer
    lost = world.book(0, "TWO", "k")
    assert lost.status_code == 503, lost.get_json()
    [stored] = world.booked()  # the booking exists...
    retry = world.book(0, "TWO", "k")
    # ...so the retry must hand it over, not refuse with 409 already_booked.
    assert retry.status_code == 201, retry.get_json()
    assert retry.get_json()["appointments"][0]["appointment_id"] == stored["appointment_id"]
    assert world.count(APPOINTMENTS) == 1
