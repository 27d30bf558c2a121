"""Booking by SMS, as the original's short number did: PESEL and postcode in, an offer out,
TAK books it, NIE offers the next one.

The gateway delivers each incoming SMS at least once (sometimes twice, sometimes late), and a
person may answer twice or change their mind, so every step is guarded:

- Inbound dedupe: `sms_inbound/{hash(message_id)}` is created (precondition) before anything
  else. A copy of a message already handled is acknowledged and ignored; a copy arriving while
  the first is still being handled gets 409 (the gateway retries later); a claim left by a
  crashed attempt is taken over after `CLAIM_STALE_AFTER`. A failure releases the claim so
  the gateway's retry can do the work.
- Dialog state: one document per phone, `sms_dialogs/{hmac(phone)}`, changed only by
  `create()` or by `update()` with a `last_update_time` precondition, so two messages of
  one conversation handled at once cannot both move it: the loser re-reads and decides again
  on the new state (a NIE that arrives after TAK booked finds `booked` and skips nothing).
- TAK is two-phase: `offered -> booking` (precondition) and only then the booking, whose
  idempotency key is the offer id, so a duplicated TAK, or a retry after a crash in the
  middle, books once and replays the same answer; then `booking -> booked`.
- Replies: sent through the notification protocol under `reply-{hash(message_id)}`, and the
  dialog keeps the last reply with the id of the message it answered, so a redelivered
  message gets the same reply, once.

Every Firestore step is a unit of work (common/services/unit_of_work.py): the inbound claim,
each move of the dialog (its reads, the decision and the guarded write in one attempt, run
again from its reads when the dialog changed meanwhile), the end of a booking, the inbound's
`done`. The booking (BookingService, its own unit of work and idempotency key) and the reply
(an SMS) happen between them, never inside an attempt, which may run more than once.

PESEL and phone number: validated, never logged, never in ids (keyed hashes), never echoed in
a reply. The dialog document keeps the PESEL while the conversation lasts (booking needs it)
and expires with it (`expires_at`, Firestore TTL).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc

from common import structured_log as log
from common.adapters.firestore_store import REFERRALS, SMS_DIALOGS, SMS_INBOUND
from common.adapters.sms_client import SmsInbound
from common.domain import sms_texts
from common.domain.calendar import WARSAW
from common.domain.eligibility import age_on
from common.domain.errors import (
    AlreadyBookedError,
    DomainError,
    InvalidPeselError,
    SlotUnavailableError,
    SmsDialogBusyError,
    ValidationFailedError,
)
from common.domain.pesel import parse_pesel, pesel_key
from common.domain.rulebook import RuleBook
from common.domain.vaccines import VaccineCatalogue
from common.services.booking import Actor, BookAppointment, BookingService
from common.services.idempotency import Idempotency, request_fingerprint
from common.services.notifications import SmsSender, phone_key, short_hash
from common.services.search import SearchQuery, SearchService
from common.services.unit_of_work import RetryPolicy, UnitOfWork, UnitOfWorkRunner

CLAIM_STALE_AFTER = timedelta(seconds=30)
BOOKING_STALE_AFTER = timedelta(seconds=30)
DIALOG_TTL = timedelta(days=1)
INBOUND_TTL = timedelta(days=7)
# A booking finished by another attempt meanwhile (taken over after BOOKING_STALE_AFTER) makes
# this message decide again on what that left; not a commit retry (each unit of work has the
# one retry policy), a bound on how often a message re-enters the conversation.
MAX_BOOKING_ROUNDS = 3
# Releasing a claim is a courtesy (a stale claim is taken over anyway): tried once.
ONCE = RetryPolicy(attempts=1)
SEARCH_PAGES = 3
SEARCH_DAYS = 30
_YES = {"TAK", "T", "TAK!", "OK"}
_NO = {"NIE", "N", "NASTEPNY", "NASTĘPNY", "INNY"}
_STOP = {"STOP", "KONIEC", "ANULUJ"}
_IGNORED_WORDS = {"PESEL", "KOD", "KODPOCZTOWY", "POCZTOWY"}


# -- parsing (pure) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    kind: str  # "start", "yes", "no", "stop", "unknown"
    digits: str = ""
    product_word: str | None = None


def parse_command(text: str) -> Command:
    upper = text.strip().upper()
    words = re.findall(r"[^\W\d_]+", upper)
    digits = re.sub(r"\D", "", upper)
    if not digits and len(words) == 1:
        word = words[0]
        if word in _YES:
            return Command("yes")
        if word in _NO:
            return Command("no")
        if word in _STOP:
            return Command("stop")
    if digits:
        product = next((w for w in words if w not in _IGNORED_WORDS), None)
        return Command("start", digits=digits, product_word=product)
    return Command("unknown")


def postcode_of(digits: str) -> str | None:
    """The five digits after the PESEL as NN-NNN (dashes and spaces are already gone)."""
    rest = digits[11:]
    return f"{rest[:2]}-{rest[2:]}" if len(rest) == 5 else None


def pick_products(catalogue: VaccineCatalogue, word: str | None, age: int) -> list[str]:
    """The product named in the SMS, else every product the patient's age allows (the
    nearest slot of any of them is offered; the booking enforces the finer rules)."""
    if word:
        wanted = word.lower()
        for product in catalogue.products:
            names = {product.code, product.name.split()[0].lower(), product.manufacturer.lower()}
            if wanted in names or any(n.startswith(wanted) for n in names if len(wanted) >= 4):
                return [product.code]
        return []
    return [p.code for p in catalogue.for_age(age)]


# -- the service ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """A decided transition: the new dialog fields and the reply."""

    fields: dict[str, Any]
    reply: str


@dataclass(frozen=True)
class Booking:
    """The dialog is in `booking` for its offer: book it (outside any attempt), then finish."""

    dialog: dict[str, Any]


Reply = tuple[str | None, str]


class SmsDialogService:
    def __init__(
        self,
        units: UnitOfWorkRunner,
        rule_book: RuleBook,
        booking: BookingService,
        search: SearchService,
        idempotency: Idempotency,
        sender: SmsSender,
        secret: bytes,
        offer_ttl: timedelta = timedelta(minutes=10),
    ) -> None:
        self.units = units
        self.rule_book = rule_book  # products by age and their names: the rules at `now`
        self.booking = booking
        self.search = search
        self.idempotency = idempotency
        self.sender = sender
        self.secret = secret
        self.offer_ttl = offer_ttl

    # -- inbound dedupe ----------------------------------------------------------------------
    def receive(self, inbound: SmsInbound, now: datetime) -> str:
        inbound_id = short_hash("sms-inbound", inbound.message_id)
        if not self._claim(inbound_id, now):
            return "duplicate"
        try:
            reply, outcome = self._converse(inbound, now)
            if reply:
                dialog_key = phone_key(inbound.sender, self.secret)
                self.sender.send_once(
                    f"reply-{inbound_id}",
                    inbound.sender,
                    lambda: reply,
                    {"kind": "sms.reply", "dialog": dialog_key, "outcome": outcome},
                    now,
                )
        except BaseException:
            self._release(inbound_id)
            raise
        self._done(inbound_id, outcome, now)
        log.info("sms dialog step", outcome=outcome)
        return outcome

    def _claim(self, inbound_id: str, now: datetime) -> bool:
        """True: this attempt handles the message; False: it was handled; busy: in hand."""
        record = {"status": "processing", "claimed_at": now, "expires_at": now + INBOUND_TTL}
        # A new message (the usual case) is claimed without a read; after a conflict the
        # attempt runs again and looks at the claim that is there.
        look_first = [False]

        def attempt(uow: UnitOfWork) -> bool:
            if look_first[0]:
                found = uow.get(SMS_INBOUND, inbound_id)
                if found is not None:
                    if found.data.get("status") == "done":
                        return False
                    if found.data.get("claimed_at") > now - CLAIM_STALE_AFTER:
                        raise SmsDialogBusyError()
                    # A claim left by an attempt that died: take it over (if still as read).
                    uow.update(SMS_INBOUND, inbound_id, record, if_version=found.version)
                    return True
            uow.create(SMS_INBOUND, inbound_id, record)
            return True

        def on_conflict(_uow: UnitOfWork) -> bool | None:
            look_first[0] = True
            return None

        return self.units.run(attempt, on_conflict=on_conflict, gave_up=SmsDialogBusyError)

    def _release(self, inbound_id: str) -> None:
        def attempt(uow: UnitOfWork) -> None:
            found = uow.get(SMS_INBOUND, inbound_id)
            if found is not None and found.data.get("status") == "processing":
                uow.delete(SMS_INBOUND, inbound_id, if_version=found.version)

        try:
            self.units.run(attempt, gave_up=SmsDialogBusyError, policy=ONCE)
        except (gexc.GoogleAPICallError, SmsDialogBusyError):
            pass  # taken over after CLAIM_STALE_AFTER anyway

    def _done(self, inbound_id: str, outcome: str, now: datetime) -> None:
        def attempt(uow: UnitOfWork) -> None:
            uow.update(
                SMS_INBOUND, inbound_id, {"status": "done", "outcome": outcome, "done_at": now}
            )

        self.units.run(attempt, gave_up=SmsDialogBusyError)

    # -- the conversation ------------------------------------------------------------------
    def _converse(self, inbound: SmsInbound, now: datetime) -> Reply:
        key = phone_key(inbound.sender, self.secret)
        command = parse_command(inbound.text)
        for _ in range(MAX_BOOKING_ROUNDS):
            # A conflict: the dialog was created meanwhile; decide again on what is there.
            moved = self.units.run(
                lambda uow: self._move(uow, key, command, inbound, now),
                on_conflict=lambda _uow: None,
                gave_up=SmsDialogBusyError,
            )
            if not isinstance(moved, Booking):
                return moved
            finished = self._finish_booking(key, moved.dialog, inbound, now)
            if finished is not None:
                return finished
        raise SmsDialogBusyError()

    def _move(
        self, uow: UnitOfWork, key: str, command: Command, inbound: SmsInbound, now: datetime
    ) -> Reply | Booking:
        """One attempt: read the dialog, decide, stage the guarded write."""
        found = uow.get(SMS_DIALOGS, key)
        dialog = found.data if found is not None else None
        version = found.version if found is not None else None
        if dialog and dialog.get("last_message_id") == inbound.message_id:
            return dialog.get("last_reply"), "replayed"
        if dialog and dialog.get("state") == "booking":
            mine = dialog.get("booking_by") == inbound.message_id
            stale = dialog.get("booking_since") < now - BOOKING_STALE_AFTER
            if not (mine or stale):
                raise SmsDialogBusyError()
            # Finish the booking this message (or a dead attempt) started.
            return Booking(dialog)
        if command.kind == "yes":
            return self._yes(uow, key, dialog, version, inbound, now)
        step = self._decide(uow, command, dialog, now)
        return self._stage(uow, key, version, step, inbound.message_id, now)

    def _stage(
        self,
        uow: UnitOfWork,
        key: str,
        version: datetime | None,
        step: Step,
        message_id: str,
        now: datetime,
    ) -> Reply:
        """Stage the step, guarded by the dialog's version read (none: it must not exist)."""
        fields = {
            **step.fields,
            "last_message_id": message_id,
            "last_reply": step.reply,
            "updated_at": now,
            "expires_at": now + DIALOG_TTL,
        }
        if version is None:
            uow.create(SMS_DIALOGS, key, fields)
        else:
            uow.update(SMS_DIALOGS, key, fields, if_version=version)
        return step.reply, str(step.fields.get("outcome", "ok"))

    @staticmethod
    def _idle(outcome: str) -> dict[str, Any]:
        return {
            "state": "idle",
            "outcome": outcome,
            "pesel": None,
            "patient_key": None,
            "offer": None,
            "offered": [],
            "booking_by": None,
            "booking_since": None,
        }

    def _offer_expired(self, dialog: dict[str, Any], now: datetime) -> bool:
        offer = dialog.get("offer") or {}
        return offer.get("expires_at") is None or offer["expires_at"] <= now

    def _decide(
        self, uow: UnitOfWork, command: Command, dialog: dict[str, Any] | None, now: datetime
    ) -> Step:
        state = (dialog or {}).get("state", "idle")
        if command.kind == "start":
            return self._start(uow, command, now)
        if command.kind == "stop":
            return Step(self._idle("stopped"), sms_texts.dialog_stopped())
        if command.kind == "no":
            if state == "booked":
                return Step(
                    {"outcome": "already_booked"},
                    sms_texts.dialog_already_booked(self._booked_at(dialog)),
                )
            if state != "offered":
                return Step({"outcome": "no_offer"}, sms_texts.dialog_no_offer())
            assert dialog is not None
            if self._offer_expired(dialog, now):
                return Step(self._idle("expired"), sms_texts.dialog_expired())
            return self._next_offer(dialog, now)
        return Step({"outcome": "help"}, sms_texts.dialog_help())

    @staticmethod
    def _booked_at(dialog: dict[str, Any] | None) -> datetime | None:
        booked = (dialog or {}).get("appointment") or {}
        raw = booked.get("starts_at")
        return datetime.fromisoformat(raw) if isinstance(raw, str) else raw

    def _start(self, uow: UnitOfWork, command: Command, now: datetime) -> Step:
        today = now.astimezone(WARSAW).date()
        try:
            pesel = parse_pesel(command.digits[:11], today)
        except InvalidPeselError:
            return Step(self._idle("invalid_pesel"), sms_texts.dialog_invalid_pesel())
        postcode = postcode_of(command.digits)
        if len(command.digits) < 11 or postcode is None:
            return Step(self._idle("bad_postcode"), sms_texts.dialog_bad_postcode())
        patient_key = pesel_key(pesel, self.secret)
        valid_to = self._referral_valid_to(uow, patient_key, today)
        if valid_to is None:
            return Step(self._idle("no_referral"), sms_texts.dialog_no_referral())
        products = pick_products(
            self.rule_book.rules_at(now).catalogue,
            command.product_word,
            age_on(pesel.birth_date, today),
        )
        if not products:
            return Step(self._idle("unknown_product"), sms_texts.dialog_refused("unknown_product"))
        base = {
            **self._idle("offered"),
            "pesel": pesel.value,
            "patient_key": patient_key,
            "postcode": postcode,
            "products": products,
            "valid_to": valid_to.isoformat(),
            "appointment": None,
        }
        try:
            return self._next_offer(base, now)
        except ValidationFailedError:
            return Step(self._idle("bad_postcode"), sms_texts.dialog_bad_postcode())

    @staticmethod
    def _referral_valid_to(uow: UnitOfWork, patient_key: str, today: date) -> date | None:
        valid = []
        for found in uow.query(REFERRALS, ("patient_key", "==", patient_key)):
            referral = found.data.get("referral") or {}
            valid_to = date.fromisoformat(str(referral.get("valid_to")))
            if referral.get("status") == "active" and valid_to >= today:
                valid.append(valid_to)
        return max(valid) if valid else None

    def _next_offer(self, dialog: dict[str, Any], now: datetime) -> Step:
        """An offer of the nearest free slot not offered before in this dialog."""
        offered = list(dialog.get("offered") or [])
        found = self._find_slot(dialog, set(offered), now)
        if found is None:
            return Step(
                {**self._idle("no_slots"), "appointment": dialog.get("appointment")},
                sms_texts.dialog_no_slots(),
            )
        slot, point = found
        starts_at = datetime.fromisoformat(slot["starts_at"])
        offer = {
            "offer_id": uuid.uuid4().hex,
            "slot_id": slot["slot_id"],
            "point_id": slot["point_id"],
            "starts_at": starts_at,
            "expires_at": now + self.offer_ttl,
            "point": point,
        }
        minutes = int(self.offer_ttl.total_seconds() // 60)
        product = self.rule_book.rules_at(now).catalogue.get(slot["product"]).name
        text = sms_texts.dialog_offer(product, starts_at, point, minutes)
        fields = {
            **{k: dialog.get(k) for k in ("pesel", "patient_key", "postcode", "products")},
            "valid_to": dialog.get("valid_to"),
            "state": "offered",
            "outcome": "offered",
            "offer": offer,
            "offered": [*offered, slot["slot_id"]],
            "booking_by": None,
            "booking_since": None,
        }
        return Step(fields, text)

    def _find_slot(
        self, dialog: dict[str, Any], excluded: set[str], now: datetime
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        today = now.astimezone(WARSAW).date()
        valid_to = date.fromisoformat(dialog["valid_to"])
        products = list(dialog.get("products") or [])
        cursor = None
        for _ in range(SEARCH_PAGES):
            query = SearchQuery(
                postcode=dialog["postcode"],
                product=products[0] if len(products) == 1 else None,
                date_to=min(valid_to, today + timedelta(days=SEARCH_DAYS)),
                limit=5,
                cursor=cursor,
            )
            page = self.search.search(query, now)
            for item in page["items"]:
                point = {k: item["point"].get(k) for k in ("name", "street", "postcode", "place")}
                for slot in item["earliest_slots"]:
                    if slot["slot_id"] not in excluded and slot["product"] in products:
                        return slot, point
            cursor = page.get("next_cursor")
            if not cursor:
                return None
        return None

    # -- TAK ----------------------------------------------------------------------------------
    def _yes(
        self,
        uow: UnitOfWork,
        key: str,
        dialog: dict[str, Any] | None,
        version: datetime | None,
        inbound: SmsInbound,
        now: datetime,
    ) -> Reply | Booking:
        state = (dialog or {}).get("state", "idle")
        if state == "booked":
            step = Step(
                {"outcome": "already_booked"},
                sms_texts.dialog_already_booked(self._booked_at(dialog)),
            )
            return self._stage(uow, key, version, step, inbound.message_id, now)
        if state != "offered" or dialog is None or version is None:
            step = Step({"outcome": "no_offer"}, sms_texts.dialog_no_offer())
            return self._stage(uow, key, version, step, inbound.message_id, now)
        if self._offer_expired(dialog, now):
            step = Step(self._idle("expired"), sms_texts.dialog_expired())
            return self._stage(uow, key, version, step, inbound.message_id, now)
        # Phase 1: offered -> booking, guarded by the version we decided on.
        booking = {"state": "booking", "booking_by": inbound.message_id, "booking_since": now}
        uow.update(SMS_DIALOGS, key, booking, if_version=version)
        return Booking({**dialog, **booking})

    def _finish_booking(
        self, key: str, dialog: dict[str, Any], inbound: SmsInbound, now: datetime
    ) -> Reply | None:
        """Phase 2: book the offer (idempotent by offer id), then booking -> booked."""
        offer = dialog["offer"]
        command = BookAppointment(
            pesel=dialog["pesel"],
            slot_id=offer["slot_id"],
            channel="sms",
            actor=Actor(uid=f"sms-{key[:16]}", role="patient"),
        )
        fingerprint = request_fingerprint(
            "sms.book", {"slot_id": offer["slot_id"], "patient_key": dialog["patient_key"]}
        )
        try:
            response = self.idempotency.run(
                caller_uid="sms-dialog",
                key=offer["offer_id"],
                fingerprint=fingerprint,
                now=now,
                action=lambda idem: self.booking.book(command, now, idem),
            )
        except SlotUnavailableError:
            # Taken since the offer: offer the next one straight away.
            step = self._next_offer(dialog, now)
            if step.fields.get("state") == "offered":
                step = Step(step.fields, sms_texts.dialog_taken_then_offer(step.reply))
            return self._settle(key, dialog, step, inbound.message_id, now)
        except AlreadyBookedError:
            step = Step(self._idle("already_booked"), sms_texts.dialog_refused("already_booked"))
            return self._settle(key, dialog, step, inbound.message_id, now)
        except DomainError as err:
            if err.http_status >= 500 or isinstance(err, SmsDialogBusyError):
                raise
            step = Step(self._idle(f"refused:{err.code}"), sms_texts.dialog_refused(err.code))
            return self._settle(key, dialog, step, inbound.message_id, now)
        appointments = response.body.get("appointments") or []
        first = appointments[0]
        second = next((a for a in appointments[1:] if a.get("dose_number") == 2), None)
        starts_at = datetime.fromisoformat(first["starts_at"])
        product = self.rule_book.rules_at(now).catalogue.get(first["product"]).name
        reply = sms_texts.dialog_booked(
            product,
            int(first["dose_number"]),
            starts_at,
            offer.get("point"),
            datetime.fromisoformat(second["starts_at"]) if second else None,
        )
        step = Step(
            {
                "state": "booked",
                "outcome": "booked",
                "pesel": None,  # the conversation's purpose is served: keep no more than needed
                "appointment": {
                    "appointment_id": first["appointment_id"],
                    "starts_at": first["starts_at"],
                },
                "booking_by": None,
                "booking_since": None,
            },
            reply,
        )
        return self._settle(key, dialog, step, inbound.message_id, now)

    def _settle(
        self, key: str, dialog: dict[str, Any], step: Step, message_id: str, now: datetime
    ) -> Reply | None:
        """End the booking with `step` if the dialog is still in it; None: decide again."""
        offer_id = dialog["offer"]["offer_id"]

        def attempt(uow: UnitOfWork) -> Reply | None:
            found = uow.get(SMS_DIALOGS, key)
            current = found.data if found is not None else {}
            still_ours = (
                current.get("state") == "booking"
                and current.get("booking_by") == dialog.get("booking_by")
                and (current.get("offer") or {}).get("offer_id") == offer_id
            )
            if found is None or not still_ours:
                # Someone finished it meanwhile; the booking stands (idempotent by offer id)
                # and deciding again on the new state replays it.
                return None
            return self._stage(uow, key, found.version, step, message_id, now)

        return self.units.run(attempt, gave_up=SmsDialogBusyError)
