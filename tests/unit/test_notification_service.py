"""NotificationService, SmsSender and the reminders against the in-memory unit of work.

No emulator: FakeUnitsOfWork behind the services, and in-test stand-ins for the SMS gateway
(one message per client_message_id, as the real one) and Cloud Tasks (one task per name, a
tombstone after a delete). What is checked: the decisions (send, skip and why), one SMS per
event however often it is delivered, a claim already taken, Firestore down at each step, and
the gateway or Cloud Tasks down (the 503-type error, nothing recorded as sent).
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from common.adapters.firestore_store import (
    APPOINTMENTS,
    NOTIFICATIONS,
    PATIENTS,
    POINTS,
    SMS_DIALOGS,
)
from common.adapters.http_errors import PeerRejectedError
from common.domain.appointments import Appointment, AppointmentStatus
from common.domain.calendar import WARSAW, SlotRef
from common.domain.errors import DependencyUnavailableError
from common.domain.events import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentRescheduled,
)
from common.domain.rulebook import load_rule_book
from common.services.notifications import NotificationService, SmsSender, phone_key
from common.services.reminders import ReminderScheduler, ReminderService, task_id
from tests.support.fake_store import FakeUnitsOfWork

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
PHONE = "+48600000001"
SECRET = b"unit-test-secret"
PATIENT = "patient-key-1"
POINT = "pt-00001"
SLOT = SlotRef.parse(f"{POINT}_20261210_1000_comirnaty")
LATER_SLOT = SlotRef.parse(f"{POINT}_20261211_0900_comirnaty")


class FakeGateway:
    """The SMS gateway: one message per client_message_id, the first id answered again."""

    def __init__(self) -> None:
        self.messages: dict[str, dict[str, str]] = {}
        self.calls = 0
        self.down = False
        self.refuse: str | None = None
        self.after_send: Any = None  # called once a message is accepted (then cleared)
        self.lose_answer = False  # sends, then times out before answering

    def send(self, to: str, text: str, client_message_id: str) -> str:
        self.calls += 1
        if self.down:
            raise DependencyUnavailableError("SMS gateway is unavailable (connection)")
        if self.refuse:
            raise PeerRejectedError("SMS gateway", 400, self.refuse, "refused")
        known = self.messages.get(client_message_id)
        if known is None:
            known = {"to": to, "text": text, "id": f"SMS-{len(self.messages) + 1:04d}"}
            self.messages[client_message_id] = known
        if self.after_send is not None:
            hook, self.after_send = self.after_send, None
            hook()
        if self.lose_answer:
            self.lose_answer = False
            raise DependencyUnavailableError("SMS gateway is unavailable (timeout)")
        return known["id"]

    def texts(self, to: str = PHONE) -> list[str]:
        return [m["text"] for m in self.messages.values() if m["to"] == to]


class FakeTasks:
    """Cloud Tasks: a name is taken by its task, and for a while by its tombstone."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.tombstones: set[str] = set()
        self.down = False

    def queue_path(self, project: str, location: str, queue: str) -> str:
        return f"projects/{project}/locations/{location}/queues/{queue}"

    def _check(self) -> None:
        if self.down:
            raise gexc.ServiceUnavailable("Cloud Tasks is down")

    def create_task(self, parent: str, task: dict[str, Any], timeout: float) -> None:
        self._check()
        if task["name"] in self.tasks or task["name"] in self.tombstones:
            raise gexc.AlreadyExists("task exists")
        self.tasks[task["name"]] = task

    def get_task(self, name: str, timeout: float) -> dict[str, Any]:
        self._check()
        if name not in self.tasks:
            raise gexc.NotFound("no task")
        return self.tasks[name]

    def delete_task(self, name: str, timeout: float) -> None:
        self._check()
        if name not in self.tasks:
            raise gexc.NotFound("no task")
        del self.tasks[name]
        self.tombstones.add(name)

    def names(self) -> list[str]:
        return [name.rsplit("/", 1)[1] for name in self.tasks]


