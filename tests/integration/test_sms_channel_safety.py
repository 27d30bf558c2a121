"""The SMS channel acts only for the person it has verified (issue 13, item 5; reliability 14).

The probes of the issue, against the emulators, the SMS simulator and every function behind
the dev gateway: a message from any number with another person's PESEL and postcode, then
TAK, must book nothing and tell nothing; the provider's webhook is public but lets nothing in
without its signature, even where no secret was configured. And the way it should work: the
patient's own number books; a code sent to the patient's number and returned binds a
conversation held from another phone, and the booking is then confirmed to the patient's own
number.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from datetime import date
from datetime import time as dtime
from typing import Any

import pytest
import requests

from common import clock, wiring
from common.adapters.firestore_store import APPOINTMENTS, SMS_DIALOGS, SMS_INBOUND
from common.domain.pesel import make_pesel
from tests.integration import sms_support
from tests.integration.sms_support import WEBHOOK_SECRET, SmsWorld, point_with_slots, wait_for
from tests.support.stack import add_patient

gateway_url = sms_support.gateway_url
tasks_emulator = sms_support.tasks_emulator
world = sms_support.world
push_world = sms_support.push_world

OWNER = "+48600400001"
STRANGER = "+48600499999"


def _body(text: str, phone: str) -> bytes:
    return json.dumps(
        {
            "message_id": f"IN-{uuid.uuid4().hex[:10]}",
            "from": phone,
            "text": text,
            "received_at": clock.now().isoformat(),
        }
    ).encode()


def _signed(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Sms-Signature": f"sha256={digest}"}


def _sms(world: SmsWorld, text: str, phone: str, path: str = "/_functions/receive_sms"):
    body = _body(text, phone)
    return requests.post(world.gateway_url + path, data=body, headers=_signed(body), timeout=60)


def _texts(world: SmsWorld, phone: str) -> list[str]:
    return [m["text"] for m in world.messages(phone)]


def _appointments(world: SmsWorld) -> list[dict[str, Any]]:
    return [s.to_dict() for s in world.db.collection(APPOINTMENTS).stream()]


def _count(world: SmsWorld, collection: str) -> int:
    return len(list(world.db.collection(collection).stream()))


# -- probe: SMS for a stranger --------------------------------------------------------------
def test_a_stranger_books_nothing_and_every_pesel_gets_the_same_answer(world: SmsWorld):
    point_with_slots(world.db, days=[2, 3], extra_times=(dtime(11, 0),))
    with_everything, _ = world.patient(OWNER, 1)  # referral and a phone
    without_phone, _ = world.patient(None, 2)  # referral, no phone
    without_referral = add_patient(world.db, serial=3, status="used")
    unknown = make_pesel(date(1961, 3, 3), "F", 4321)  # not a patient here
    answers = []
    for pesel in (with_everything, without_phone, without_referral, unknown):
        response = _sms(world, f"{pesel} 31-001", STRANGER)
        assert response.status_code == 200, response.text
        answers.append(_texts(world, STRANGER)[-1])
    # Nothing a stranger could read differs: not whether the person exists, has a referral,
    # a phone, or may book.
    assert len(set(answers)) == 1, answers
    assert "Proponowany termin" not in answers[0] and "skierowania" not in answers[0]
    # TAK from the stranger books nothing.
    assert _sms(world, "TAK", STRANGER).status_code == 200
    assert _appointments(world) == []
    # The patient with a number was told, on that number, that someone asked (with a code).
    (warning,) = _texts(world, OWNER)
    assert "kod" in warning and "999" in warning and STRANGER not in warning


def test_a_code_from_the_patients_own_phone_lets_the_booking_go_ahead_and_the_patient_is_told(
    push_world: SmsWorld,
):
    world = push_world
    point_with_slots(world.db, days=[2], product="jcovden")
    pesel, _ = world.patient(OWNER, 5)
    assert _sms(world, f"{pesel} 31-001 jcovden", STRANGER).json() == {"outcome": "code_sent"}
    code = re.search(r"kod (\d{6})", _texts(world, OWNER)[-1]).group(1)
    assert _sms(world, f"KOD {code}", STRANGER).json() == {"outcome": "offered"}
    assert _sms(world, "TAK", STRANGER).json() == {"outcome": "booked"}
    (appointment,) = _appointments(world)
    assert appointment["channel"] == "sms"
    # Booked from another phone: the confirmation goes to the patient's own number too.
    confirmation = wait_for(
        lambda: [t for t in _texts(world, OWNER) if t.startswith("e-Rejestracja: zarezerwowano")]
    )
    assert len(confirmation) == 1, _texts(world, OWNER)


def test_the_patients_own_number_books_and_is_not_confirmed_twice(push_world: SmsWorld):
    world = push_world
    point_with_slots(world.db, days=[2], product="jcovden")
    pesel, _ = world.patient(OWNER, 6)
    assert _sms(world, f"{pesel} 31-001 jcovden", OWNER).json() == {"outcome": "offered"}
    assert _sms(world, "TAK", OWNER).json() == {"outcome": "booked"}
    record_id = wait_for(
        lambda: next(
            (
                d.id
                for d in world.db.collection("notifications").stream()
                if d.to_dict().get("kind") == "appointment.booked"
            ),
            None,
        )
    )
    record = world.notification(record_id)
    assert (record["status"], record["reason"]) == ("skipped", "confirmed_in_sms_dialog")
    assert len([t for t in _texts(world, OWNER) if "arezerwowan" in t]) == 1


# -- probe: the webhook without a signature -----------------------------------------------------
@pytest.mark.parametrize("secret_configured", [True, False])
def test_the_webhook_lets_nothing_in_without_the_providers_signature(
    world: SmsWorld, monkeypatch: pytest.MonkeyPatch, secret_configured: bool
):
    if not secret_configured:  # a deployment that forgot the secret fails closed
        monkeypatch.delenv("SMS_WEBHOOK_SECRET", raising=False)
        wiring.reset()
    pesel, _ = world.patient(OWNER, 7)
    point_with_slots(world.db, days=[2])
    for path in ("/_functions/receive_sms", "/v1/sms/inbound"):
        body = _body(f"{pesel} 31-001", OWNER)
        unsigned = requests.post(
            world.gateway_url + path,
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        forged = requests.post(
            world.gateway_url + path, data=body, headers=_signed(body, "guessed"), timeout=30
        )
        assert (unsigned.status_code, forged.status_code) == (401, 401), path
    assert _count(world, SMS_INBOUND) == 0 and _count(world, SMS_DIALOGS) == 0
    assert world.messages() == []
    if secret_configured:
        # The public route, signed: the provider's call goes through (no ID token needed).
        assert _sms(world, f"{pesel} 31-001", OWNER, "/v1/sms/inbound").status_code == 200


def test_an_unsigned_provider_is_refused_and_its_deliveries_fail(world: SmsWorld):
    """The simulator as a provider that does not sign: every delivery is refused (401)."""
    pesel, _ = world.patient(OWNER, 8)
    state = world.sms.app.extensions["sms"]
    state.config = state.config.model_copy(update={"webhook_secret": None, "max_attempts": 2})
    auth = {"Authorization": f"Bearer {sms_support.DEFAULT_TOKEN}"}
    sent = requests.post(
        f"{world.sms.base_url}/sms/v1/inbound",
        json={"from": OWNER, "text": f"{pesel} 31-001"},
        headers=auth,
        timeout=10,
    ).json()
    record_url = f"{world.sms.base_url}/sms/v1/inbound/{sent['message_id']}"
    record = wait_for(
        lambda: (
            (r := requests.get(record_url, headers=auth, timeout=5).json())["status"] == "failed"
            and r
        )
    )
    assert record and {a["status"] for a in record["attempts"]} == {401}
    assert _count(world, SMS_INBOUND) == 0 and world.messages() == []
