"""Booking by SMS through the webhook function (docs/reliability.md items 5 and 10 for the
dialog): offer, NIE, TAK once however often it arrives, expiry, refusals, privacy."""

from __future__ import annotations

import io
import logging
import threading
import uuid
from datetime import time as dtime
from datetime import timedelta
from typing import Any

import pytest
import requests

from common import clock, structured_log, wiring
from common.adapters.firestore_store import APPOINTMENTS
from common.adapters.sms_client import SmsInbound
from common.services.sms_dialog import parse_command, postcode_of
from tests.integration import sms_support
from tests.integration.sms_support import (
    WEBHOOK_SECRET,
    SmsWorld,
    point_with_slots,
    wait_for,
    webhook_sms,
)

# The shared fixtures of the SMS tests.
gateway_url = sms_support.gateway_url
tasks_emulator = sms_support.tasks_emulator
world = sms_support.world

PHONE = "+48600200001"


@pytest.fixture
def dialog(world: SmsWorld, monkeypatch: pytest.MonkeyPatch) -> SmsWorld:
    monkeypatch.setenv("SMS_WEBHOOK_SECRET", WEBHOOK_SECRET)
    wiring.reset()
    return world


def _sms(
    world: SmsWorld, text: str, phone: str = PHONE, message_id: str | None = None, sign=True
) -> requests.Response:
    return webhook_sms(world, text, phone, message_id, sign)


def _replies(world: SmsWorld, phone: str = PHONE) -> list[str]:
    return [m["text"] for m in world.messages(phone)]


def _appointments(world: SmsWorld) -> list[dict[str, Any]]:
    return [s.to_dict() for s in world.db.collection(APPOINTMENTS).stream()]


def _patient_with_slots(world: SmsWorld, serial: int = 1, **kwargs: Any) -> str:
    """A patient who texts from their own verified number (PHONE), and free slots."""
    point_with_slots(world.db, days=[2, 3], extra_times=(dtime(11, 0),))
    pesel, _ = world.patient(PHONE, serial, **kwargs)
    return pesel


# -- pure parsing ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "kind", "postcode"),
    [
        ("44051401359 31-001", "start", "31-001"),
        (" 440514 01359   31 001 ", "start", "31-001"),
        ("pesel 44051401359 kod 31001", "start", "31-001"),
        ("44051401359 31-001 jcovden", "start", "31-001"),
        ("tak", "yes", None),
        ("Tak.", "yes", None),
        ("NIE", "no", None),
        ("stop", "stop", None),
        ("dzien dobry", "unknown", None),
    ],
)
def test_commands_tolerate_spaces_dashes_and_case(text: str, kind: str, postcode: str | None):
    command = parse_command(text)
    assert command.kind == kind
    if postcode:
        assert postcode_of(command.digits) == postcode


# -- the dialog ------------------------------------------------------------------------------
def test_offer_then_nie_then_tak_books_once_even_when_tak_arrives_twice(dialog: SmsWorld):
    pesel = _patient_with_slots(dialog)
    assert _sms(dialog, f"{pesel} 31-001 jcovden").status_code == 200
    first_offer = _replies(dialog)[-1]
    assert first_offer.startswith("Proponowany termin:") and "godz. 10:00" in first_offer
    assert _sms(dialog, "NIE").status_code == 200
    second_offer = _replies(dialog)[-1]
    assert second_offer.startswith("Proponowany termin:") and second_offer != first_offer
    tak = f"IN-{uuid.uuid4().hex[:10]}"
    assert _sms(dialog, "TAK", message_id=tak).json() == {"outcome": "booked"}
    assert _sms(dialog, "TAK", message_id=tak).json() == {"outcome": "duplicate"}
    assert _sms(dialog, "tak").json() == {"outcome": "already_booked"}
    # A NIE sent before the TAK but delivered after it skips nothing and books nothing.
    assert _sms(dialog, "NIE").json() == {"outcome": "already_booked"}
    (appointment,) = _appointments(dialog)
    assert appointment["channel"] == "sms" and appointment["status"] == "booked"
    assert appointment["starts_at"].astimezone(sms_support.WARSAW).hour == 11
    replies = _replies(dialog)
    assert len(replies) == 5  # offer, offer, booked, already booked x2: no reply twice
    assert replies[2].startswith("Zarezerwowano: szczepienie Jcovden (dawka 1)")
    assert all(pesel not in r for r in replies)


