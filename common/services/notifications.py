"""SMS notifications of appointment events, sent at most once per event.

The protocol that makes "never two SMS for one event" hold under at-least-once delivery
(Pub/Sub push redelivers; two deliveries may run at the same time; a process may die anywhere):

1. The notification has a deterministic id: `{event_id}-p` for the patient of an event,
   `reminder-...` for a reminder, `reply-...` for a dialog reply. It names both the
   Firestore record `notifications/{id}` and the gateway's `client_message_id`.
2. Claim: `create()` the record with status `sending` and the rendered text (a create
   precondition: one winner). A loser, or a redelivery, reads the record: `sent`, `failed`
   or `skipped` means done (acknowledge, send nothing); `sending` means "the other attempt
   may have died": carry on with the *stored* text.
3. Send through the gateway with `client_message_id` = the notification id. The gateway
   records and sends one message per id and answers a repeat with the first message's id,
   so the two attempts of step 2 (or a retry after a crash between send and step 4) still
   make one SMS. The stored text is reused so the repeat is byte-identical (the gateway
   refuses the same id with another text).
4. Mark `sent` with the gateway's message id.

A gateway that is down or slow (timeout, 5xx, 429) raises DependencyUnavailableError: the
record stays `sending`, the push gets a non-2xx answer and Pub/Sub redelivers with backoff;
after `max_delivery_attempts` the message goes to `notifications-dead-letter`. A 4xx from the
gateway (a malformed number) will not get better by retrying: the record becomes `failed`.

Each Firestore step is its own unit of work (common/services/unit_of_work.py): the claim of
step 2 (a `create()` whose conflict means "already claimed: look at its state"), then the
outcome of step 4 (or `failed`, or the attempt count). The send itself is never inside an
attempt: an attempt may run more than once, an SMS must not.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from pydantic import ValidationError

from common import structured_log as log
from common.adapters.firestore_store import APPOINTMENTS, NOTIFICATIONS, PATIENTS, POINTS
from common.adapters.http_errors import PeerConflictError, PeerError
from common.adapters.sms_client import SmsClient
from common.domain import sms_texts
from common.domain.appointments import Appointment, AppointmentStatus
from common.domain.errors import DependencyUnavailableError
from common.domain.events import (
    EVENT_TYPES,
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentDisplaced,
    AppointmentRescheduled,
    DomainEvent,
)
from common.domain.rulebook import RuleBook
from common.services.integration_log import MalformedMessageError, decode_push
from common.services.unit_of_work import RetryPolicy, UnitOfWork, UnitOfWorkRunner

FINAL_STATUSES = frozenset({"sent", "failed", "skipped"})
HANDLED_EVENTS = frozenset(
    {
        AppointmentBooked.event_type,
        AppointmentRescheduled.event_type,
        AppointmentCancelled.event_type,
        AppointmentDisplaced.event_type,
    }
)
PATIENT_SUFFIX = "p"
# A record of what went wrong is best effort: tried once, never in the way of the real error.
BEST_EFFORT = RetryPolicy(attempts=1)
_NON_DIGITS = re.compile(r"[^0-9+]")


def normalize_phone(raw: str | None) -> str | None:
    """'+48 600 000 001' -> '+48600000001'; None when it cannot be a phone number."""
    if not raw:
        return None
    phone = _NON_DIGITS.sub("", raw)
    return phone if re.fullmatch(r"\+?[0-9]{9,15}", phone) else None


def phone_key(phone: str, secret: bytes) -> str:
    """A keyed hash of a phone number for document ids (never the number itself)."""
    normalized = normalize_phone(phone) or phone
    return hmac.new(secret, f"phone:{normalized}".encode(), hashlib.sha256).hexdigest()[:32]


def short_hash(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _record_contended() -> Exception:
    return DependencyUnavailableError("the notification record keeps changing; retry later")


class SmsSender:
    """Sends one SMS per notification id, whatever the number of attempts (module docstring)."""

    def __init__(self, units: UnitOfWorkRunner, sms: SmsClient) -> None:
        self.units = units
        self.sms = sms

    def status(self, notification_id: str) -> str | None:
        found = self.units.reader().get(NOTIFICATIONS, notification_id)
        return found.data.get("status") if found is not None else None

    def skip(self, notification_id: str, reason: str, meta: dict[str, Any], now: datetime) -> None:
        """Record a decision not to send (operators see why nothing went out)."""

        def attempt(uow: UnitOfWork) -> str:
            record = {**meta, "status": "skipped", "reason": reason, "created_at": now}
            uow.create(NOTIFICATIONS, notification_id, record)
            return "recorded"

        # Already there: a decision (or a send) recorded for this id before; it stands.
        self.units.run(attempt, on_conflict=lambda _uow: "exists", gave_up=_record_contended)

    def _claim(
        self,
        notification_id: str,
        render: Callable[[], str],
        meta: dict[str, Any],
        now: datetime,
        retry_failed: bool,
    ) -> str | None:
        """Step 2: the text to send (claimed now, or by an attempt that may have died), or
        None when the notification is done already."""

        def attempt(uow: UnitOfWork) -> str | None:
            found = uow.get(NOTIFICATIONS, notification_id)
            if found is not None:
                stored = found.data
                retry = retry_failed and stored.get("status") == "failed" and "text" in stored
                if stored.get("status") in FINAL_STATUSES and not retry:
                    return None
                return str(stored["text"])
            text = render()
            uow.create(
                NOTIFICATIONS,
                notification_id,
                {
                    **meta,
                    "status": "sending",
                    "text": text,
                    "client_message_id": notification_id,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            return text

        # A conflict: another attempt claimed it meanwhile; the attempt, run again, reads its
        # state (done: nothing to do; sending: carry on with the stored text).
        return self.units.run(attempt, on_conflict=lambda _uow: None, gave_up=_record_contended)

    def _record(
        self, notification_id: str, fields: dict[str, Any], policy: RetryPolicy | None = None
    ) -> None:
        """Step 4 (or its failure): the outcome on the claimed record."""

        def attempt(uow: UnitOfWork) -> None:
            uow.update(NOTIFICATIONS, notification_id, fields)

        self.units.run(attempt, gave_up=_record_contended, policy=policy)

    def send_once(
        self,
        notification_id: str,
        phone: str,
        render: Callable[[], str],
        meta: dict[str, Any],
        now: datetime,
        retry_failed: bool = False,
    ) -> str:
        """Returns the final status: 'sent', 'failed', 'duplicate' (or raises to be retried).

        `retry_failed` (an operator's replay from the dead-letter topic) tries a `failed`
        notification once more, under the same id and with the same text."""
        text = self._claim(notification_id, render, meta, now, retry_failed)
        if text is None:
            return "duplicate"
        try:
            message_id = self.sms.send(phone, text, client_message_id=notification_id)
        except PeerConflictError:
            # The gateway already holds another message under this id (the phone number
            # changed between attempts): a second SMS would break the promise; stop here.
            self._record(
                notification_id,
                {"status": "failed", "error": "client_message_id_conflict", "updated_at": now},
            )
            log.error("notification refused by the gateway", notification=notification_id)
            return "failed"
        except PeerError as err:
            self._record(
                notification_id, {"status": "failed", "error": err.code, "updated_at": now}
            )
            log.error(
                "notification refused by the gateway",
                notification=notification_id,
                status=err.status,
                code=err.code,
            )
            return "failed"
        except Exception as err:
            try:  # best effort: the operator sees how often it was tried and why
                self._record(
                    notification_id,
                    {
                        "attempts": firestore.Increment(1),
                        "last_error": type(err).__name__,
                        "updated_at": now,
                    },
                    policy=BEST_EFFORT,
                )
            except (gexc.GoogleAPICallError, DependencyUnavailableError):
                pass
            raise
        self._record(
            notification_id,
            {"status": "sent", "gateway_message_id": message_id, "sent_at": now, "updated_at": now},
        )
        return "sent"


class NotificationService:
    """The push subscriber of appointment-events: SMS to the patient, reminder tasks."""

    def __init__(
        self,
        units: UnitOfWorkRunner,
        rule_book: RuleBook,
        sender: SmsSender,
        reminders: Any,  # common.services.reminders.ReminderScheduler (or None: no reminders)
    ) -> None:
        # Reads only: what this service writes (the notification records) goes through the
        # sender's units of work; what it asks of Cloud Tasks, through the scheduler.
        self.units = units
        self.rule_book = rule_book
        self.sender = sender
        self.reminders = reminders

    # -- reads -----------------------------------------------------------------------------
    def _doc(self, collection: str, doc_id: str | None) -> dict[str, Any] | None:
        if not doc_id:
            return None
        found = self.units.reader().get(collection, doc_id)
        return found.data if found is not None else None

    def _appointment(self, appointment_id: str | None) -> Appointment | None:
        data = self._doc(APPOINTMENTS, appointment_id)
        return Appointment.model_validate(data) if data else None

    def phone_of(self, patient_key: str) -> str | None:
        patient = self._doc(PATIENTS, patient_key) or {}
        return normalize_phone(patient.get("phone"))

    def product_name(self, code: str, now: datetime) -> str:
        """The product's name as the rules in force at `now` give it (the code if unknown)."""
        catalogue = self.rule_book.rules_at(now).catalogue
        return catalogue.get(code).name if code in catalogue else code

    @staticmethod
    def _is_current(appointment: Appointment | None, starts_at: datetime) -> bool:
        return (
            appointment is not None
            and appointment.status is AppointmentStatus.BOOKED
            and appointment.starts_at == starts_at
        )

    # -- the subscriber ----------------------------------------------------------------------
    def handle_push(self, data: dict[str, Any], now: datetime) -> str:
        """One push delivery; returns the outcome. Raises only what a redelivery can fix."""
        try:
            payload, attributes = decode_push(data)
        except MalformedMessageError as err:
            log.error("dropped a malformed message", problem=str(err))
            return "malformed"
        event_type = attributes.get("event_type") or payload.get("event_type")
        # The emulator ignores subscription filters: check the type here.
        if event_type not in HANDLED_EVENTS:
            return "ignored"
        fields = {k: v for k, v in payload.items() if k not in ("event_type", "schema_version")}
        try:
            event = EVENT_TYPES[event_type].model_validate(fields)
        except ValidationError:
            log.error("dropped an event of an unknown shape", event_type=event_type)
            return "malformed"
        # An operator's replay (emulator/replay_dead_letters.py) marks the message replay=true.
        outcome = self.handle(event, now, replay=attributes.get("replay") == "true")
        log.info("notification", event_type=event_type, event_id=event.event_id, outcome=outcome)
        return outcome

    def handle(self, event: DomainEvent, now: datetime, replay: bool = False) -> str:
        if isinstance(event, AppointmentBooked):
            return self._booked(event, now, replay)
        if isinstance(event, AppointmentRescheduled):
            return self._rescheduled(event, now, replay)
        if isinstance(event, AppointmentCancelled):
            return self._cancelled(event, now, replay)
        if isinstance(event, AppointmentDisplaced):
            return self._displaced(event, now, replay)
        return "ignored"

    def _notify(
        self,
        event: DomainEvent,
        patient_key: str,
        render: Callable[[], str],
        now: datetime,
        appointment_id: str,
        replay: bool,
    ) -> str:
        notification_id = f"{event.event_id}-{PATIENT_SUFFIX}"
        meta = {
            "kind": event.event_type,
            "event_id": event.event_id,
            "appointment_id": appointment_id,
            "patient_key": patient_key,
        }
        phone = self.phone_of(patient_key)
        if phone is None:
            self.sender.skip(notification_id, "no_phone", meta, now)
            return "skipped:no_phone"
        return self.sender.send_once(notification_id, phone, render, meta, now, retry_failed=replay)

    def _skip(self, event: DomainEvent, patient_key: str, reason: str, now: datetime) -> str:
        meta = {"kind": event.event_type, "event_id": event.event_id, "patient_key": patient_key}
        self.sender.skip(f"{event.event_id}-{PATIENT_SUFFIX}", reason, meta, now)
        return f"skipped:{reason}"

    def _booked(self, event: AppointmentBooked, now: datetime, replay: bool) -> str:
        appointment = self._appointment(event.appointment_id)
        if not self._is_current(appointment, event.starts_at):
            # Cancelled or moved before this event was handled (late or out-of-order
            # delivery): a confirmation now would contradict the later SMS.
            return self._skip(event, event.patient_key, "superseded", now)
        if self.reminders is not None:
            self.reminders.schedule(event.appointment_id, event.starts_at, now, event.event_id)
        if event.channel == "sms":
            # The SMS dialog's own reply confirmed it to the phone that booked it.
            return self._skip(event, event.patient_key, "confirmed_in_sms_dialog", now)
        if event.dose_number == 2 and event.linked_appointment_id:
            # Booked together with dose 1, whose SMS names both dates.
            return self._skip(event, event.patient_key, "in_series_sms", now)
        second = None
        if event.linked_appointment_id and event.dose_number == 1:
            linked = self._appointment(event.linked_appointment_id)
            second = linked.starts_at if linked and linked.is_active else None
        point = self._doc(POINTS, event.point_id)
        product = self.product_name(event.product, now)
        return self._notify(
            event,
            event.patient_key,
            lambda: sms_texts.booked(product, event.dose_number, event.starts_at, point, second),
            now,
            event.appointment_id,
            replay,
        )

    def _rescheduled(self, event: AppointmentRescheduled, now: datetime, replay: bool) -> str:
        from common.domain.calendar import SlotRef

        old_start = SlotRef.parse(event.from_slot_id).starts_at
        if self.reminders is not None:
            self.reminders.cancel(event.appointment_id, old_start)
        appointment = self._appointment(event.appointment_id)
        if not self._is_current(appointment, event.starts_at):
            return self._skip(event, event.patient_key, "superseded", now)
        if self.reminders is not None:
            self.reminders.schedule(event.appointment_id, event.starts_at, now, event.event_id)
        point = self._doc(POINTS, event.to_point_id)
        product = self.product_name(event.product, now)
        return self._notify(
            event,
            event.patient_key,
            lambda: sms_texts.rescheduled(product, event.dose_number, event.starts_at, point),
            now,
            event.appointment_id,
            replay,
        )

    def _cancelled(self, event: AppointmentCancelled, now: datetime, replay: bool) -> str:
        if self.reminders is not None:
            self.reminders.cancel(event.appointment_id, event.starts_at)
        appointment = self._appointment(event.appointment_id)
        with_second = False
        if appointment is not None and appointment.linked_appointment_id:
            linked = self._appointment(appointment.linked_appointment_id)
            # Cancelling dose 1 cancels dose 2 in the same commit: one SMS names both.
            same_commit = (
                linked is not None
                and linked.status is AppointmentStatus.CANCELLED
                and linked.updated_at == event.occurred_at
            )
            if same_commit and event.dose_number == 2:
                return self._skip(event, event.patient_key, "in_series_sms", now)
            with_second = same_commit and event.dose_number == 1
        product = self.product_name(event.product, now)
        return self._notify(
            event,
            event.patient_key,
            lambda: sms_texts.cancelled(product, event.dose_number, event.starts_at, with_second),
            now,
            event.appointment_id,
            replay,
        )

    def _displaced(self, event: AppointmentDisplaced, now: datetime, replay: bool) -> str:
        if self.reminders is not None:
            self.reminders.cancel(event.appointment_id, event.starts_at)
        point = self._doc(POINTS, event.point_id)
        alternatives = [
            (offer.starts_at, self._doc(POINTS, offer.point_id)) for offer in event.alternatives[:3]
        ]
        product = self.product_name(event.product, now)
        return self._notify(
            event,
            event.patient_key,
            lambda: sms_texts.displaced(product, event.starts_at, point, alternatives),
            now,
            event.appointment_id,
            replay,
        )
