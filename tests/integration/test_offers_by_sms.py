"""Offers by SMS, answered TAK or NIE from the patient's verified number (issue 15): a re-plan's
(item 2) and the waitlist's (item 3), through the SMS gateway simulator and the receive_sms
webhook, behind the gateway."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest

from common import clock, wiring
from common.adapters.firestore_store import APPOINTMENTS, SEATS
from common.domain.impact import AffectedCase, AffectedVisit
from common.domain.replan import offer_id
from common.services.booking import Actor, BookAppointment, CancelAppointment
from common.services.replan import OFFERS
from tests.integration import sms_support
from tests.integration.sms_support import (
    WEBHOOK_SECRET,
    SmsWorld,
    point_with_slots,
    wait_for,
    webhook_sms,
)

gateway_url = sms_support.gateway_url
tasks_emulator = sms_support.tasks_emulator
world = sms_support.world

PHONE = "+48600300001"
STRANGER = "+48600300002"


@pytest.fixture
def sms(world: SmsWorld, monkeypatch: pytest.MonkeyPatch) -> SmsWorld:
    monkeypatch.setenv("SMS_WEBHOOK_SECRET", WEBHOOK_SECRET)
    wiring.reset()
    return world


def _offered(world: SmsWorld) -> tuple[str, str, list[str]]:
    """A booked visit at 10:00 in three days, unseated (a capacity cut's case), offered."""
    slots = point_with_slots(world.db, days=[3, 4, 5], capacity=2)
    pesel, key = world.patient(PHONE, serial=61)
    booked = wiring.booking_service().book(
        BookAppointment(pesel=pesel, slot_id=slots[0], channel="portal",
                        actor=Actor(uid="p", role="patient")),
        clock.now(),
    )  # fmt: skip
    visit = booked.body["appointments"][0]
    stored = world.db.collection(APPOINTMENTS).document(visit["appointment_id"]).get().to_dict()
    case = AffectedCase(
        series_id=stored["series_id"],
        patient_key=key,
        product=stored["product"],
        visits=(
            AffectedVisit(
                appointment_id=stored["appointment_id"], dose=1, dose_kind="primary",
                day=date.fromisoformat(stored["day"]), point_id=stored["point_id"],
                slot_id=stored["slot_id"], county=None, voivodeship=None, reasons=("capacity",),
            ),
        ),
    )  # fmt: skip
    job = {"job_id": uuid.uuid4().hex, "max_offers": 3, "offer_hours": 24}
    assert wiring.replan_service().open_case(job, case, {}, clock.now()) == "offered"
    return offer_id(job["job_id"], case.series_id), stored["appointment_id"], slots


def _offer(world: SmsWorld, the_id: str) -> dict[str, Any]:
    return world.db.collection(OFFERS).document(the_id).get().to_dict()


def _texts(world: SmsWorld, phone: str = PHONE) -> list[str]:
    return [m["text"] for m in world.messages(phone)]


def test_nie_then_tak_by_sms_moves_the_visit_once(sms: SmsWorld):
    the_id, appointment_id, slots = _offered(sms)
    assert wait_for(lambda: len(_texts(sms)) == 1)
    assert "TAK" in _texts(sms)[0] and "NIE" in _texts(sms)[0]
    first = _offer(sms, the_id)
    assert first["channel"] == "sms" and PHONE not in str(first)  # the number is keyed
    assert first["seats"][0]["slot_id"] == slots[1]  # the nearest day after the one cut

    # NIE: the next alternative is held and sent.
    assert webhook_sms(sms, "nie", PHONE).status_code == 200
    second = _offer(sms, the_id)
    assert second["status"] == "offered" and second["attempt"] == 2
    assert second["seats"][0]["slot_id"] == slots[2]
    assert not sms.db.collection(SEATS).document(first["seats"][0]["seat_id"]).get().exists
    assert wait_for(lambda: len(_texts(sms)) == 3)  # the reply to NIE and the next offer

    # A stranger's TAK moves nothing (the offer went to the patient's number only).
    webhook_sms(sms, "TAK", STRANGER)
    assert _offer(sms, the_id)["status"] == "offered"

    # TAK, delivered twice: moved once.
    message_id = f"IN-{uuid.uuid4().hex[:10]}"
    for _ in range(2):
        assert webhook_sms(sms, "TAK", PHONE, message_id=message_id).status_code == 200
    assert _offer(sms, the_id)["status"] == "accepted"
    moved = sms.db.collection(APPOINTMENTS).document(appointment_id).get().to_dict()
    assert moved["slot_id"] == slots[2] and moved["status"] == "booked"
    assert wait_for(lambda: len(_texts(sms)) == 4)
    assert _texts(sms)[-1].startswith("e-Rejestracja: przeniesiono")
    # A late NIE changes nothing: the offer is no longer waiting for an answer.
    webhook_sms(sms, "NIE", PHONE)
    assert _offer(sms, the_id)["status"] == "accepted"
    assert sms.db.collection(APPOINTMENTS).document(appointment_id).get().to_dict() == moved


def test_by_sms_on_the_waitlist_then_a_freed_seat_booked_with_tak(sms: SmsWorld):
    """No free slot: CZEKAM puts the texting patient on the waitlist; a seat is freed (another
    patient cancels), the sweep holds it for them and texts; TAK books it."""
    from common.services.availability import AvailabilityFolder
    from common.services.waitlist import WAITLIST, entry_id

    slots = point_with_slots(sms.db, days=[3], capacity=1)
    other, _ = sms.patient(None, serial=72)
    taken = wiring.booking_service().book(
        BookAppointment(pesel=other, slot_id=slots[0], channel="portal",
                        actor=Actor(uid="o", role="patient")),
        clock.now(),
    ).body["appointments"][0]  # fmt: skip
    AvailabilityFolder(sms.db).fold_all()
    pesel, key = sms.patient(PHONE, serial=71)
    assert webhook_sms(sms, f"{pesel} 31-001", PHONE).status_code == 200
    assert wait_for(lambda: len(_texts(sms)) == 1)
    assert "CZEKAM" in _texts(sms)[0]
    assert webhook_sms(sms, "czekam", PHONE).status_code == 200
    assert wait_for(lambda: len(_texts(sms)) == 2)
    entry = sms.db.collection(WAITLIST).document(entry_id(key)).get().to_dict()
    assert entry["status"] == "waiting" and entry["channel"] == "sms"
    assert pesel not in str(entry) and PHONE not in str(entry)

    wiring.booking_service().cancel(
        CancelAppointment(appointment_id=taken["appointment_id"], channel="portal",
                          actor=Actor(uid="admin", role="admin")),
        clock.now(),
    )  # fmt: skip
    AvailabilityFolder(sms.db).fold_all()
    waiting = wiring.waitlist_service()
    # The sweep runs every minute; its search view catches up with the fold within a second.
    assert wait_for(lambda: waiting.match(clock.now())["offered"] == 1, timeout_s=10)
    entry = sms.db.collection(WAITLIST).document(entry_id(key)).get().to_dict()
    assert entry["status"] == "offered" and entry["told"] == "sms"
    assert wait_for(lambda: len(_texts(sms)) == 3)
    assert "zwolnil sie termin" in _texts(sms)[-1]
    assert webhook_sms(sms, "TAK", PHONE).status_code == 200
    (visit,) = [
        d.to_dict()
        for d in sms.db.collection(APPOINTMENTS).stream()
        if d.to_dict()["patient_key"] == key
    ]
    assert visit["slot_id"] == slots[0] and visit["status"] == "booked"
    assert wait_for(lambda: len(_texts(sms)) == 4)
    assert _texts(sms)[-1].startswith("e-Rejestracja: zarezerwowano")
    waiting.match(clock.now())
    assert sms.db.collection(WAITLIST).document(entry_id(key)).get().to_dict()["status"] == "booked"
