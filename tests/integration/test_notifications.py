"""SMS notifications and reminders (docs/reliability.md items 4, 5 and 10 for the SMS paths).

Against the official Firestore and Pub/Sub emulators, our Cloud Tasks emulator and the SMS
gateway simulator, with every function behind the dev gateway on a free port.
"""

from __future__ import annotations

import random
import threading
import uuid
from datetime import time as dtime
from datetime import timedelta

import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from common import clock, wiring
from common.adapters.pubsub_publisher import EventPublisher
from common.domain.calendar import WARSAW
from common.services import outbox
from common.services.booking import (
    Actor,
    BookAppointment,
    BookingService,
    CancelAppointment,
    RescheduleAppointment,
)
from common.services.reminders import reminder_key, task_id
from tests.integration import sms_support
from tests.integration.sms_support import (
    SmsWorld,
    payload_of,
    point_with_slots,
    visit_start,
    wait_for,
)
from tests.support.identity import id_token

# The shared fixtures of the SMS tests.
gateway_url = sms_support.gateway_url
tasks_emulator = sms_support.tasks_emulator
world = sms_support.world
push_world = sms_support.push_world

PATIENT = Actor(uid="patient-1", role="patient")


def _quiet_booking() -> BookingService:
    """Booking that commits the event to the outbox but never publishes it (a crash right
    after the commit, as far as Pub/Sub can tell)."""
    return BookingService.on_firestore(
        wiring.firestore_client(),
        wiring.rule_book(),
        wiring.settings().pesel_hash_key,
        publisher=None,
    )


def _book(service: BookingService, pesel: str, slot_id: str) -> dict:
    result = service.book(
        BookAppointment(pesel=pesel, slot_id=slot_id, channel="portal", actor=PATIENT),
        clock.now(),
    )
    return result.body["appointments"][0]


def _tasks(world: SmsWorld) -> list[tasks_v2.Task]:
    queue = world.tasks.queue_path(world.project, "europe-central2", "notifications")
    return list(world.tasks.list_tasks(parent=queue))


