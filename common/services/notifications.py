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

Nothing stays `sending`. The claim records when the record is due again (`retry_after`, a few
minutes on: Pub/Sub's and Cloud Tasks' own retries come first, and every failed attempt
moves it on) and the recipient, encrypted (`to_enc`, common/adapters/vault.py), so that the
scheduled sweeper (common/services/sweeper.py) can finish any record whose deliveries all
gave up (a dead-lettered event, a Firestore outage that ate the bookkeeping) through this
same protocol: same id, same text, one SMS.

Which number. A patient's notification goes to the patient's own verified number
(`patients/{key}.phone`; fetched from the patient's P1/IKP profile when there is none yet:
common/services/contacts.py). A booking made in the SMS dialog is confirmed there as well,
unless the dialog that booked it ran on that very number (its reply was the confirmation):
a booking made by someone else's phone always reaches the patient's own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from pydantic import ValidationError

from common import structured_log as log
from common.adapters.firestore_store import (
    APPOINTMENTS,
    NOTIFICATIONS,
    PATIENTS,
    POINTS,
    SMS_DIALOGS,
)
from common.adapters.http_errors import PeerConflictError, PeerError
from common.adapters.sms_client import SmsClient
from common.adapters.vault import FieldVault, VaultError
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
from common.domain.phones import canonical_phone
from common.domain.rulebook import RuleBook
from common.services.integration_log import MalformedMessageError, decode_push
from common.services.unit_of_work import RetryPolicy, UnitOfWork, UnitOfWorkRunner

FINAL_STATUSES = frozenset({"sent", "failed", "skipped"})
# A `sending` record is due for the sweeper this long after its last attempt (the push
# subscription's own retries, 1-60 s apart, are over by then or still moving it on).
RESUME_AFTER = timedelta(minutes=5)
# How long a notification record is kept (Firestore TTL on expires_at): what an operator needs
# to answer "was I texted?", no longer (docs/retention.md).
NOTIFICATION_KEEP = timedelta(days=60)
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
    """A keyed hash of a phone number for document ids (never the number itself); one number
    written two ways (`+48600100200`, `600 100 200`) is one key."""
    normalized = canonical_phone(phone) or normalize_phone(phone) or phone
    return hmac.new(secret, f"phone:{normalized}".encode(), hashlib.sha256).hexdigest()[:32]


