"""Contact data with consent (issue 13, item 4) and no clear PESEL kept (item 8).

Where a patient's phone comes from in production, against the emulators and simulators: the
patient's P1/IKP profile through our P1 client (mutual TLS), fetched the first time a
confirmation needs it; the patient's own number given through the API and proved by a code;
an agent setting a caller's number, audited. And after all of it, no document anywhere holds
a PESEL in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.cloud import firestore

from common import clock, wiring
from common.adapters.firestore_store import AUDIT_LOG, PATIENTS
from common.services.booking import Actor, BookAppointment
from common.services.contacts import PHONE_CODES
from emulator.certs import Pki, generate_pki
from emulator.faults import RunningServer
from emulator.p1 import start_p1
from tests.integration import sms_support
from tests.integration.sms_support import SmsWorld, point_with_slots, wait_for
from tests.support.stack import Api

gateway_url = sms_support.gateway_url
tasks_emulator = sms_support.tasks_emulator
world = sms_support.world
push_world = sms_support.push_world

PROFILE_PHONE = "+48600500001"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return generate_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def p1(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    """The P1 simulator over mutual TLS, and the functions configured to reach it."""
    with start_p1(pki=pki) as server:
        monkeypatch.setenv("P1_BASE_URL", server.base_url)
        monkeypatch.delenv("P1_TOKEN", raising=False)
        for name, value in pki.client_env().items():
            monkeypatch.setenv(name, value)
        wiring.reset()
        yield server
        wiring.reset()


def _patient_doc(world: SmsWorld, key: str) -> dict[str, Any]:
    return world.db.collection(PATIENTS).document(key).get().to_dict() or {}


def test_a_confirmation_goes_to_the_number_of_the_patients_p1_profile(
    push_world: SmsWorld, p1: RunningServer
):
    world = push_world
    slots = point_with_slots(world.db, days=[3])
    pesel, key = world.patient(None, 1)  # no number on file: only P1 has it
    p1.app.extensions["p1"].issue([pesel], "primary", clock.today_warsaw(), 90)
    p1.app.extensions["p1"].profiles[pesel] = {"phone": PROFILE_PHONE, "phone_verified_at": None}
    wiring.booking_service().book(
        BookAppointment(
            pesel=pesel, slot_id=slots[0], channel="portal", actor=Actor("p-1", "patient")
        ),
        clock.now(),
    )
    (sms,) = wait_for(lambda: world.messages(PROFILE_PHONE))
    assert sms["text"].startswith("e-Rejestracja: zarezerwowano szczepienie")
    stored = _patient_doc(world, key)
    assert (stored["phone"], stored["phone_source"]) == (PROFILE_PHONE, "p1")
    assert stored["phone_verified_at"] is not None


def test_a_patient_gives_a_number_and_proves_it_with_the_code(world: SmsWorld):
    pesel, key = world.patient(None, 2)
    api = Api(world.project)
    token = api.token("patient-2", "patient", pesel=pesel)
    phone = "+48600500002"
    request_key = uuid.uuid4().hex
    asked = api.call("POST", "/v1/me/phone", token=token, body={"phone": phone}, key=request_key)
    assert asked.status_code == 202, asked.get_json()
    assert asked.get_json()["phone"] == "+48******002"
    (code_sms,) = world.messages(phone)
    code = re.search(r"(\d{6})", code_sms["text"]).group(1)
    # The same request again (a retry after a lost answer): the same answer, one SMS.
    again = api.call("POST", "/v1/me/phone", token=token, body={"phone": phone}, key=request_key)
    assert again.status_code == 202 and len(world.messages(phone)) == 1
    assert code not in str(world.db.collection("notifications").get()[0].to_dict())
    assert _patient_doc(world, key).get("phone") is None  # not before the code comes back
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused = api.call(
        "POST", "/v1/me/phone/verify", token=token, body={"code": wrong}, key=uuid.uuid4().hex
    )
    assert refused.status_code == 422
    assert refused.get_json()["error"]["details"]["attempts_left"] == 4
    verified = api.call(
        "POST", "/v1/me/phone/verify", token=token, body={"code": code}, key=uuid.uuid4().hex
    )
    assert verified.status_code == 200, verified.get_json()
    stored = _patient_doc(world, key)
    assert (stored["phone"], stored["phone_source"]) == (phone, "patient")
    assert world.db.collection(PHONE_CODES).document(key).get().exists is False
    late = api.call(
        "POST", "/v1/me/phone/verify", token=token, body={"code": code}, key=uuid.uuid4().hex
    )
    assert late.status_code == 409  # used up


def test_the_hotline_sets_a_callers_number_audited_with_its_reason(world: SmsWorld):
    pesel, key = world.patient(None, 3)
    api = Api(world.project)
    agent = api.token("agent-1", "agent")
    body = {"pesel": pesel, "phone": "600 500 003", "reason": "caller gave a new mobile"}
    answer = api.call("POST", "/v1/patients/phone", token=agent, body=body, key=uuid.uuid4().hex)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["phone"] == "+48******003"
    stored = _patient_doc(world, key)
    assert (stored["phone"], stored["phone_source"]) == ("+48600500003", "hotline")
    (entry,) = [d.to_dict() for d in world.db.collection(AUDIT_LOG).stream()]
    assert entry["action"] == "patient.phone_set" and entry["patient_keys"] == [key]
    assert entry["reason"] == "caller gave a new mobile" and entry["actor_uid"] == "agent-1"
    assert "500003" not in str(entry) and pesel not in str(entry)
    no_reason = {"pesel": pesel, "phone": "600500003"}
    refused = api.call(
        "POST", "/v1/patients/phone", token=agent, body=no_reason, key=uuid.uuid4().hex
    )
    assert refused.status_code == 400


def _every_document(db: firestore.Client) -> Iterator[tuple[str, dict[str, Any]]]:
    for collection in db.collections():
        for snapshot in collection.stream():
            yield f"{collection.id}/{snapshot.id}", snapshot.to_dict() or {}


def test_no_document_anywhere_keeps_a_pesel_in_clear(push_world: SmsWorld, p1: RunningServer):
    """A patient synced from P1, texting to book (a stranger too), a callback left for them,
    a confirmation and a code: the PESEL is in no field and no id of any collection."""
    world = push_world
    point_with_slots(world.db, days=[2, 3], product="jcovden")
    pesel, key = world.patient(None, 4)
    state = p1.app.extensions["p1"]
    state.issue([pesel], "primary", clock.today_warsaw(), 90)
    state.profiles[pesel] = {"phone": "+48600500004", "phone_verified_at": None}
    synced = Api(world.project).client().post("/_functions/sync_p1_referrals", json={})
    assert synced.status_code == 200, synced.get_json()
    api = Api(world.project)
    agent = api.token("agent-1", "agent")
    left = api.call(
        "POST",
        "/v1/callbacks",
        token=agent,
        body={"pesel": pesel, "phone": "+48600500004", "note": "no slot fitted"},
        key=uuid.uuid4().hex,
    )
    assert left.status_code == 201, left.get_json()
    for phone, text in (
        ("+48600599999", f"{pesel} 31-001 jcovden"),  # a stranger: a code to the patient
        ("+48600500004", f"{pesel} 31-001 jcovden"),  # the patient: an offer
        ("+48600500004", "TAK"),
    ):
        response = _sms(world, phone, text)
        assert response.status_code == 200, response.text
    wait_for(lambda: len(world.messages("+48600500004")) >= 3)
    found = [
        where for where, data in _every_document(world.db) if pesel in where or pesel in repr(data)
    ]
    assert found == []
    assert wait_for(lambda: _patient_doc(world, key).get("pesel_enc"))


def _sms(world: SmsWorld, phone: str, text: str) -> requests.Response:
    body = json.dumps(
        {
            "message_id": uuid.uuid4().hex,
            "from": phone,
            "text": text,
            "received_at": clock.now().isoformat(),
        }
    ).encode()
    digest = hmac.new(sms_support.WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return requests.post(
        f"{world.gateway_url}/v1/sms/inbound",
        data=body,
        headers={"Content-Type": "application/json", "X-Sms-Signature": f"sha256={digest}"},
        timeout=60,
    )


def test_the_migration_rewrites_documents_of_the_older_layout(world: SmsWorld):
    """What was written before: a patient and a callback with a clear PESEL, rewritten by
    scripts/migrate_clear_pesels.py's function against Firestore itself."""
    from common.services.patients import migrate_clear_pesels, pesel_of

    pesel, key = world.patient(None, 9)
    world.db.collection(PATIENTS).document(key).set({"patient_key": key, "pesel": pesel})
    world.db.collection("callbacks").document("cb-old").set(
        {"callback_id": "cb-old", "status": "open", "pesel": pesel, "patient_key": key}
    )
    counts = migrate_clear_pesels(wiring.units(), wiring.vault(), clock.now())
    assert (counts["patients"], counts["callbacks"]) == (1, 1)
    assert [where for where, data in _every_document(world.db) if pesel in repr(data)] == []
    patient = _patient_doc(world, key)
    assert pesel_of(patient, key, wiring.vault(), clock.today_warsaw()).value == pesel
    assert migrate_clear_pesels(wiring.units(), wiring.vault(), clock.now())["patients"] == 0