class World:
    def __init__(self) -> None:
        self.units = FakeUnitsOfWork(now=lambda: NOW)
        self.store = self.units.store
        self.gateway = FakeGateway()
        self.tasks = FakeTasks()
        self.sender = SmsSender(self.units, self.gateway)  # type: ignore[arg-type]
        scheduler = ReminderScheduler(
            self.tasks,  # type: ignore[arg-type]
            "proj",
            "europe-central2",
            "http://functions/send_reminder",
        )
        self.service = NotificationService(
            self.units, load_rule_book(), self.sender, scheduler, secret=SECRET
        )
        self.reminders = ReminderService(self.units, self.service, self.sender)
        self.store.put(PATIENTS, PATIENT, {"patient_key": PATIENT, "phone": PHONE})
        self.store.put(
            POINTS,
            POINT,
            {
                "name": "Punkt Dluga",
                "street": "ul. Dluga 1",
                "postcode": "31-001",
                "place": "Krakow",
            },
        )

    def appointment(self, ref: SlotRef = SLOT, **changes: Any) -> Appointment:
        appointment = Appointment(
            appointment_id=uuid.uuid4().hex,
            series_id=uuid.uuid4().hex,
            patient_key=PATIENT,
            referral_id="REF-1",
            dose_kind="primary",
            dose_number=1,
            product=ref.product,
            point_id=ref.point_id,
            slot_id=ref.slot_id,
            seat_id=ref.seat_id(0),
            starts_at=ref.starts_at,
            day=ref.day,
            channel="portal",
            booked_by_role="patient",
            created_at=NOW,
            updated_at=NOW,
        ).model_copy(update=changes)
        self.store.put(APPOINTMENTS, appointment.appointment_id, appointment.to_document())
        return appointment

    def record(self, event_id: str) -> dict[str, Any] | None:
        return self.store.data(NOTIFICATIONS, f"{event_id}-p")


def booked(appointment: Appointment, **fields: Any) -> AppointmentBooked:
    return AppointmentBooked.about(appointment, occurred_at=NOW, **{"channel": "portal", **fields})


@pytest.fixture
def world() -> World:
    return World()


def push(event: Any, **attributes: str) -> dict[str, Any]:
    return {
        "message": {
            "data": base64.b64encode(json.dumps(event.envelope()).encode()).decode(),
            "attributes": {
                "event_type": event.event_type,
                "event_id": event.event_id,
                **attributes,
            },
        }
    }


# -- the decisions ------------------------------------------------------------------------------
def test_a_booking_gets_one_sms_and_one_reminder_however_often_it_is_delivered(world: World):
    appointment = world.appointment()
    event = booked(appointment)
    outcomes = [world.service.handle_push(push(event), NOW) for _ in range(3)]
    assert outcomes == ["sent", "duplicate", "duplicate"]
    (text,) = world.gateway.texts()
    assert "zarezerwowano szczepienie Comirnaty (dawka 1) 10.12.2026 godz. 10:00" in text
    assert "Punkt Dluga" in text
    assert world.gateway.calls == 1  # once sent, a redelivery does not even ask the gateway
    record = world.record(event.event_id)
    assert record["status"] == "sent" and record["gateway_message_id"] == "SMS-0001"
    assert record["client_message_id"] == f"{event.event_id}-p"
    assert world.tasks.names() == [task_id(appointment.appointment_id, SLOT.starts_at)]


def test_a_booking_cancelled_before_its_event_is_handled_sends_nothing(world: World):
    appointment = world.appointment(status=AppointmentStatus.CANCELLED)
    event = booked(appointment)
    assert world.service.handle(event, NOW) == "skipped:superseded"
    assert world.gateway.calls == 0 and world.tasks.names() == []
    record = world.record(event.event_id)
    assert (record["status"], record["reason"]) == ("skipped", "superseded")
    # A redelivery keeps the first decision.
    assert world.service.handle(event, NOW) == "skipped:superseded"
    assert world.store.commits == 1


def _dialog_on(world: World, phone: str, appointment: Appointment) -> None:
    """The SMS dialog of `phone` booked `appointment` for the patient."""
    world.store.put(
        SMS_DIALOGS,
        phone_key(phone, SECRET),
        {
            "state": "booked",
            "patient_key": PATIENT,
            "appointment": {"appointment_id": appointment.appointment_id},
            "offer": {"slot_id": appointment.slot_id},
        },
    )


def test_a_booking_made_by_sms_on_the_patients_own_number_is_not_confirmed_twice(world: World):
    appointment = world.appointment(channel="sms")
    _dialog_on(world, PHONE, appointment)
    event = booked(appointment, channel="sms")
    assert world.service.handle(event, NOW) == "skipped:confirmed_in_sms_dialog"
    assert world.gateway.calls == 0 and len(world.tasks.names()) == 1


