"""ContactService against the in-memory unit of work: where a patient's number comes from.

Stand-ins: P1's profiles (a dict, down on demand), the SMS gateway (one message per id).
Checked: a number on file wins; none → P1's, kept with its source; P1 without one → not asked
again for a day; P1 down → the error, nothing kept; not our patient → nothing kept; the
patient's own number proved by a code (derived, never stored), its limits and attempts; the
hotline's number, audited with the reason and never the number.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from common.adapters.firestore_store import AUDIT_LOG, NOTIFICATIONS, PATIENTS
from common.adapters.p1_client import P1Profile
from common.adapters.vault import FieldVault
from common.domain.errors import DependencyUnavailableError, ForbiddenError
from common.domain.pesel import make_pesel, parse_pesel, pesel_key
from common.services.booking import Actor
from common.services.contacts import (
    PHONE_CODES,
    ContactService,
    PhoneCodeExhaustedError,
    PhoneCodeMissingError,
    PhoneCodeRequest,
    PhoneCodeVerify,
    PhoneLimitError,
)
from common.services.notifications import SmsSender
from common.services.patients import new_patient_document
from common.services.phone_limits import PhoneLimits
from tests.support.fake_store import FakeUnitsOfWork

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
SECRET = b"unit-test-secret"
VAULT = FieldVault({"t": b"c" * 32}, "t")
PESEL = make_pesel(date(1960, 4, 4), "F", 44)
KEY = pesel_key(parse_pesel(PESEL, NOW.date()), SECRET)
P1_PHONE = "+48600700001"


class FakeP1:
    def __init__(self) -> None:
        self.profiles: dict[str, P1Profile] = {}
        self.asked = 0
        self.down = False

    def patient_profile(self, pesel: str) -> P1Profile | None:
        self.asked += 1
        if self.down:
            raise DependencyUnavailableError("P1 is unavailable (timeout)")
        return self.profiles.get(pesel)


class FakeGateway:
    def __init__(self) -> None:
        self.messages: dict[str, dict[str, str]] = {}

    def send(self, to: str, text: str, client_message_id: str) -> str:
        self.messages.setdefault(client_message_id, {"to": to, "text": text})
        return f"SMS-{list(self.messages).index(client_message_id) + 1}"

    def texts(self, to: str) -> list[str]:
        return [m["text"] for m in self.messages.values() if m["to"] == to]


class World:
    def __init__(self) -> None:
        self.units = FakeUnitsOfWork(now=lambda: NOW)
        self.store = self.units.store
        self.p1 = FakeP1()
        self.gateway = FakeGateway()
        self.service = ContactService(
            self.units,
            VAULT,
            SECRET,
            PhoneLimits(SECRET),
            sender=SmsSender(self.units, self.gateway, VAULT),  # type: ignore[arg-type]
            profiles=lambda: self.p1,
        )
        pesel = parse_pesel(PESEL, NOW.date())
        self.store.put(PATIENTS, KEY, new_patient_document(pesel, KEY, VAULT))

    def patient(self) -> dict[str, Any]:
        return self.store.data(PATIENTS, KEY) or {}

    def code_sent_to(self, phone: str) -> str:
        return re.search(r"(\d{6})", self.gateway.texts(phone)[-1]).group(1)


@pytest.fixture
def world() -> World:
    return World()


# -- the number on file, or P1's ----------------------------------------------------------------
def test_a_number_on_file_is_used_and_p1_is_not_asked(world: World):
    world.store.put(PATIENTS, KEY, {**world.patient(), "phone": "+48 600 700 009"})
    assert world.service.phone_of(KEY, NOW) == "+48600700009"
    assert world.p1.asked == 0


def test_none_on_file_the_p1_profile_gives_it_and_it_is_kept_with_its_source(world: World):
    world.p1.profiles[PESEL] = P1Profile(phone=P1_PHONE, phone_verified_at=NOW - timedelta(1))
    assert world.service.phone_of(KEY, NOW) == P1_PHONE
    stored = world.patient()
    assert (stored["phone"], stored["phone_source"]) == (P1_PHONE, "p1")
    assert stored["phone_verified_at"] == NOW - timedelta(1)
    assert world.service.phone_of(KEY, NOW) == P1_PHONE and world.p1.asked == 1


def test_p1_without_a_number_is_not_asked_again_for_a_day(world: World):
    world.p1.profiles[PESEL] = P1Profile(phone=None)
    assert world.service.phone_of(KEY, NOW) is None
    assert world.service.phone_of(KEY, NOW + timedelta(hours=23)) is None
    assert world.p1.asked == 1
    world.p1.profiles[PESEL] = P1Profile(phone=P1_PHONE)
    assert world.service.phone_of(KEY, NOW + timedelta(hours=25)) == P1_PHONE


def test_p1_down_raises_and_keeps_nothing(world: World):
    world.p1.down = True
    before = world.patient()
    with pytest.raises(DependencyUnavailableError):
        world.service.phone_of(KEY, NOW)
    assert world.patient() == before


def test_someone_who_is_not_our_patient_leaves_nothing_behind(world: World):
    stranger = make_pesel(date(1970, 1, 1), "M", 3)
    parsed = parse_pesel(stranger, NOW.date())
    key = pesel_key(parsed, SECRET)
    world.p1.profiles[stranger] = P1Profile(phone=P1_PHONE)
    assert world.service.phone_of(key, NOW, pesel=parsed) == P1_PHONE
    assert world.store.data(PATIENTS, key) is None


def test_a_number_set_meanwhile_by_the_patient_is_not_overwritten_by_p1s(world: World):
    world.p1.profiles[PESEL] = P1Profile(phone=P1_PHONE)
    real = world.p1.patient_profile

    def meanwhile(pesel: str) -> P1Profile | None:
        world.store.put(
            PATIENTS, KEY, {**world.patient(), "phone": "+48600700002", "phone_source": "patient"}
        )
        return real(pesel)

    world.p1.patient_profile = meanwhile  # type: ignore[method-assign]
    assert world.service.phone_of(KEY, NOW) == "+48600700002"
    assert world.patient()["phone_source"] == "patient"


# -- the patient's own number, proved by a code ---------------------------------------------------
def test_the_patients_number_is_kept_only_once_the_code_comes_back(world: World):
    phone = "+48600700003"
    asked = world.service.request_code(KEY, PhoneCodeRequest(phone="600 700 003"), NOW)
    assert asked.status == 202 and asked.body["phone"] == "+48******003"
    assert world.service.deliver_code(KEY, NOW) == "sent"
    assert world.service.deliver_code(KEY, NOW) == "duplicate"  # a replay: one SMS
    code = world.code_sent_to(phone)
    assert len(world.gateway.texts(phone)) == 1
    # The code is stored nowhere: not with the request, not with the SMS's record.
    assert code not in str(world.store.collection(PHONE_CODES))
    assert code not in str(world.store.collection(NOTIFICATIONS))
    assert phone not in str(world.store.collection(PHONE_CODES))  # the number: encrypted
    assert world.patient().get("phone") is None
    verified = world.service.verify_code(KEY, PhoneCodeVerify(code=code), NOW)
    assert verified.status == 200 and verified.body["phone_source"] == "patient"
    assert (world.patient()["phone"], world.patient()["phone_source"]) == (phone, "patient")
    assert world.store.data(PHONE_CODES, KEY) is None
    with pytest.raises(PhoneCodeMissingError):
        world.service.verify_code(KEY, PhoneCodeVerify(code=code), NOW)


def test_wrong_codes_use_up_the_attempts_and_an_old_code_is_gone(world: World):
    world.service.request_code(KEY, PhoneCodeRequest(phone="+48600700004"), NOW)
    world.service.deliver_code(KEY, NOW)
    code = world.code_sent_to("+48600700004")
    wrong = PhoneCodeVerify(code=f"{(int(code) + 1) % 1_000_000:06d}")
    answers = [world.service.verify_code(KEY, wrong, NOW) for _ in range(5)]
    assert [a.status for a in answers] == [422] * 5
    assert [a.body["error"]["details"]["attempts_left"] for a in answers] == [4, 3, 2, 1, 0]
    with pytest.raises(PhoneCodeExhaustedError):
        world.service.verify_code(KEY, PhoneCodeVerify(code=code), NOW)
    world.service.request_code(KEY, PhoneCodeRequest(phone="+48600700004"), NOW)
    with pytest.raises(PhoneCodeMissingError):  # expired: ten minutes
        world.service.verify_code(KEY, PhoneCodeVerify(code=code), NOW + timedelta(minutes=11))


def test_codes_are_limited_per_patient_and_per_number(world: World):
    for n in range(5):
        world.service.request_code(KEY, PhoneCodeRequest(phone=f"+4860070010{n}"), NOW)
    with pytest.raises(PhoneLimitError):
        world.service.request_code(KEY, PhoneCodeRequest(phone="+48600700109"), NOW)
    # One number gets at most three codes an hour, whoever asks.
    target = PhoneCodeRequest(phone="+48600700200")
    others = [pesel_key(f"{n:011d}", SECRET) for n in range(4)]
    for other in others[:3]:
        world.service.request_code(other, target, NOW)
    with pytest.raises(PhoneLimitError):
        world.service.request_code(others[3], target, NOW)
    later = NOW + timedelta(hours=1)
    assert world.service.request_code(others[3], target, later).status == 202


# -- the hotline ----------------------------------------------------------------------------------
def test_an_agent_sets_a_callers_number_with_its_audit_entry_in_the_same_commit(world: World):
    agent = Actor(uid="agent-7", role="agent", reason="caller's new mobile")
    commits = world.store.commits
    answer = world.service.set_by_agent(agent, KEY, "+48600700300", NOW)
    assert answer.status == 200 and answer.body["phone"] == "+48******300"
    assert world.store.commits == commits + 1
    stored = world.patient()
    assert (stored["phone"], stored["phone_source"], stored["phone_set_by"]) == (
        "+48600700300",
        "hotline",
        "agent-7",
    )
    (entry,) = world.store.collection(AUDIT_LOG).values()
    assert entry["action"] == "patient.phone_set" and entry["reason"] == "caller's new mobile"
    assert entry["patient_keys"] == [KEY] and "700300" not in str(entry)
    with pytest.raises(ForbiddenError):
        world.service.set_by_agent(Actor(uid="p", role="patient"), KEY, "+48600700301", NOW)


# -- documents of the older layout -----------------------------------------------------------------
def test_the_migration_leaves_no_clear_pesel_and_keeps_what_is_needed():
    from common.adapters.firestore_store import CALLBACKS, SMS_DIALOGS
    from common.services.patients import facts_of, migrate_clear_pesels, pesel_of

    units = FakeUnitsOfWork(now=lambda: NOW)
    store = units.store
    store.put(PATIENTS, KEY, {"patient_key": KEY, "pesel": PESEL, "phone": "+48600700500"})
    store.put(CALLBACKS, "cb-1", {"callback_id": "cb-1", "pesel": PESEL, "patient_key": KEY})
    store.put(SMS_DIALOGS, "dlg-1", {"state": "offered", "pesel": PESEL, "patient_key": KEY})
    store.put(PATIENTS, "broken", {"patient_key": "broken", "pesel": "12345678901"})
    assert migrate_clear_pesels(units, VAULT, NOW) == {
        "patients": 1,
        "callbacks": 1,
        "sms_dialogs": 1,
        "unreadable": 1,
    }
    assert PESEL not in str(store.documents) and "12345678901" not in str(store.documents)
    patient = store.data(PATIENTS, KEY)
    assert pesel_of(patient, KEY, VAULT, NOW.date()).value == PESEL
    assert facts_of(patient, NOW.date()).masked == PESEL[:6] + "*****"
    assert patient["phone"] == "+48600700500"  # the rest is untouched
    assert store.data(CALLBACKS, "cb-1")["masked_pesel"] == PESEL[:6] + "*****"
    dialog = store.data(SMS_DIALOGS, "dlg-1")
    assert VAULT.decrypt(dialog["pesel_enc"], "sms-dialog-pesel|dlg-1") == PESEL
    assert migrate_clear_pesels(units, VAULT, NOW) == dict.fromkeys(
        ("patients", "callbacks", "sms_dialogs", "unreadable"), 0
    )
