"""Carrying out visits: the day's list, check-in, completion, no-show and walk-ins.

Visits on today's date (or in the past) cannot be booked through the API, so those tests
write the booked visit directly (tests/support/points.py::seed_visit) and then drive every
staff action through the gateway.
"""

from __future__ import annotations

import functools
from datetime import date, time, timedelta

import pytest

from common import wiring
from common.adapters.firestore_store import (
    ACTIVE_DOSES,
    APPOINTMENTS,
    REFERRALS,
    SEATS,
    VACCINATIONS,
)
from tests.support.points import (
    POINT_X,
    POINT_Y,
    audits,
    events,
    key_of,
    make_world,
    seed_visit,
    snapshot,
    update_time,
)
from tests.support.stack import add_patient, today_warsaw


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


def _referral(world, pesel: str, kind: str = "primary") -> dict:
    ref_id = f"ref-{key_of(pesel)[:8]}-{kind}"
    return world.db.collection(REFERRALS).document(ref_id).get().to_dict()["referral"]


def test_the_days_list_shows_masked_patients_and_never_a_full_pesel(world) -> None:
    today = today_warsaw()
    first = seed_visit(world.db, world.pesels[0], day=today, start=time(9, 0))
    second = seed_visit(world.db, world.pesels[1], day=today, start=time(8, 0), seat=1)
    seed_visit(world.db, world.pesels[2], day=today + timedelta(days=1))
    seed_visit(world.db, world.pesels[3], point=POINT_Y, day=today)
    response = world.call(
        "GET", f"/v1/points/{POINT_X}/visits", "staff-x", query={"date": today.isoformat()}
    )
    assert response.status_code == 200
    visits = response.get_json()["visits"]
    assert [v["appointment_id"] for v in visits] == [second, first]
    assert visits[0]["patient"] == {
        "masked_pesel": world.pesels[1][:6] + "*****",
        "birth_year": 1980,
        "sex": "F",
    }
    assert visits[0]["status"] == "booked" and visits[0]["checked_in_at"] is None
    text = response.get_data(as_text=True)
    assert all(p not in text for p in world.pesels)
    assert (
        world.call(
            "GET", f"/v1/points/{POINT_X}/visits", "staff-y", query={"date": today.isoformat()}
        ).status_code
        == 403
    )
    assert world.call("GET", f"/v1/points/{POINT_X}/visits", "staff-x").status_code == 400


def test_check_in_needs_the_patients_own_pesel(world) -> None:
    visit = seed_visit(world.db, world.pesels[0], day=today_warsaw())
    path = f"/v1/appointments/{visit}/check-in"
    before = snapshot(world.db)
    wrong = world.write("POST", path, "staff-x", {"pesel": world.pesels[1]})
    assert (wrong.status_code, wrong.get_json()["error"]["code"]) == (409, "patient_mismatch")
    assert world.write("POST", path, "staff-x", {"pesel": "44051401358"}).status_code == 400
    assert world.write("POST", path, "staff-x", {"pesel": "4405140"}).status_code == 400
    assert world.write("POST", path, "staff-y", {"pesel": world.pesels[0]}).status_code == 403
    assert snapshot(world.db) == before
    ok = world.write("POST", path, "staff-x", {"pesel": world.pesels[0]})
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["appointment"]["checked_in_at"]
    [entry] = audits(world.db, "visit.check_in")
    assert entry["appointment_ids"] == [visit]
    assert entry["_create_time"] == update_time(world.db, APPOINTMENTS, visit)
    listed = world.call(
        "GET", f"/v1/points/{POINT_X}/visits", "staff-x", query={"date": today_warsaw().isoformat()}
    )
    assert listed.get_json()["visits"][0]["checked_in_at"] is not None