def test_a_booking_made_by_sms_from_another_phone_is_confirmed_to_the_patients_own(
    world: World,
):
    """Issue 13: the dialog ran on someone else's phone (after a code sent to the
    patient's): the patient's own number is told, as for any booking."""
    appointment = world.appointment(channel="sms")
    _dialog_on(world, "+48600999888", appointment)
    event = booked(appointment, channel="sms")
    assert world.service.handle(event, NOW) == "sent"
    (text,) = world.gateway.texts(PHONE)
    assert text.startswith("e-Rejestracja: zarezerwowano szczepienie")
    assert world.gateway.texts("+48600999888") == []


def test_no_phone_on_file_is_recorded_as_skipped(world: World):
    world.store.put(PATIENTS, PATIENT, {"patient_key": PATIENT})
    event = booked(world.appointment())
    assert world.service.handle(event, NOW) == "skipped:no_phone"
    assert world.record(event.event_id)["reason"] == "no_phone" and world.gateway.calls == 0


def test_a_cancellation_drops_the_reminder_and_says_so(world: World):
    appointment = world.appointment()
    world.service.handle(booked(appointment), NOW)
    cancelled = AppointmentCancelled.about(
        appointment.cancelled(NOW), occurred_at=NOW, channel="portal"
    )
    world.store.put(
        APPOINTMENTS, appointment.appointment_id, appointment.cancelled(NOW).to_document()
    )
    assert world.service.handle(cancelled, NOW) == "sent"
    assert world.tasks.names() == []
    assert world.gateway.texts()[-1].startswith("e-Rejestracja: odwolano wizyte")


def test_a_move_sends_the_new_time_and_moves_the_reminder(world: World):
    appointment = world.appointment()
    world.service.handle(booked(appointment), NOW)
    moved = appointment.moved_to(
        LATER_SLOT.slot_id, LATER_SLOT.seat_id(0), POINT, LATER_SLOT.starts_at, LATER_SLOT.day, NOW
    )
    world.store.put(APPOINTMENTS, moved.appointment_id, moved.to_document())
    event = AppointmentRescheduled(
        event_id=uuid.uuid4().hex,
        occurred_at=NOW,
        appointment_id=moved.appointment_id,
        series_id=moved.series_id,
        patient_key=PATIENT,
        product="comirnaty",
        dose_number=1,
        from_slot_id=SLOT.slot_id,
        to_slot_id=LATER_SLOT.slot_id,
        from_point_id=POINT,
        to_point_id=POINT,
        starts_at=LATER_SLOT.starts_at,
        channel="portal",
    )
    assert world.service.handle(event, NOW) == "sent"
    assert "zmieniono termin" in world.gateway.texts()[-1]
    assert world.tasks.names() == [task_id(appointment.appointment_id, LATER_SLOT.starts_at)]


# -- a claim already taken ------------------------------------------------------------------------
def test_a_claim_left_sending_carries_on_with_the_stored_text(world: World):
    event = booked(world.appointment())
    world.store.put(
        NOTIFICATIONS,
        f"{event.event_id}-p",
        {"status": "sending", "text": "the text rendered by the first attempt"},
    )
    assert world.service.handle(event, NOW) == "sent"
    assert world.gateway.texts() == ["the text rendered by the first attempt"]
    assert world.record(event.event_id)["status"] == "sent"


def test_a_claim_already_done_sends_nothing(world: World):
    event = booked(world.appointment())
    world.store.put(NOTIFICATIONS, f"{event.event_id}-p", {"status": "skipped", "reason": "x"})
    assert world.service.handle(event, NOW) == "duplicate"
    assert world.gateway.calls == 0


def test_a_claim_taken_between_the_read_and_the_commit_is_looked_at(world: World):
    """Two deliveries at once: the other one's create lands first; ours conflicts, reads
    the claim, and carries on with the other's text (the gateway dedupes the id)."""
    event = booked(world.appointment())
    notification_id = f"{event.event_id}-p"
    store = world.store
    real_commit = store.commit

    def twin_first(writes, now):
        if not store.data(NOTIFICATIONS, notification_id):
            store.put(NOTIFICATIONS, notification_id, {"status": "sending", "text": "twin's text"})
        return real_commit(writes, now)

    store.commit = twin_first  # type: ignore[method-assign]
    assert world.service.handle(event, NOW) == "sent"
    assert world.gateway.texts() == ["twin's text"]