# -- item 5: duplicate and out-of-order deliveries ----------------------------------------------
def test_each_booking_gets_one_sms_and_one_reminder_whatever_the_deliveries(world: SmsWorld):
    slots = point_with_slots(world.db, days=[3], capacity=5)
    booking = _quiet_booking()
    phones = [f"+4860010000{i}" for i in range(4)]
    for serial, phone in enumerate(phones, start=1):
        pesel, _ = world.patient(phone, serial)
        _book(booking, pesel, slots[0])
    events = world.outbox()
    assert len(events) == 4
    # Each event delivered 1-3 times, all at once, in a random order.
    rng = random.Random(2021)
    deliveries = [(e, n) for e in events for n in range(1, rng.randint(1, 3) + 1)]
    rng.shuffle(deliveries)
    answers = []
    threads = [
        threading.Thread(target=lambda e=e, n=n: answers.append(world.push(e, n).status_code))
        for e, n in deliveries
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers and all(status == 200 for status in answers), answers
    for phone in phones:
        sent = world.messages(phone)
        assert len(sent) == 1, (phone, sent)
        assert "zarezerwowano szczepienie Jcovden (dawka 1)" in sent[0]["text"]
        assert "godz. 10:00" in sent[0]["text"] and "Punkt pt-00001" in sent[0]["text"]
    for event in events:
        record = world.notification(f"{event['event_id']}-p")
        assert record["status"] == "sent" and record["gateway_message_id"].startswith("SMS-")
    assert len(_tasks(world)) == 4  # one reminder per appointment, duplicates ALREADY_EXISTS


def test_a_cancellation_delivered_before_its_booking_sends_no_stale_confirmation(
    world: SmsWorld,
):
    slots = point_with_slots(world.db, days=[3])
    booking = _quiet_booking()
    phone = "+48600100010"
    pesel, key = world.patient(phone, 10)
    appointment = _book(booking, pesel, slots[0])
    booking.cancel(
        CancelAppointment(
            appointment_id=appointment["appointment_id"],
            actor=PATIENT,
            channel="portal",
            patient_key=key,
        ),
        clock.now(),
    )
    by_type = {e["event_type"]: e for e in world.outbox()}
    assert world.push(by_type["appointment.cancelled"]).status_code == 200
    assert world.push(by_type["appointment.booked"]).status_code == 200
    assert world.push(by_type["appointment.cancelled"], 2).status_code == 200
    sent = world.messages(phone)
    assert [m["text"].split(":")[1].split()[0] for m in sent] == ["odwolano"]
    booked = world.notification(f"{by_type['appointment.booked']['event_id']}-p")
    assert booked["status"] == "skipped" and booked["reason"] == "superseded"
    assert _tasks(world) == []  # the late booking event scheduled no reminder


def test_a_two_dose_series_gets_one_sms_naming_both_dates(world: SmsWorld):
    slots = point_with_slots(world.db, days=[3, 38], product="comirnaty")
    phone = "+48600100020"
    pesel, _ = world.patient(phone, 20)
    _book(_quiet_booking(), pesel, slots[0])
    events = world.outbox()
    assert len(events) == 2
    for event in events + events:
        assert world.push(event).status_code == 200
    (sms,) = world.messages(phone)
    second = visit_start(slots[1])
    assert "(dawka 1)" in sms["text"] and f"Dawka 2: {second:%d.%m.%Y}" in sms["text"]
    assert len(_tasks(world)) == 2  # each dose has its own reminder


# -- item 4: crash between commit and publish --------------------------------------------------
def test_event_left_in_the_outbox_by_a_crash_is_relayed_and_texted_once(push_world: SmsWorld):
    world = push_world
    slots = point_with_slots(world.db, days=[4])
    phone = "+48600100030"
    pesel, _ = world.patient(phone, 30)
    _book(_quiet_booking(), pesel, slots[0])  # committed; the process "died" before publishing
    (left_behind,) = world.outbox()
    assert world.messages(phone) == []
    # After the restart the scheduled sweep publishes it (here: past its grace period) ...
    publisher = EventPublisher(world.project)
    swept = outbox.sweep(world.db, publisher, clock.now() + timedelta(minutes=2))
    assert swept == {"found": 1, "published": 1}
    # ... and a crash between publish and delete publishes it once more.
    world.publish(left_behind)
    record_id = f"{left_behind['event_id']}-p"
    assert wait_for(lambda: (world.notification(record_id) or {}).get("status") == "sent")
    wait_for(lambda: len(world.messages(phone)) > 1, timeout_s=3)
    assert len(world.messages(phone)) == 1
    assert world.outbox() == []


# -- item 10: the SMS gateway down or slow -------------------------------------------------------
def test_gateway_down_then_back_redelivers_until_one_sms(push_world: SmsWorld):
    world = push_world
    slots = point_with_slots(world.db, days=[4])
    phone = "+48600100040"
    pesel, _ = world.patient(phone, 40)
    world.faults(down=True, down_mode="close")
    wiring.booking_service().book(
        BookAppointment(pesel=pesel, slot_id=slots[0], channel="portal", actor=PATIENT),
        clock.now(),
    )
    event_id = wait_for(
        lambda: next(
            (d.id.removesuffix("-p") for d in world.db.collection("notifications").stream()),
            None,
        )
    )
    assert event_id, "the push never reached notify_patient"
    record_id = f"{event_id}-p"
    # Pub/Sub redelivers while the gateway is down; nothing is sent, nothing is lost.
    assert wait_for(lambda: (world.notification(record_id) or {}).get("attempts", 0) >= 2)
    assert world.notification(record_id)["status"] == "sending"
    world.faults()  # the gateway is back
    assert wait_for(lambda: (world.notification(record_id) or {}).get("status") == "sent")
    assert len(world.messages(phone)) == 1


def test_slow_gateway_that_sent_before_timing_out_is_not_asked_twice(push_world: SmsWorld):
    world = push_world
    slots = point_with_slots(world.db, days=[4])
    phone = "+48600100050"
    pesel, _ = world.patient(phone, 50)
    # Slower than the client's 5 s read timeout: the gateway sends, our side sees a timeout.
    world.faults(latency_ms=6000)
    wiring.booking_service().book(
        BookAppointment(pesel=pesel, slot_id=slots[0], channel="portal", actor=PATIENT),
        clock.now(),
    )
    assert wait_for(lambda: world.messages(phone), timeout_s=30)
    world.faults()
    assert wait_for(
        lambda: any(
            d.to_dict().get("status") == "sent"
            for d in world.db.collection("notifications").stream()
        ),
        timeout_s=30,
    )
    (record,) = [d.to_dict() for d in world.db.collection("notifications").stream()]
    assert record.get("attempts", 0) >= 1  # at least one attempt timed out
    assert len(world.messages(phone)) == 1  # the retry reused the id: the gateway deduped


# -- reminders -----------------------------------------------------------------------------------
def test_reminder_task_named_and_scheduled_for_18h_the_day_before_and_dropped_on_cancel(
    world: SmsWorld,
):
    slots = point_with_slots(world.db, days=[5])
    pesel, key = world.patient("+48600100060", 60)
    booking = _quiet_booking()
    appointment = _book(booking, pesel, slots[0])
    (booked,) = world.outbox()
    assert world.push(booked).status_code == 200
    assert world.push(booked, 2).status_code == 200  # the same event again: ALREADY_EXISTS
    (task,) = _tasks(world)
    starts_at = visit_start(slots[0])
    assert task.name.endswith("/tasks/" + task_id(appointment["appointment_id"], starts_at))
    due = task.schedule_time.astimezone(WARSAW)
    assert (due.date(), due.time()) == (starts_at.date() - timedelta(days=1), dtime(18, 0))
    assert task.http_request.url == f"{world.gateway_url}/_functions/send_reminder"
    booking.cancel(
        CancelAppointment(
            appointment_id=appointment["appointment_id"],
            actor=PATIENT,
            channel="portal",
            patient_key=key,
        ),
        clock.now(),
    )
    cancelled = next(e for e in world.outbox() if e["event_type"] == "appointment.cancelled")
    assert world.push(cancelled).status_code == 200
    assert _tasks(world) == []
    with pytest.raises(gexc.NotFound):
        world.tasks.get_task(name=task.name)


def test_a_move_reschedules_the_reminder_and_the_old_one_sends_nothing(world: SmsWorld):
    # Day 2, not 1: the moved visit's reminder (18:00 the day before) stays in the future at
    # any hour the test runs, so only run_task below can fire it.
    slots = point_with_slots(world.db, days=[2, 6])
    phone = "+48600100070"
    pesel, key = world.patient(phone, 70)
    booking = _quiet_booking()
    appointment = _book(booking, pesel, slots[1])
    booked = world.outbox()[0]
    assert world.push(booked).status_code == 200
    booking.reschedule(
        RescheduleAppointment(
            appointment_id=appointment["appointment_id"],
            new_slot_id=slots[0],
            actor=PATIENT,
            channel="portal",
            patient_key=key,
        ),
        clock.now(),
    )
    moved = next(e for e in world.outbox() if e["event_type"] == "appointment.rescheduled")
    assert world.push(moved).status_code == 200
    (task,) = _tasks(world)
    new_start, old_start = visit_start(slots[0]), visit_start(slots[1])
    assert task.name.endswith(task_id(appointment["appointment_id"], new_start))
    # A reminder task of the old start that escaped deletion finds the visit moved.
    stale = world.push_reminder(appointment["appointment_id"], old_start)
    assert stale == {"outcome": "stale"}
    texts = [m["text"] for m in world.messages(phone)]
    assert len(texts) == 2 and "zmieniono termin" in texts[1]
    # The task itself, run now by Cloud Tasks, sends the reminder once.
    world.tasks.run_task(name=task.name)
    reminder_id = f"reminder-{reminder_key(appointment['appointment_id'], new_start)}"
    assert wait_for(lambda: (world.notification(reminder_id) or {}).get("status") == "sent")
    assert world.push_reminder(appointment["appointment_id"], new_start) == {"outcome": "duplicate"}
    reminders = [m for m in world.messages(phone) if m["text"].startswith("Przypomnienie")]
    assert len(reminders) == 1 and f"{new_start:%d.%m.%Y} godz. 10:00" in reminders[0]["text"]


def test_sms_text_has_no_pesel_and_the_event_no_phone(world: SmsWorld):
    slots = point_with_slots(world.db, days=[3])
    phone = "+48600100080"
    pesel, _ = world.patient(phone, 80)
    _book(_quiet_booking(), pesel, slots[0])
    (event,) = world.outbox()
    assert pesel not in event["payload"] and phone not in event["payload"]
    assert world.push(event).status_code == 200
    (sms,) = world.messages(phone)
    assert pesel not in sms["text"]
    assert payload_of(event)["event_id"] in sms["client_message_id"]


# -- a day in the local cloud ---------------------------------------------------------------------
def test_a_day_booking_sms_reminder_and_a_dialog_booking(push_world: SmsWorld):
    """Through the public API, Pub/Sub push, Cloud Tasks and the SMS gateway's webhook."""
    world = push_world
    slots = point_with_slots(world.db, days=[2, 3], extra_times=(dtime(11, 0),), capacity=3)
    anna_phone, jan_phone = "+48600100090", "+48600100091"
    anna, _ = world.patient(anna_phone, 90)
    jan, _ = world.patient(jan_phone, 91)
    # Morning: Anna books in the portal (the public API, her ID token).
    token = id_token(world.project, "anna", {"role": "patient", "pesel": anna})
    booked = requests.post(
        f"{world.gateway_url}/v1/appointments",
        json={"slot_id": slots[0]},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
        timeout=30,
    )
    assert booked.status_code == 201, booked.text
    appointment = booked.json()["appointments"][0]
    assert wait_for(lambda: world.messages(anna_phone))
    # Her reminder is waiting in the queue for 18:00 the day before.
    (task,) = wait_for(lambda: _tasks(world))
    start = visit_start(slots[0])
    assert task.name.endswith(task_id(appointment["appointment_id"], start))
    # Noon: Jan has no internet; he texts the short number, and books with TAK.
    simulator = f"{world.sms.base_url}/sms/v1/inbound"
    auth = {"Authorization": f"Bearer {sms_support.DEFAULT_TOKEN}"}
    requests.post(
        simulator, json={"from": jan_phone, "text": f"{jan} 31-001"}, headers=auth, timeout=10
    )
    assert wait_for(lambda: world.messages(jan_phone))
    requests.post(simulator, json={"from": jan_phone, "text": "TAK"}, headers=auth, timeout=10)
    assert wait_for(lambda: len(world.messages(jan_phone)) == 2)
    texts = [m["text"] for m in world.messages(jan_phone)]
    assert texts[1].startswith("Zarezerwowano"), texts
    assert wait_for(lambda: len(_tasks(world)) == 2)  # Jan's reminder too
    # Evening, 18:00 the day before: Cloud Tasks fires Anna's reminder (forced now here).
    world.tasks.run_task(name=task.name)
    assert wait_for(lambda: len(world.messages(anna_phone)) == 2)
    texts = [m["text"] for m in world.messages(anna_phone)]
    assert texts[0].startswith("e-Rejestracja: zarezerwowano")
    assert texts[1].startswith("Przypomnienie") and f"{start:%d.%m.%Y}" in texts[1]
    # Jan's booking event sent no second confirmation: the dialog's reply was it.
    wait_for(lambda: len(world.messages(jan_phone)) > 2, timeout_s=3)
    assert len(world.messages(jan_phone)) == 2