def test_completing_a_single_dose_writes_the_record_closes_the_referral_and_emits(world) -> None:
    pesel = world.pesels[0]
    visit = seed_visit(world.db, pesel, day=today_warsaw(), product="jcovden")
    world.write("POST", f"/v1/appointments/{visit}/check-in", "staff-x", {"pesel": pesel})
    response = world.write(
        "POST",
        f"/v1/appointments/{visit}/complete",
        "staff-x",
        {"product": "jcovden", "lot_number": "XD-1234"},
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["appointment"]["status"] == "completed"
    record = world.db.collection(VACCINATIONS).document(visit).get()
    data = record.to_dict()
    assert data["patient_key"] == key_of(pesel)
    assert data["dose"] == {
        "product_code": "jcovden",
        "dose_number": 1,
        "given_on": today_warsaw().isoformat(),
        "kind": "primary",
    }
    assert (data["lot_number"], data["point_id"], data["leftover_dose"]) == (
        "XD-1234",
        POINT_X,
        False,
    )
    assert _referral(world, pesel)["status"] == "used"
    [event] = events(world.db, "vaccination.completed")
    assert {k: event[k] for k in ("appointment_id", "product", "lot_number", "dose_number")} == {
        "appointment_id": visit,
        "product": "jcovden",
        "lot_number": "XD-1234",
        "dose_number": 1,
    }
    assert event["patient_key"] == key_of(pesel) and event["point_id"] == POINT_X
    assert event["dose_kind"] == "primary" and event["given_on"] == today_warsaw().isoformat()
    [entry] = audits(world.db, "visit.complete")
    # One commit: the record, the visit, the event and the audit entry.
    assert entry["_create_time"] == record.create_time == event["_create_time"]
    assert entry["_create_time"] == update_time(world.db, APPOINTMENTS, visit)
    again = world.write(
        "POST",
        f"/v1/appointments/{visit}/complete",
        "staff-x",
        {"product": "jcovden", "lot_number": "XD-1234"},
    )
    assert again.status_code == 409


def test_dose_one_of_two_keeps_the_referral_open(world) -> None:
    pesel = world.pesels[1]
    visit = seed_visit(world.db, pesel, day=today_warsaw(), product="comirnaty")
    world.write("POST", f"/v1/appointments/{visit}/check-in", "admin", {"pesel": pesel})
    response = world.write(
        "POST",
        f"/v1/appointments/{visit}/complete",
        "admin",
        {"product": "comirnaty", "lot_number": "FF1234"},
    )
    assert response.status_code == 200
    assert _referral(world, pesel)["status"] == "active"
    dose2 = seed_visit(
        world.db, pesel, day=today_warsaw(), product="comirnaty", dose_number=2, seat=1
    )
    world.write("POST", f"/v1/appointments/{dose2}/check-in", "staff-x", {"pesel": pesel})
    world.write(
        "POST",
        f"/v1/appointments/{dose2}/complete",
        "staff-x",
        {"product": "comirnaty", "lot_number": "FF1235"},
    )
    assert _referral(world, pesel)["status"] == "used"


@pytest.mark.parametrize(
    ("body", "when", "status", "code"),
    [
        ({"product": "jcovden", "lot_number": "ab"}, 0, 400, "invalid_request"),
        ({"product": "jcovden", "lot_number": "lowercase1"}, 0, 400, "invalid_request"),
        ({"product": "comirnaty", "lot_number": "FF1234"}, 0, 400, "invalid_request"),
        ({"product": "jcovden", "lot_number": "FF1234"}, 1, 409, "visit_not_due"),
        ({"product": "jcovden", "lot_number": "FF1234"}, 0, 409, "check_in_required"),
        (
            {"product": "jcovden", "lot_number": "FF1234", "check_in_override_reason": "x"},
            0,
            400,
            "invalid_request",
        ),
    ],
)
def test_completion_refusals_write_nothing(world, body, when, status, code) -> None:
    visit = seed_visit(world.db, world.pesels[0], day=today_warsaw() + timedelta(days=when))
    before = snapshot(world.db)
    response = world.write("POST", f"/v1/appointments/{visit}/complete", "staff-x", body)
    assert (response.status_code, response.get_json()["error"]["code"]) == (status, code)
    assert snapshot(world.db) == before


def test_completion_without_a_check_in_needs_a_reason_and_is_audited_as_such(world) -> None:
    pesel = world.pesels[2]
    visit = seed_visit(world.db, pesel, day=today_warsaw(), product="jcovden")
    reason = "no identity document; the patient is known to the nurse"
    response = world.write(
        "POST",
        f"/v1/appointments/{visit}/complete",
        "staff-x",
        {"product": "jcovden", "lot_number": "XD-77", "check_in_override_reason": reason},
    )
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()["appointment"]
    assert answer["status"] == "completed" and answer["checked_in"] is False
    assert answer["check_in_override_reason"] == reason
    assert world.appointment(visit)["check_in_override_reason"] == reason
    assert audits(world.db, "visit.complete") == []
    [entry] = audits(world.db, "visit.complete_without_check_in")
    assert entry["details"] == {"check_in_override_reason": reason}
    record = world.db.collection(VACCINATIONS).document(visit).get()
    assert entry["_create_time"] == record.create_time  # the same commit
    listed = world.call(
        "GET", f"/v1/points/{POINT_X}/visits", "staff-x", query={"date": today_warsaw().isoformat()}
    )
    assert listed.get_json()["visits"][0]["check_in_override_reason"] == reason


def test_no_show_only_after_the_start_frees_the_dose_and_cancels_dose_two(world) -> None:
    pesel = world.pesels[0]
    yesterday = today_warsaw() - timedelta(days=1)
    later = today_warsaw() + timedelta(days=30)
    dose2 = seed_visit(world.db, pesel, day=later, product="comirnaty", dose_number=2)
    dose1 = seed_visit(world.db, pesel, day=yesterday, product="comirnaty", linked=dose2)
    world.db.collection(APPOINTMENTS).document(dose2).update({"linked_appointment_id": dose1})
    future = seed_visit(world.db, world.pesels[1], day=today_warsaw() + timedelta(days=2))
    before = snapshot(world.db)
    early = world.write("POST", f"/v1/appointments/{future}/no-show", "staff-x", {})
    assert (early.status_code, early.get_json()["error"]["code"]) == (409, "visit_not_due")
    assert snapshot(world.db) == before
    response = world.write("POST", f"/v1/appointments/{dose1}/no-show", "staff-x", {})
    assert response.status_code == 200, response.get_json()
    # The answer tells the staff what became of dose 2, and where the visit was.
    answer = response.get_json()["appointment"]
    assert answer["second_dose"]["outcome"] == "cancelled"
    assert answer["second_dose"]["appointment_id"] == dose2
    assert answer["second_dose"]["starts_at"] == world.appointment(dose2)["starts_at"].isoformat()
    assert answer["point"]["point_id"] == POINT_X and answer["point"]["name"]
    assert world.appointment(dose1)["status"] == "no_show"
    assert world.appointment(dose2)["status"] == "cancelled"
    assert not world.db.collection(SEATS).document(world.appointment(dose2)["seat_id"]).get().exists
    locks = {s.to_dict()["appointment_id"] for s in world.db.collection(ACTIVE_DOSES).stream()}
    assert dose1 not in locks and dose2 not in locks
    [no_show] = events(world.db, "appointment.no_show")
    assert no_show["appointment_id"] == dose1
    [cancelled] = events(world.db, "appointment.cancelled")
    assert cancelled["appointment_id"] == dose2 and cancelled["reason"] == "first_dose_missed"
    [entry] = audits(world.db, "visit.no_show")
    assert set(entry["appointment_ids"]) == {dose1, dose2}
    assert entry["_create_time"] == no_show["_create_time"]


def test_walk_in_with_normal_eligibility(world) -> None:
    path = f"/v1/points/{POINT_X}/walk-ins"
    pesel = world.pesels[0]
    body = {"pesel": pesel, "product": "jcovden", "lot_number": "JJ-001"}
    no_referral = add_patient(world.db, serial=40, status="cancelled")
    before = snapshot(world.db)
    refused = world.write("POST", path, "staff-x", body | {"pesel": no_referral})
    assert refused.get_json()["error"]["code"] == "referral_missing"
    assert world.write("POST", path, "staff-x", body | {"product": "spikevax"}).status_code == 400
    assert world.write("POST", path, "staff-y", body).status_code == 403
    assert snapshot(world.db) == before
    response = world.write("POST", path, "staff-x", body)
    assert response.status_code == 201, response.get_json()
    vaccination = response.get_json()["vaccination"]
    assert vaccination["leftover_dose"] is False and vaccination["referral_closed"] is True
    record = world.db.collection(VACCINATIONS).document(vaccination["vaccination_id"]).get()
    assert record.to_dict()["walk_in"] is True and record.to_dict()["leftover_dose"] is False
    assert _referral(world, pesel)["status"] == "used"
    [event] = events(world.db, "vaccination.completed")
    assert event["walk_in"] is True and event["leftover_dose"] is False
    [entry] = audits(world.db, "visit.walk_in")
    assert entry["_create_time"] == record.create_time == event["_create_time"]
    listed = world.call(
        "GET", f"/v1/points/{POINT_X}/visits", "staff-x", query={"date": today_warsaw().isoformat()}
    )
    assert [w["vaccination_id"] for w in listed.get_json()["walk_ins"]] == [
        vaccination["vaccination_id"]
    ]


def test_leftover_dose_walk_in_skips_eligibility_but_not_the_age_limit(world) -> None:
    path = f"/v1/points/{POINT_X}/walk-ins"
    # No referral at all, and a cohort that has not opened: only a leftover dose may go.
    stranger = add_patient(world.db, serial=41, status="cancelled")
    body = {"pesel": stranger, "product": "jcovden", "lot_number": "JJ-002"}
    assert world.write("POST", path, "staff-x", body).status_code == 403
    missing_reason = world.write("POST", path, "staff-x", body | {"leftover_dose": True})
    assert missing_reason.status_code == 400
    leftover = body | {"leftover_dose": True, "reason": "last dose of an open vial at 19:55"}
    response = world.write("POST", path, "staff-x", leftover)
    assert response.status_code == 201, response.get_json()
    vaccination_id = response.get_json()["vaccination"]["vaccination_id"]
    data = world.db.collection(VACCINATIONS).document(vaccination_id).get().to_dict()
    assert data["leftover_dose"] is True
    assert data["leftover_reason"] == "last dose of an open vial at 19:55"
    [event] = events(world.db, "vaccination.completed")
    assert event["leftover_dose"] is True
    [entry] = audits(world.db, "visit.walk_in_leftover")
    assert entry["details"]["leftover_dose"] is True
    # A patient with a booked visit for this very dose: complete that visit instead.
    slot = f"{POINT_X}_{world.day:%Y%m%d}_0900_jcovden"
    assert world.book(1, slot).status_code == 201
    busy = world.write("POST", path, "staff-x", leftover | {"pesel": world.pesels[1]})
    assert (busy.status_code, busy.get_json()["error"]["code"]) == (409, "already_booked")
    # The age limit still applies: a child of ten and an adults-only product.
    child = add_patient(world.db, born=date(today_warsaw().year - 10, 3, 3), sex="M", serial=42)
    before = snapshot(world.db)
    too_young = world.write("POST", path, "staff-x", leftover | {"pesel": child})
    assert (too_young.status_code, too_young.get_json()["error"]["code"]) == (
        403,
        "age_not_allowed",
    )
    assert snapshot(world.db) == before