def test_concurrent_tak_and_duplicates_book_exactly_once(dialog: SmsWorld):
    pesel = _patient_with_slots(dialog, serial=2)
    assert _sms(dialog, f"{pesel} 31-001 jcovden").status_code == 200
    ids = [f"IN-{uuid.uuid4().hex[:10]}" for _ in range(3)]
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda m=m: answers.append(_sms(dialog, "TAK", message_id=m)))
        for m in ids + ids
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status_code for r in answers} <= {200, 409}, [r.text for r in answers]
    # Busy answers (409) are what the gateway retries later; deliver those again.
    for message_id in ids:
        response = _sms(dialog, "TAK", message_id=message_id)
        assert response.status_code == 200, response.text
    assert len(_appointments(dialog)) == 1
    outcomes = [r.json()["outcome"] for r in answers if r.status_code == 200]
    assert outcomes.count("booked") <= 1
    assert len([r for r in _replies(dialog) if r.startswith("Zarezerwowano")]) == 1


def test_expired_offer_asks_to_start_again(dialog: SmsWorld):
    pesel = _patient_with_slots(dialog, serial=3)
    service = wiring.sms_dialog_service()
    now = clock.now()

    def inbound(text: str) -> SmsInbound:
        return SmsInbound.model_validate(
            {"message_id": uuid.uuid4().hex, "from": PHONE, "text": text, "received_at": now}
        )

    assert service.receive(inbound(f"{pesel} 31-001 jcovden"), now) == "offered"
    later = now + timedelta(minutes=wiring.settings().sms_offer_ttl_minutes, seconds=1)
    assert service.receive(inbound("TAK"), later) == "expired"
    assert "wygasla" in _replies(dialog)[-1]
    assert _appointments(dialog) == []
    assert service.receive(inbound("TAK"), later) == "no_offer"


def test_invalid_pesel_is_refused_without_being_echoed(dialog: SmsWorld):
    assert _sms(dialog, "44051401358 31-001").json() == {"outcome": "invalid_pesel"}
    (reply,) = _replies(dialog)
    assert "PESEL jest nieprawidlowy" in reply and "44051401358" not in reply


def test_patient_without_referral_gets_a_clear_sms(dialog: SmsWorld):
    point_with_slots(dialog.db, days=[2])
    pesel, _ = dialog.patient(PHONE, 4, status="used")  # texting from their own number
    assert _sms(dialog, f"{pesel} 31-001").json() == {"outcome": "no_referral"}
    assert "Nie znaleziono aktywnego e-skierowania" in _replies(dialog)[-1]


def test_unsigned_or_forged_webhook_calls_are_refused(dialog: SmsWorld):
    assert _sms(dialog, "TAK", sign=False).status_code == 401
    body = b'{"message_id": "x", "from": "+48600200001", "text": "TAK", "received_at": "x"}'
    forged = requests.post(
        f"{dialog.gateway_url}/_functions/receive_sms",
        data=body,
        headers={"Content-Type": "application/json", "X-Sms-Signature": "sha256=00"},
        timeout=10,
    )
    assert forged.status_code == 401
    assert dialog.messages() == []


def test_through_the_gateway_simulator_with_duplicated_delivery(world: SmsWorld):
    """The whole path: a phone texts the short number, the gateway delivers (twice)."""
    pesel = _patient_with_slots(world, serial=5)
    simulator = world.sms.base_url + "/sms/v1/inbound"
    auth = {"Authorization": f"Bearer {sms_support.DEFAULT_TOKEN}"}
    sent = requests.post(
        simulator,
        json={"from": PHONE, "text": f"{pesel} 31-001 jcovden", "duplicate": True},
        headers=auth,
        timeout=10,
    ).json()
    assert sent["copies"] == 2
    assert wait_for(lambda: _replies(world))
    wait_for(
        lambda: (
            requests.get(f"{simulator}/{sent['message_id']}", headers=auth, timeout=5).json()[
                "status"
            ]
            == "delivered"
        )
    )
    record = requests.get(f"{simulator}/{sent['message_id']}", headers=auth, timeout=5).json()
    assert record["delivered"] == 2  # delivered twice, answered once
    requests.post(simulator, json={"from": PHONE, "text": "TAK"}, headers=auth, timeout=10)
    assert wait_for(lambda: len(_replies(world)) == 2)
    assert len(_appointments(world)) == 1
    assert _replies(world)[1].startswith("Zarezerwowano")


def test_no_pesel_or_phone_in_logs(dialog: SmsWorld, caplog: pytest.LogCaptureFixture):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structured_log._JsonFormatter())
    app_logger = logging.getLogger("erejestracja")
    app_logger.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        pesel = _patient_with_slots(dialog, serial=6)
        _sms(dialog, f"{pesel} 31-001 jcovden")
        _sms(dialog, "44051401358 31-001")
        _sms(dialog, "NIE")
        _sms(dialog, "TAK")
    finally:
        app_logger.removeHandler(handler)
    logged = stream.getvalue() + caplog.text
    assert "sms dialog step" in logged
    for secret in (pesel, "44051401358", PHONE, PHONE.lstrip("+")):
        assert secret not in logged


