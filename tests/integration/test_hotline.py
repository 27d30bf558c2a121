"""The hotline: look a patient up by full PESEL (audited), book, move and cancel for them."""

from __future__ import annotations

import functools
from datetime import time, timedelta

import pytest

from common import wiring
from common.adapters.firestore_store import APPOINTMENTS, AUDIT_LOG
from tests.support.points import (
    POINT_X,
    POINT_Y,
    audits,
    key_of,
    make_world,
    seed_visit,
    sid,
    snapshot,
    update_time,
)
from tests.support.stack import today_warsaw


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


def test_lookup_by_full_pesel_returns_the_record_and_writes_only_its_audit_and_count(
    world,
) -> None:
    pesel = world.pesels[0]
    booked = world.book(0, sid(POINT_X, world.day, time(9, 0), "jcovden"))
    appointment_id = booked.get_json()["appointments"][0]["appointment_id"]
    seed_visit(world.db, pesel, day=today_warsaw() - timedelta(days=200), product="comirnaty")
    before = snapshot(world.db)
    response = world.call(
        "POST", "/v1/patients/lookup", "agent", body={"pesel": pesel, "reason": "caller asks"}
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["patient"]["masked_pesel"] == pesel[:6] + "*****"
    assert [r["kind"] for r in body["referrals"]] == ["primary"]
    assert appointment_id in [a["appointment_id"] for a in body["appointments"]]
    after = snapshot(world.db)
    added = {k: v for k, v in after.items() if k not in before}
    changed = {k for k in before if after.get(k) != before[k]}
    # The agent's look-up counters (per minute and per day, issue 12) count it: created the
    # first time, incremented after; nothing else changes.
    counters = {k for k in set(added) | changed if k.startswith("quota_counters/lookup_")}
    assert len(counters) == 2, sorted(set(added) | changed)
    [(path, entry)] = [(k, v) for k, v in added.items() if k not in counters]
    assert not changed - counters
    assert path.startswith(f"{AUDIT_LOG}/")
    assert entry["action"] == "patient.lookup" and entry["reason"] == "caller asks"
    assert entry["patient_keys"] == [key_of(pesel)] and entry["actor_role"] == "agent"


@pytest.mark.parametrize(
    ("who", "body", "status"),
    [
        ("agent", {"pesel": "440514", "reason": "caller asks"}, 400),
        ("agent", {"pesel": "44051401358", "reason": "caller asks"}, 400),
        ("agent", {"pesel": "Kowalski", "reason": "caller asks"}, 400),
        ("agent", {"pesel": "44051401359"}, 400),
        ("agent", {"pesel": "44051401359", "name": "Anna", "reason": "x y z"}, 400),
        ("patient-0", {"pesel": "44051401359", "reason": "caller asks"}, 403),
        ("staff-x", {"pesel": "44051401359", "reason": "caller asks"}, 403),
        (None, {"pesel": "44051401359", "reason": "caller asks"}, 401),
    ],
)
def test_lookup_refusals_write_nothing(world, who, body, status) -> None:
    before = snapshot(world.db)
    response = world.call("POST", "/v1/patients/lookup", who, body=body)
    assert response.status_code == status, response.get_json()
    assert snapshot(world.db) == before


def test_agent_books_moves_and_cancels_with_a_reason_each_audited(world) -> None:
    pesel = world.pesels[1]
    first = sid(POINT_X, world.day, time(9, 0), "jcovden")
    other = sid(POINT_Y, world.day, time(9, 0), "jcovden")
    before = snapshot(world.db)
    no_reason = world.write("POST", "/v1/appointments", "agent", {"slot_id": first, "pesel": pesel})
    assert no_reason.status_code == 400
    assert snapshot(world.db) == before
    booked = world.write(
        "POST",
        "/v1/appointments",
        "agent",
        {"slot_id": first, "pesel": pesel, "reason": "phoned 989"},
    )
    assert booked.status_code == 201, booked.get_json()
    appointment_id = booked.get_json()["appointments"][0]["appointment_id"]
    assert booked.get_json()["appointments"][0]["channel"] == "hotline"
    [entry] = audits(world.db, "appointment.book")
    assert (entry["reason"], entry["appointment_ids"]) == ("phoned 989", [appointment_id])
    assert entry["_create_time"] == update_time(world.db, APPOINTMENTS, appointment_id)
    path = f"/v1/appointments/{appointment_id}"
    before = snapshot(world.db)
    assert world.write("POST", f"{path}/reschedule", "agent", {"slot_id": other}).status_code == 400
    assert world.write("POST", f"{path}/cancel", "agent", {}).status_code == 400
    assert snapshot(world.db) == before
    moved = world.write(
        "POST", f"{path}/reschedule", "agent", {"slot_id": other, "reason": "wants Warsaw"}
    )
    assert moved.status_code == 200
    [entry] = audits(world.db, "appointment.reschedule")
    assert entry["reason"] == "wants Warsaw"
    cancelled = world.write("POST", f"{path}/cancel", "agent", {"reason": "caller cancels"})
    assert cancelled.status_code == 200
    [entry] = audits(world.db, "appointment.cancel")
    assert entry["reason"] == "caller cancels" and entry["patient_keys"] == [key_of(pesel)]
    assert entry["_create_time"] == update_time(world.db, APPOINTMENTS, appointment_id)


def test_staff_book_only_at_their_own_point(world) -> None:
    pesel = world.pesels[2]
    before = snapshot(world.db)
    elsewhere = world.write(
        "POST",
        "/v1/appointments",
        "staff-x",
        {"slot_id": sid(POINT_Y, world.day, time(9, 0), "jcovden"), "pesel": pesel},
    )
    assert elsewhere.status_code == 403
    assert snapshot(world.db) == before
    here = world.write(
        "POST",
        "/v1/appointments",
        "staff-x",
        {"slot_id": sid(POINT_X, world.day, time(9, 0), "jcovden"), "pesel": pesel},
    )
    assert here.status_code == 201
    [entry] = audits(world.db, "appointment.book")
    assert entry["actor_role"] == "staff" and entry["actor_point_id"] == POINT_X