# -- Firestore down --------------------------------------------------------------------------
def test_firestore_down_at_the_claim_sends_nothing_and_the_redelivery_sends_once(world: World):
    event = booked(world.appointment())
    world.store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        world.service.handle(event, NOW)
    assert world.gateway.calls == 0 and world.record(event.event_id) is None
    assert world.service.handle(event, NOW) == "sent"
    assert len(world.gateway.texts()) == 1


def test_firestore_down_after_the_send_leaves_it_sending_and_the_retry_sends_once(world: World):
    event = booked(world.appointment())
    world.gateway.after_send = lambda: setattr(world.store, "fail_next_commits", 1)
    with pytest.raises(gexc.ServiceUnavailable):
        world.service.handle(event, NOW)
    assert world.record(event.event_id)["status"] == "sending"  # not recorded as sent
    assert world.service.handle(event, NOW) == "sent"
    assert world.gateway.calls == 2 and len(world.gateway.texts()) == 1


# -- the gateway down, refusing, or slow ------------------------------------------------------
def test_gateway_down_raises_and_records_the_attempt_not_a_send(world: World):
    event = booked(world.appointment())
    world.gateway.down = True
    for attempt in (1, 2):
        with pytest.raises(DependencyUnavailableError):
            world.service.handle_push(push(event), NOW)
        record = world.record(event.event_id)
        assert record["status"] == "sending" and record["attempts"] == attempt
        assert record["last_error"] == "DependencyUnavailableError"
    world.gateway.down = False
    assert world.service.handle_push(push(event), NOW) == "sent"
    assert len(world.gateway.texts()) == 1


def test_a_gateway_that_sent_but_timed_out_is_not_made_to_send_twice(world: World):
    event = booked(world.appointment())
    world.gateway.lose_answer = True
    with pytest.raises(DependencyUnavailableError):
        world.service.handle(event, NOW)
    assert world.service.handle(event, NOW) == "sent"
    assert world.gateway.calls == 2 and len(world.gateway.texts()) == 1


def test_a_refused_number_fails_once_and_only_a_replay_tries_again(world: World):
    event = booked(world.appointment())
    world.gateway.refuse = "invalid_number"
    assert world.service.handle_push(push(event), NOW) == "failed"
    record = world.record(event.event_id)
    assert (record["status"], record["error"]) == ("failed", "invalid_number")
    assert world.service.handle_push(push(event), NOW) == "duplicate"
    assert world.gateway.calls == 1
    world.gateway.refuse = None
    assert world.service.handle_push(push(event, replay="true"), NOW) == "sent"
    assert world.gateway.calls == 2 and world.record(event.event_id)["status"] == "sent"


def test_cloud_tasks_down_raises_before_any_sms(world: World):
    appointment = world.appointment()
    event = booked(appointment)
    world.tasks.down = True
    with pytest.raises(DependencyUnavailableError):
        world.service.handle(event, NOW)
    assert world.gateway.calls == 0 and world.record(event.event_id) is None
    world.tasks.down = False
    assert world.service.handle(event, NOW) == "sent"
    assert len(world.tasks.names()) == 1 and len(world.gateway.texts()) == 1


# -- the reminder --------------------------------------------------------------------------------
def test_a_reminder_run_twice_sends_once_and_a_moved_visit_none(world: World):
    appointment = world.appointment()
    evening = datetime(2026, 12, 9, 18, 0, tzinfo=WARSAW)
    assert world.reminders.send(appointment.appointment_id, SLOT.starts_at, evening) == "sent"
    assert world.reminders.send(appointment.appointment_id, SLOT.starts_at, evening) == "duplicate"
    (text,) = world.gateway.texts()
    assert text.startswith("Przypomnienie") and "10.12.2026 godz. 10:00" in text
    other_start = SLOT.starts_at + timedelta(hours=1)
    assert world.reminders.send(appointment.appointment_id, other_start, evening) == "stale"
    assert world.gateway.calls == 1


def test_a_reminder_with_the_gateway_down_is_retried_by_its_task(world: World):
    appointment = world.appointment()
    evening = datetime(2026, 12, 9, 18, 0, tzinfo=WARSAW)
    world.gateway.down = True
    with pytest.raises(DependencyUnavailableError):
        world.reminders.send(appointment.appointment_id, SLOT.starts_at, evening)
    world.gateway.down = False
    assert world.reminders.send(appointment.appointment_id, SLOT.starts_at, evening) == "sent"
    assert len(world.gateway.texts()) == 1