# -- a cohort opening: the SMS channel joins the same waiting room (issue 12) ---------------
def test_a_text_joins_the_openings_waiting_room_and_books_on_its_turn(dialog: SmsWorld):
    from datetime import date

    from common.domain.pesel import parse_pesel, pesel_key
    from common.services.booking import Actor
    from common.services.waiting_room import OpeningRequest

    pesel = _patient_with_slots(dialog, serial=5, born=date(1975, 6, 1))
    service, room = wiring.sms_dialog_service(), wiring.waiting_room()
    moment = clock.now().replace(microsecond=0) + timedelta(hours=2)
    admin = Actor(uid="admin-1", role="admin", reason="opening of the 1970s")
    opening = OpeningRequest(
        born_from=1970, born_to=1979, opens_at=moment, window_minutes=30, admit_per_minute=60
    )
    room.publish(admin, "op-sms", opening, moment - timedelta(hours=2))

    def text(words: str, at: timedelta) -> str:
        inbound = SmsInbound.model_validate(
            {"message_id": uuid.uuid4().hex, "from": PHONE, "text": words,
             "received_at": moment + at}
        )  # fmt: skip
        return service.receive(inbound, moment + at)

    # Announced: told when the room and the booking open; nothing booked, no place taken.
    assert text(f"{pesel} 31-001 jcovden", -timedelta(hours=1)) == "cohort_not_open"
    assert "Poczekalnia otwiera sie" in _replies(dialog)[-1]
    # In the room before the moment: a place, no position yet (the order is drawn then).
    assert text(f"{pesel} 31-001 jcovden", -timedelta(minutes=10)) == "queued"
    assert "Jestes w poczekalni" in _replies(dialog)[-1]
    # The portal (the same person signing in) gets the same place, not a second one.
    key = pesel_key(parse_pesel(pesel, clock.today_warsaw()), wiring.settings().pesel_hash_key)
    portal = room.join("op-sms", key, date(1975, 6, 1), "portal", moment - timedelta(minutes=5))
    assert portal["ticket"] is not None
    places = [s.to_dict() for s in dialog.db.collection("queue_entries").stream()]
    assert [(p["patient_key"], p["channel"]) for p in places] == [(key, "sms")]
    assert _appointments(dialog) == []
    # After the moment, with the person admitted: TAK brings the first offer, TAK books with
    # the room's ticket (the booking gate refuses anyone whose turn it is not).
    assert text("TAK", timedelta(seconds=30)) == "offered"
    assert _replies(dialog)[-1].startswith("Proponowany termin:")
    assert text("TAK", timedelta(seconds=40)) == "booked"
    (appointment,) = _appointments(dialog)
    assert appointment["channel"] == "sms" and appointment["status"] == "booked"
    assert all(pesel not in r for r in _replies(dialog))


def test_a_text_whose_turn_has_not_come_is_told_its_place_and_books_nothing(dialog: SmsWorld):
    from datetime import date

    from common.services.booking import Actor
    from common.services.waiting_room import OpeningRequest

    pesel = _patient_with_slots(dialog, serial=6, born=date(1972, 2, 2))
    service, room = wiring.sms_dialog_service(), wiring.waiting_room()
    moment = clock.now().replace(microsecond=0) + timedelta(hours=2)
    admin = Actor(uid="admin-1", role="admin", reason="opening of the 1970s")
    # Admitting one person every ten minutes, and eleven already ahead of the texter.
    opening = OpeningRequest(
        born_from=1970, born_to=1979, opens_at=moment, window_minutes=30, admit_per_minute=0.1
    )
    room.publish(admin, "op-slow", opening, moment - timedelta(hours=2))
    for n in range(11):
        room.join(
            "op-slow", f"{n:064x}", date(1971, 1, 1), "portal", moment - timedelta(minutes=20)
        )
    after = moment + timedelta(minutes=1)
    inbound = SmsInbound.model_validate(
        {"message_id": uuid.uuid4().hex, "from": PHONE, "text": f"{pesel} 31-001 jcovden",
         "received_at": after}
    )  # fmt: skip
    assert service.receive(inbound, after) == "queued"
    reply = _replies(dialog)[-1]
    # Arrived after the moment: behind the eleven drawn, in arrival order.
    assert "miejsce 12 (przed Toba 11)" in reply and "Szacowany czas" in reply
    yes = SmsInbound.model_validate(
        {"message_id": uuid.uuid4().hex, "from": PHONE, "text": "TAK", "received_at": after}
    )
    assert service.receive(yes, after + timedelta(seconds=5)) == "queued"
    assert _appointments(dialog) == []
