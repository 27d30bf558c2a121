"""StuckWorkSweeper against the in-memory unit of work: nothing stays in between.

The outage of issue 13 in miniature: the gateway down while every delivery of an event runs
(and Firestore failing the bookkeeping of some of them), until the deliveries stop (the push
subscription gave up). The sweeper, once the record is due, sends it once; a gateway that
sent but lost its answer still makes one SMS; a message about a visit that is no longer
booked is not sent late; a P1 report left pending is reported once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from common.adapters.firestore_store import APPOINTMENTS, NOTIFICATIONS, PATIENTS, POINTS
from common.adapters.p1_client import P1Ack, P1VaccinationRecord
from common.adapters.vault import FieldVault
from common.domain.appointments import Appointment
from common.domain.calendar import SlotRef
from common.domain.errors import DependencyUnavailableError
from common.domain.events import AppointmentBooked, VaccinationCompleted
from common.domain.pesel import make_pesel, parse_pesel
from common.domain.rulebook import load_rule_book
from common.services.notifications import NotificationService, SmsSender
from common.services.p1_reporting import P1_REPORTS, P1Reporter
from common.services.patients import new_patient_document
from common.services.sweeper import StuckWorkSweeper
from tests.support.fake_store import FakeUnitsOfWork

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
VAULT = FieldVault({"t": b"s" * 32}, "t")
PHONE = "+48600800001"
PATIENT = "patient-key-1"
SLOT = SlotRef.parse("pt-00001_20261210_1000_comirnaty")
PESEL = make_pesel(date(1950, 5, 5), "F", 5)


class FakeGateway:
    def __init__(self) -> None:
        self.messages: dict[str, dict[str, str]] = {}
        self.calls = 0
        self.down = False
        self.lose_answer = False

    def send(self, to: str, text: str, client_message_id: str) -> str:
        self.calls += 1
        if self.down:
            raise DependencyUnavailableError("SMS gateway is unavailable (connection)")
        known = self.messages.setdefault(client_message_id, {"to": to, "text": text})
        if self.lose_answer:
            self.lose_answer = False
            raise DependencyUnavailableError("SMS gateway is unavailable (timeout)")
        return f"SMS-{list(self.messages).index(client_message_id) + 1}-{len(known)}"

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages.values()]


class FakeP1:
    def __init__(self) -> None:
        self.records: dict[str, P1VaccinationRecord] = {}
        self.down = False

    def report_vaccination(self, record: P1VaccinationRecord) -> P1Ack:
        if self.down:
            raise DependencyUnavailableError("P1 is unavailable (timeout)")
        duplicate = record.vaccination_id in self.records
        self.records.setdefault(record.vaccination_id, record)
        return P1Ack(
            vaccination_id=record.vaccination_id,
            p1_record_id="P1-1",
            received_at=NOW,
            duplicate=duplicate,
        )


class FakePublisher:
    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        return "1"


class World:
    def __init__(self) -> None:
        self.units = FakeUnitsOfWork(now=lambda: NOW)
        self.store = self.units.store
        self.gateway = FakeGateway()
        self.sender = SmsSender(self.units, self.gateway, VAULT)  # type: ignore[arg-type]
        self.notifications = NotificationService(self.units, load_rule_book(), self.sender, None)
        self.p1 = FakeP1()
        self.reporter = P1Reporter(self.units, self.p1, FakePublisher(), VAULT)  # type: ignore[arg-type]
        self.sweeper = StuckWorkSweeper(
            self.units,
            self.sender,
            self.reporter,
            phone_of=lambda key, now: self.notifications.phone_of(key, now),
        )
        pesel = parse_pesel(PESEL, NOW.date())
        self.store.put(
            PATIENTS, PATIENT, {**new_patient_document(pesel, PATIENT, VAULT), "phone": PHONE}
        )
        self.store.put(POINTS, SLOT.point_id, {"name": "Punkt", "street": "ul. Dluga 1"})

    def appointment(self, **changes: Any) -> Appointment:
        appointment = Appointment(
            appointment_id=uuid.uuid4().hex,
            series_id=uuid.uuid4().hex,
            patient_key=PATIENT,
            referral_id="REF-1",
            dose_kind="primary",
            dose_number=1,
            product=SLOT.product,
            point_id=SLOT.point_id,
            slot_id=SLOT.slot_id,
            seat_id=SLOT.seat_id(0),
            starts_at=SLOT.starts_at,
            day=SLOT.day,
            channel="portal",
            booked_by_role="patient",
            created_at=NOW,
            updated_at=NOW,
        ).model_copy(update=changes)
        self.store.put(APPOINTMENTS, appointment.appointment_id, appointment.to_document())
        return appointment

    def booked(self, appointment: Appointment) -> AppointmentBooked:
        return AppointmentBooked.about(appointment, occurred_at=NOW, channel="portal")

    def record(self, event: AppointmentBooked) -> dict[str, Any]:
        return self.store.data(NOTIFICATIONS, f"{event.event_id}-p") or {}

    def deliveries_give_up(self, event: AppointmentBooked, attempts: int = 10) -> None:
        """The push subscription's deliveries while the gateway is down, every other one with
        Firestore failing its bookkeeping; then it gives up (the dead letter)."""
        self.gateway.down = True
        for n in range(attempts):
            self.store.fail_next_commits = n % 2  # Firestore "frozen" now and then
            try:
                self.notifications.handle(event, NOW + timedelta(seconds=n))
            except Exception:  # each delivery fails: that is the outage
                continue
        self.store.fail_next_commits = 0


@pytest.fixture
def world() -> World:
    return World()


def test_after_the_outage_the_sweep_sends_exactly_one_sms(world: World):
    event = world.booked(world.appointment())
    world.deliveries_give_up(event)
    record = world.record(event)
    assert record["status"] == "sending" and world.gateway.texts() == []
    assert record["to_enc"] and PHONE not in str(record)  # the recipient, encrypted
    # Not yet due: left alone.
    assert world.sweeper.run(NOW + timedelta(minutes=1))["notifications"] == {}
    world.gateway.down = False
    later = NOW + timedelta(minutes=6)
    assert world.sweeper.run(later)["notifications"] == {"sent": 1}
    (text,) = world.gateway.texts()
    assert (
        text.startswith("e-Rejestracja: zarezerwowano") and world.record(event)["status"] == "sent"
    )
    assert world.record(event)["to_enc"] is None  # sent: the number is no longer kept
    assert world.sweeper.run(later + timedelta(minutes=10))["notifications"] == {}
    # A replayed dead letter finds it sent.
    assert world.notifications.handle(event, later, replay=True) == "duplicate"
    assert len(world.gateway.texts()) == 1


def test_a_send_whose_answer_was_lost_is_not_sent_twice(world: World):
    event = world.booked(world.appointment())
    world.gateway.lose_answer = True  # the gateway sent it, we timed out
    with pytest.raises(DependencyUnavailableError):
        world.notifications.handle(event, NOW)
    assert world.record(event)["status"] == "sending"
    assert world.sweeper.run(NOW + timedelta(minutes=6))["notifications"] == {"sent": 1}
    assert len(world.gateway.messages) == 1 and len(world.gateway.texts()) == 1


def test_a_sweep_while_still_down_moves_the_due_time_on_with_backoff(world: World):
    event = world.booked(world.appointment())
    world.deliveries_give_up(event)
    at = NOW + timedelta(minutes=6)
    assert world.sweeper.run(at)["notifications"] == {"still_failing": 1}
    record = world.record(event)
    assert record["sweeps"] == 1 and record["retry_after"] == at + timedelta(minutes=5)
    at += timedelta(minutes=6)
    world.sweeper.run(at)
    assert world.record(event)["retry_after"] == at + timedelta(minutes=10)


def test_a_message_about_a_visit_no_longer_booked_is_not_sent_late(world: World):
    appointment = world.appointment()
    event = world.booked(appointment)
    world.deliveries_give_up(event)
    world.store.put(
        APPOINTMENTS, appointment.appointment_id, appointment.cancelled(NOW).to_document()
    )
    world.gateway.down = False
    assert world.sweeper.run(NOW + timedelta(minutes=6))["notifications"] == {"superseded": 1}
    assert world.gateway.texts() == []
    assert (world.record(event)["status"], world.record(event)["reason"]) == (
        "skipped",
        "superseded",
    )


def test_a_reminder_is_not_sent_once_the_visit_has_begun(world: World):
    appointment = world.appointment()
    world.store.put(
        NOTIFICATIONS,
        "reminder-x",
        {
            "kind": "reminder",
            "status": "sending",
            "appointment_id": appointment.appointment_id,
            "patient_key": PATIENT,
            "starts_at": appointment.starts_at,
            "text": "Przypomnienie",
            "created_at": appointment.starts_at - timedelta(hours=2),
            "retry_after": appointment.starts_at - timedelta(hours=1),
        },
    )
    swept = world.sweeper.run(appointment.starts_at + timedelta(minutes=1))
    assert swept["notifications"] == {"too_late": 1} and world.gateway.texts() == []


def test_a_day_later_an_unsent_notification_is_given_up(world: World):
    event = world.booked(world.appointment())
    world.deliveries_give_up(event)
    swept = world.sweeper.run(NOW + timedelta(hours=25))
    assert swept["notifications"] == {"expired": 1} and world.gateway.texts() == []
    assert (world.record(event)["status"], world.record(event)["error"]) == ("failed", "expired")


def test_a_p1_report_left_pending_is_reported_once(world: World):
    event = VaccinationCompleted(
        event_id=uuid.uuid4().hex,
        occurred_at=NOW,
        appointment_id=uuid.uuid4().hex,
        patient_key=PATIENT,
        product="comirnaty",
        lot_number="FK1234",
        dose_number=1,
        dose_kind="primary",
        point_id="pt-00001",
        given_on=date(2026, 12, 2),
    )
    world.p1.down = True
    for _ in range(3):
        with pytest.raises(DependencyUnavailableError):
            world.reporter.report(event, b"{}", {}, NOW)
    report = world.store.data(P1_REPORTS, event.appointment_id)
    assert report["status"] == "pending" and PESEL not in str(report)
    world.p1.down = False
    assert world.sweeper.run(NOW + timedelta(minutes=5))["p1_reports"] == {}  # not due yet
    assert world.sweeper.run(NOW + timedelta(minutes=16))["p1_reports"] == {"reported": 1}
    (record,) = world.p1.records.values()
    assert record.pesel == PESEL  # decrypted for P1, and only for P1
    assert world.store.data(P1_REPORTS, event.appointment_id)["status"] == "reported"
    assert world.sweeper.run(NOW + timedelta(hours=1))["p1_reports"] == {}