def short_hash(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _record_contended() -> Exception:
    return DependencyUnavailableError("the notification record keeps changing; retry later")


def recipient_context(notification_id: str) -> str:
    return f"notification-to|{notification_id}"


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class SmsSender:
    """Sends one SMS per notification id, whatever the number of attempts (module docstring)."""

    def __init__(
        self, units: UnitOfWorkRunner, sms: SmsClient, vault: FieldVault | None = None
    ) -> None:
        self.units = units
        self.sms = sms
        # Encrypts the recipient kept on a pending record (for the sweeper); without it the
        # record names no recipient and a sweep falls back to the patient's number.
        self.vault = vault

    def status(self, notification_id: str) -> str | None:
        found = self.units.reader().get(NOTIFICATIONS, notification_id)
        return found.data.get("status") if found is not None else None

    def skip(self, notification_id: str, reason: str, meta: dict[str, Any], now: datetime) -> None:
        """Record a decision not to send (operators see why nothing went out)."""

        def attempt(uow: UnitOfWork) -> str:
            record = {
                **meta,
                "status": "skipped",
                "reason": reason,
                "created_at": now,
                "expires_at": now + NOTIFICATION_KEEP,
            }
            uow.create(NOTIFICATIONS, notification_id, record)
            return "recorded"

        # Already there: a decision (or a send) recorded for this id before; it stands.
        self.units.run(attempt, on_conflict=lambda _uow: "exists", gave_up=_record_contended)

    def _claim(
        self,
        notification_id: str,
        phone: str,
        render: Callable[[], str],
        meta: dict[str, Any],
        now: datetime,
        retry_failed: bool,
        keep_text: bool,
    ) -> str | None:
        """Step 2: the text to send (claimed now, or by an attempt that may have died), or
        None when the notification is done already.

        `keep_text=False` (a one-time code): the record keeps the text's digest, not the
        text, and `render` must give the same text again (the code is derived, not random)."""

        def attempt(uow: UnitOfWork) -> str | None:
            found = uow.get(NOTIFICATIONS, notification_id)
            if found is not None:
                stored = found.data
                resendable = "text" in stored or "text_sha256" in stored
                retry = retry_failed and stored.get("status") == "failed" and resendable
                if stored.get("status") in FINAL_STATUSES and not retry:
                    return None
                return str(stored["text"]) if "text" in stored else render()
            text = render()
            record: dict[str, Any] = {
                **meta,
                "status": "sending",
                "client_message_id": notification_id,
                "created_at": now,
                "updated_at": now,
                "retry_after": now + RESUME_AFTER,
                "expires_at": now + NOTIFICATION_KEEP,
            }
            if keep_text:
                record["text"] = text
            else:
                record["text_sha256"] = text_digest(text)
            if self.vault is not None:
                record["to_enc"] = self.vault.encrypt(phone, recipient_context(notification_id))
            uow.create(NOTIFICATIONS, notification_id, record)
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
        keep_text: bool = True,
    ) -> str:
        """Returns the final status: 'sent', 'failed', 'duplicate' (or raises to be retried).

        `retry_failed` (an operator's replay from the dead-letter topic) tries a `failed`
        notification once more, under the same id and with the same text."""
        text = self._claim(notification_id, phone, render, meta, now, retry_failed, keep_text)
        if text is None:
            return "duplicate"
        return self._deliver(notification_id, phone, text, now)

    def recipient(self, record: dict[str, Any], notification_id: str) -> str | None:
        """The number a pending record is for, if it names one (encrypted on the claim)."""
        stored = record.get("to_enc")
        if not isinstance(stored, str) or self.vault is None:
            return None
        try:
            return self.vault.decrypt(stored, recipient_context(notification_id))
        except VaultError:
            return None

    def resume(
        self,
        notification_id: str,
        phone: str,
        text: str,
        now: datetime,
        fields: dict[str, Any] | None = None,
    ) -> str:
        """The sweeper's attempt at a claimed record: the stored text to the stored number,
        under the same client_message_id (the gateway sends it once even if an earlier attempt
        got through unseen). `fields` are recorded with the attempt's failure (its next due
        time, the sweeps so far)."""
        return self._deliver(notification_id, phone, text, now, fields or {})

    def _deliver(
        self,
        notification_id: str,
        phone: str,
        text: str,
        now: datetime,
        on_failure: dict[str, Any] | None = None,
    ) -> str:
        try:
            message_id = self.sms.send(phone, text, client_message_id=notification_id)
        except PeerConflictError:
            # The gateway already holds another message under this id (the phone number
            # changed between attempts): a second SMS would break the promise; stop here.
            self._record(
                notification_id,
                {
                    "status": "failed",
                    "error": "client_message_id_conflict",
                    "updated_at": now,
                    "retry_after": None,
                },
            )
            log.error("notification refused by the gateway", notification=notification_id)
            return "failed"
        except PeerError as err:
            self._record(
                notification_id,
                {"status": "failed", "error": err.code, "updated_at": now, "retry_after": None},
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
                        "retry_after": now + RESUME_AFTER,
                        **(on_failure or {}),
                    },
                    policy=BEST_EFFORT,
                )
            except (gexc.GoogleAPICallError, DependencyUnavailableError):
                pass
            raise
        self._record(
            notification_id,
            {
                "status": "sent",
                "gateway_message_id": message_id,
                "sent_at": now,
                "updated_at": now,
                "retry_after": None,
                "to_enc": None,  # done: the recipient is no longer needed
            },
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
        contacts: Any = None,  # common.services.contacts.ContactService (None: stored only)
        secret: bytes | None = None,  # PESEL_HASH_KEY: the SMS dialogs' keys
    ) -> None:
        # Reads only: what this service writes (the notification records) goes through the
        # sender's units of work; what it asks of Cloud Tasks, through the scheduler; a phone
        # found in P1, through the contacts.
        self.units = units
        self.rule_book = rule_book
        self.sender = sender
        self.reminders = reminders
        self.contacts = contacts
        self.secret = secret

    # -- reads -----------------------------------------------------------------------------
    def _doc(self, collection: str, doc_id: str | None) -> dict[str, Any] | None:
        if not doc_id:
            return None
        found = self.units.reader().get(collection, doc_id)
        return found.data if found is not None else None

    def _appointment(self, appointment_id: str | None) -> Appointment | None:
        data = self._doc(APPOINTMENTS, appointment_id)
        return Appointment.model_validate(data) if data else None

    def phone_of(self, patient_key: str, now: datetime | None = None) -> str | None:
        """The patient's own verified number: on file, else from their P1/IKP profile (then
        kept on file); None when there is none. Raises DependencyUnavailableError when P1
        would have to be asked and cannot be: the delivery is retried."""
        if self.contacts is not None and now is not None:
            return self.contacts.phone_of(patient_key, now)
        patient = self._doc(PATIENTS, patient_key) or {}
        return normalize_phone(patient.get("phone"))

    def _confirmed_in_dialog(self, event: AppointmentBooked, phone: str) -> bool:
        """Whether the SMS dialog that booked this was held on the patient's own number: its
        reply (sent, or about to be once the booking settles) is the confirmation."""
        if self.secret is None:
            return False
        dialog = self._doc(SMS_DIALOGS, phone_key(phone, self.secret)) or {}
        if dialog.get("patient_key") != event.patient_key:
            return False
        if dialog.get("state") not in ("booking", "booked"):
            return False
        booked = (dialog.get("appointment") or {}).get("appointment_id")
        offered = (dialog.get("offer") or {}).get("slot_id")
        return booked == event.appointment_id or offered == event.slot_id

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
        phone = self.phone_of(patient_key, now)
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
            phone = self.phone_of(event.patient_key, now)
            if phone is not None and self._confirmed_in_dialog(event, phone):
                # The dialog ran on the patient's own number: its reply confirmed it there.
                return self._skip(event, event.patient_key, "confirmed_in_sms_dialog", now)
            # Booked from another phone (after a code sent to the patient's): the patient's own
            # number is told, below, like any booking.
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
