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

Who is texting (docs/reliability.md item 14: a channel acts only for the person it has
verified). A phone may book only for a patient whose verified number it is
(`patients/{key}.phone`, fetched from the patient's P1/IKP profile when none is on file:
common/services/contacts.py). From any other phone, "PESEL KOD" gets one and the same answer
whatever the PESEL ("if this PESEL has a phone with us, we sent a code to it"): whether the
person exists, has a referral, a phone, or lives at that postcode is told to no one but the
person. A code goes to the patient's own number, naming the last digits of the asking phone;
returned in the dialog ("KOD 123456") within 10 minutes and 5 attempts, it binds that
conversation to that patient, and the dialog carries on as if the patient had texted. Every
booking made so is confirmed to the patient's own number as well (notify_patient). Per-phone
limits (common/services/phone_limits.py): messages per sender, "PESEL KOD" attempts per
sender (enumeration), codes per receiving number (flooding a stranger).

PESEL and phone number: validated, never logged, never in ids (keyed hashes), never echoed in
a reply. The dialog document keeps the PESEL encrypted (`pesel_enc`, common/adapters/vault.py)
while the conversation needs it (the booking), clears it once booked, and expires
(`expires_at`, Firestore TTL).
"""

from __future__ import annotations

import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc

from common import structured_log as log
from common.adapters.firestore_store import REFERRALS, SMS_DIALOGS, SMS_INBOUND
from common.adapters.sms_client import SmsInbound
from common.adapters.vault import FieldVault, VaultError
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
from common.domain.pesel import Pesel, parse_pesel, pesel_key
from common.domain.phones import canonical_phone, same_phone
from common.domain.rulebook import RuleBook
from common.domain.vaccines import VaccineCatalogue
from common.services.booking import Actor, BookAppointment, BookingService
from common.services.idempotency import Idempotency, request_fingerprint
from common.services.notifications import SmsSender, phone_key, short_hash
from common.services.phone_limits import PhoneLimits, Verdict
from common.services.search import SearchQuery, SearchService
from common.services.unit_of_work import ONCE, UnitOfWork, UnitOfWorkRunner

CLAIM_STALE_AFTER = timedelta(seconds=30)
BOOKING_STALE_AFTER = timedelta(seconds=30)
DIALOG_TTL = timedelta(days=1)
INBOUND_TTL = timedelta(days=7)
# A booking finished by another attempt meanwhile (taken over after BOOKING_STALE_AFTER) makes
# this message decide again on what that left; not a commit retry (each unit of work has the
# one retry policy), a bound on how often a message re-enters the conversation.
MAX_BOOKING_ROUNDS = 3
# Releasing a claim is a courtesy (a stale claim is taken over anyway): tried once.
SEARCH_PAGES = 3
SEARCH_DAYS = 30
CODE_TTL = timedelta(minutes=10)
CODE_ATTEMPTS = 5
_YES = {"TAK", "T", "TAK!", "OK"}
_NO = {"NIE", "N", "NASTEPNY", "NASTĘPNY", "INNY"}
_STOP = {"STOP", "KONIEC", "ANULUJ"}
_WAIT = {"CZEKAM", "CZEKAJ", "LISTA"}
_IGNORED_WORDS = {"PESEL", "KOD", "KODPOCZTOWY", "POCZTOWY"}


# -- parsing (pure) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    kind: str  # "start", "code", "yes", "no", "stop", "wait", "unknown"
    digits: str = ""
    product_word: str | None = None


def parse_command(text: str) -> Command:
    upper = text.strip().upper()
    words = re.findall(r"[^\W\d_]+", upper)
    digits = re.sub(r"\D", "", upper)
    if len(digits) == 6 and set(words) <= {"KOD"}:
        return Command("code", digits=digits)
    if not digits and len(words) == 1:
        word = words[0]
        if word in _YES:
            return Command("yes")
        if word in _NO:
            return Command("no")
        if word in _STOP:
            return Command("stop")
        if word in _WAIT:
            return Command("wait")
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
        *,
        vault: FieldVault,
        contacts: Any = None,  # common.services.contacts.ContactService: whose number is whose
        limits: PhoneLimits | None = None,
        room: Any = None,  # common.services.waiting_room.WaitingRoom: the openings' queues
        replan: Any = None,  # common.services.replan.ReplanService: TAK/NIE to a re-plan offer
        waitlist: Any = None,  # common.services.waitlist.WaitlistService: TAK/NIE to its offer
    ) -> None:
        self.units = units
        self.rule_book = rule_book  # products by age and their names: the rules at `now`
        self.booking = booking
        self.search = search
        self.idempotency = idempotency
        self.sender = sender
        self.secret = secret
        self.offer_ttl = offer_ttl
        self.vault = vault
        self.contacts = contacts
        self.limits = limits
        self.room = room
        self.replan = replan
        self.waitlist = waitlist

    # -- inbound dedupe ----------------------------------------------------------------------
    def receive(self, inbound: SmsInbound, now: datetime) -> str:
        inbound_id = short_hash("sms-inbound", inbound.message_id)
        command = parse_command(inbound.text)
        claim = self._claim(inbound_id, inbound.sender, command, now)
        if claim == "duplicate":
            return "duplicate"
        if claim != "ok":
            if claim == "over_first":  # told once a window; then silence (no SMS amplifier)
                self._reply(inbound, inbound_id, sms_texts.dialog_rate_limited(), "limit", now)
            log.info("sms dialog step", outcome="rate_limited")
            return "rate_limited"
        try:
            owner = self._owner_phone(command, now)
            answered = self._replan_answer(inbound, command, now) or self._wait(
                inbound, command, now
            )
            reply, outcome = answered or self._converse(inbound, command, owner, now)
            if reply:
                self._reply(inbound, inbound_id, reply, outcome, now)
            if outcome in ("code_sent", "replayed"):
                self._send_owner_code(inbound, now)
        except BaseException:
            self._release(inbound_id)
            raise
        self._done(inbound_id, outcome, now)
        log.info("sms dialog step", outcome=outcome)
        return outcome

    def _replan_answer(self, inbound: SmsInbound, command: Command, now: datetime) -> Reply | None:
        """TAK or NIE to an offer sent to this number, a re-plan's (common/services/replan.py)
        or the waitlist's (common/services/waitlist.py), when this conversation has no booking
        offer of its own waiting for the answer."""
        if command.kind not in ("yes", "no"):
            return None
        key = phone_key(inbound.sender, self.secret)
        dialog = self.units.reader().get(SMS_DIALOGS, key)
        if dialog is not None and dialog.data.get("state") in ("offered", "booking"):
            return None
        for offers in (self.replan, self.waitlist):
            answered = offers.answer_by_sms(key, command.kind == "yes", now) if offers else None
            if answered is not None:
                return answered
        return None

    def _wait(self, inbound: SmsInbound, command: Command, now: datetime) -> Reply | None:
        """CZEKAM after "no free slots": the waitlist, for this conversation's patient, around
        its postcode, for its products (common/services/waitlist.py). Outside any attempt:
        joining is a unit of work of its own (joining twice keeps one place)."""
        if self.waitlist is None or command.kind != "wait":
            return None
        from common.services.booking import Actor
        from common.services.waitlist import JoinWaitlist

        key = phone_key(inbound.sender, self.secret)
        found = self.units.reader().get(SMS_DIALOGS, key)
        dialog = found.data if found is not None else {}
        pesel = self._dialog_pesel(key, dialog, now) if dialog.get("state") == "no_slots" else None
        if pesel is None or not dialog.get("postcode"):
            return sms_texts.dialog_no_offer(), "no_offer"
        products = list(dialog.get("products") or [])
        wish = JoinWaitlist(
            postcode=dialog["postcode"], products=products if len(products) <= 5 else []
        )
        actor = Actor(uid="sms", role="patient")
        self.waitlist.join(actor, pesel.value, wish, "sms", now)

        def attempt(uow: UnitOfWork) -> None:
            current = uow.get(SMS_DIALOGS, key)
            if current is not None and current.data.get("state") == "no_slots":
                uow.update(SMS_DIALOGS, key, {**self._idle("waitlisted"), "updated_at": now},
                           if_version=current.version)  # fmt: skip

        self.units.run(attempt, on_conflict=lambda _uow: None, gave_up=SmsDialogBusyError)
        return sms_texts.dialog_waitlisted(), "waitlisted"

    def _reply(
        self, inbound: SmsInbound, inbound_id: str, text: str, outcome: str, now: datetime
    ) -> None:
        dialog_key = phone_key(inbound.sender, self.secret)
        self.sender.send_once(
            f"reply-{inbound_id}",
            inbound.sender,
            lambda: text,
            {"kind": "sms.reply", "dialog": dialog_key, "outcome": outcome},
            now,
        )

    def _claim(self, inbound_id: str, sender: str, command: Command, now: datetime) -> str:
        """ "ok": this attempt handles the message; "duplicate": it was handled; busy (raised):
        in hand elsewhere; "over_first" / "over": the sender is over a limit (the claim is
        recorded done, so the gateway's redelivery is a duplicate)."""
        record = {"status": "processing", "claimed_at": now, "expires_at": now + INBOUND_TTL}
        kinds = ["inbound", "start"] if command.kind == "start" else ["inbound"]
        # A new message (the usual case) is claimed without reading it; after a conflict the
        # attempt runs again and looks at the claim that is there.
        look_first = [False]

        def attempt(uow: UnitOfWork) -> str:
            takeover = None
            if look_first[0]:
                found = uow.get(SMS_INBOUND, inbound_id)
                if found is not None:
                    if found.data.get("status") == "done":
                        return "duplicate"
                    if found.data.get("claimed_at") > now - CLAIM_STALE_AFTER:
                        raise SmsDialogBusyError()
                    takeover = found  # a claim left by an attempt that died: take it over
            verdict: Verdict = "ok"
            if self.limits is not None:
                verdict = self.limits.take(uow, self.limits.phone_doc(sender), kinds, now)
            claim = dict(record)
            if verdict != "ok":
                claim |= {"status": "done", "outcome": "rate_limited", "done_at": now}
            if takeover is not None:
                uow.update(SMS_INBOUND, inbound_id, claim, if_version=takeover.version)
            else:
                uow.create(SMS_INBOUND, inbound_id, claim)
            return verdict

        def on_conflict(_uow: UnitOfWork) -> str | None:
            look_first[0] = True
            return None

        return self.units.run(attempt, on_conflict=on_conflict, gave_up=SmsDialogBusyError)

    def _owner_phone(self, command: Command, now: datetime) -> str | None:
        """For "PESEL KOD": the verified number of the patient named (on file, or from P1),
        looked up before the conversation's unit of work (P1 is never called inside one)."""
        if command.kind != "start" or self.contacts is None:
            return None
        try:
            pesel = parse_pesel(command.digits[:11], now.astimezone(WARSAW).date())
        except InvalidPeselError:
            return None
        if postcode_of(command.digits) is None:
            return None
        return self.contacts.phone_of(pesel_key(pesel, self.secret), now, pesel=pesel)

    def _send_owner_code(self, inbound: SmsInbound, now: datetime) -> None:
        """The code this message asked for, to the patient's own number (again, on a
        redelivery: one SMS per code, the gateway dedupes by notification id)."""
        key = phone_key(inbound.sender, self.secret)
        found = self.units.reader().get(SMS_DIALOGS, key)
        dialog = found.data if found is not None else {}
        code = dialog.get("code") or {}
        if (
            dialog.get("state") != "awaiting_code"
            or code.get("issued_by") != inbound.message_id
            or not code.get("nonce")
            or not code.get("to_enc")
            or not isinstance(code.get("expires_at"), datetime)
            or code["expires_at"] <= now
        ):
            return
        try:
            owner = self.vault.decrypt(code["to_enc"], self._code_context(key))
        except VaultError:
            return
        value = self._code(key, code["nonce"])
        ending = (canonical_phone(inbound.sender) or "")[-3:]
        minutes = int(CODE_TTL.total_seconds() // 60)
        self.sender.send_once(
            f"code-{short_hash(key, code['nonce'])}",
            owner,
            lambda: sms_texts.dialog_owner_code(value, ending, minutes),
            {"kind": "sms.code", "patient_key": dialog.get("patient_key")},
            now,
            keep_text=False,
        )

    def _code(self, key: str, nonce: str) -> str:
        from common.services.contacts import one_time_code

        return one_time_code(self.secret, f"sms-dialog|{key}", nonce)

    @staticmethod
    def _code_context(key: str) -> str:
        return f"sms-code-to|{key}"

    @staticmethod
    def _pesel_context(key: str) -> str:
        return f"sms-dialog-pesel|{key}"

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
    def _converse(
        self, inbound: SmsInbound, command: Command, owner: str | None, now: datetime
    ) -> Reply:
        key = phone_key(inbound.sender, self.secret)
        for _ in range(MAX_BOOKING_ROUNDS):
            # A conflict: the dialog was created meanwhile; decide again on what is there.
            moved = self.units.run(
                lambda uow: self._move(uow, key, command, inbound, owner, now),
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
        self,
        uow: UnitOfWork,
        key: str,
        command: Command,
        inbound: SmsInbound,
        owner: str | None,
        now: datetime,
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
        step = self._decide(uow, key, command, dialog, inbound, owner, now)
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
            "pesel_enc": None,
            "patient_key": None,
            "offer": None,
            "offered": [],
            "booking_by": None,
            "booking_since": None,
            "code": None,
            "queue": None,
        }

    def _offer_expired(self, dialog: dict[str, Any], now: datetime) -> bool:
        offer = dialog.get("offer") or {}
        return offer.get("expires_at") is None or offer["expires_at"] <= now

    def _decide(
        self,
        uow: UnitOfWork,
        key: str,
        command: Command,
        dialog: dict[str, Any] | None,
        inbound: SmsInbound,
        owner: str | None,
        now: datetime,
    ) -> Step:
        state = (dialog or {}).get("state", "idle")
        if command.kind == "start":
            return self._start(uow, key, command, dialog, inbound, owner, now)
        if command.kind == "code":
            return self._check_code(uow, key, command, dialog, now)
        if command.kind == "stop":
            # The end of the conversation ends what it proved, too.
            return Step({**self._idle("stopped"), "verified_for": None}, sms_texts.dialog_stopped())
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

    def _start(
        self,
        uow: UnitOfWork,
        key: str,
        command: Command,
        dialog: dict[str, Any] | None,
        inbound: SmsInbound,
        owner: str | None,
        now: datetime,
    ) -> Step:
        today = now.astimezone(WARSAW).date()
        # What a PESEL's checksum or a postcode's format is, anyone can tell: these refusals
        # say nothing about a person.
        try:
            pesel = parse_pesel(command.digits[:11], today)
        except InvalidPeselError:
            return Step(self._idle("invalid_pesel"), sms_texts.dialog_invalid_pesel())
        postcode = postcode_of(command.digits)
        if len(command.digits) < 11 or postcode is None:
            return Step(self._idle("bad_postcode"), sms_texts.dialog_bad_postcode())
        patient_key = pesel_key(pesel, self.secret)
        if same_phone(inbound.sender, owner):
            return self._begin(uow, key, pesel, patient_key, postcode, command.product_word, now)
        if (dialog or {}).get("verified_for") == patient_key:
            # This conversation proved itself for this patient with a code already.
            return self._begin(uow, key, pesel, patient_key, postcode, command.product_word, now)
        return self._ask_for_code(
            uow, key, pesel, patient_key, postcode, command, inbound, owner, now
        )

    def _ask_for_code(
        self,
        uow: UnitOfWork,
        key: str,
        pesel: Pesel,
        patient_key: str,
        postcode: str,
        command: Command,
        inbound: SmsInbound,
        owner: str | None,
        now: datetime,
    ) -> Step:
        """Not the patient's own number: a code to the patient's number (if there is one, and
        it has not had too many today), and the same answer to the sender in every case."""
        code: dict[str, Any] = {
            "nonce": None,
            "to_enc": None,
            "issued_by": inbound.message_id,
            "expires_at": now + CODE_TTL,
            "attempts": 0,
        }
        if owner is not None:
            allowed = self.limits is None or (
                self.limits.take(uow, self.limits.phone_doc(owner), ["code"], now) == "ok"
            )
            if allowed:
                code["nonce"] = uuid.uuid4().hex
                code["to_enc"] = self.vault.encrypt(owner, self._code_context(key))
        fields = {
            **self._idle("code_sent"),
            "state": "awaiting_code",
            "pesel_enc": self.vault.encrypt(pesel.value, self._pesel_context(key)),
            "patient_key": patient_key,
            "postcode": postcode,
            "product_word": command.product_word,
            "code": code,
        }
        return Step(fields, sms_texts.dialog_code_sent())

    def _check_code(
        self,
        uow: UnitOfWork,
        key: str,
        command: Command,
        dialog: dict[str, Any] | None,
        now: datetime,
    ) -> Step:
        """KOD 123456: the code sent to the patient's number binds this conversation to them.
        A wrong code, an expired one, and one that was never sent (no number on file) all get
        the same answer."""
        dialog = dialog or {}
        code = dialog.get("code") or {}
        if dialog.get("state") != "awaiting_code" or code.get("expires_at") is None:
            return Step({"outcome": "no_code"}, sms_texts.dialog_code_wrong())
        attempts = int(code.get("attempts", 0)) + 1
        expected = self._code(key, code["nonce"]) if code.get("nonce") else None
        good = (
            expected is not None
            and code["expires_at"] > now
            and attempts <= CODE_ATTEMPTS
            and hmac.compare_digest(expected, command.digits)
        )
        if not good:
            if attempts >= CODE_ATTEMPTS or code["expires_at"] <= now:
                return Step(self._idle("code_wrong"), sms_texts.dialog_code_wrong())
            return Step(
                {"outcome": "code_wrong", "code": {**code, "attempts": attempts}},
                sms_texts.dialog_code_wrong(),
            )
        pesel = self._dialog_pesel(key, dialog, now)
        if pesel is None:
            return Step(self._idle("code_wrong"), sms_texts.dialog_code_wrong())
        step = self._begin(
            uow,
            key,
            pesel,
            dialog["patient_key"],
            dialog["postcode"],
            dialog.get("product_word"),
            now,
        )
        return Step(
            {**step.fields, "code": None, "verified_for": dialog["patient_key"]}, step.reply
        )

    def _dialog_pesel(self, key: str, dialog: dict[str, Any], now: datetime) -> Pesel | None:
        raw = dialog.get("pesel")  # a conversation of the older layout
        if isinstance(dialog.get("pesel_enc"), str):
            try:
                raw = self.vault.decrypt(dialog["pesel_enc"], self._pesel_context(key))
            except VaultError:
                return None
        if not isinstance(raw, str):
            return None
        try:
            return parse_pesel(raw, now.astimezone(WARSAW).date())
        except InvalidPeselError:
            return None

    def _begin(
        self,
        uow: UnitOfWork,
        key: str,
        pesel: Pesel,
        patient_key: str,
        postcode: str,
        product_word: str | None,
        now: datetime,
    ) -> Step:
        """The patient's own conversation (their number, or a code returned): their referral,
        their products, the first offer."""
        today = now.astimezone(WARSAW).date()
        valid_to = self._referral_valid_to(uow, patient_key, today)
        if valid_to is None:
            return Step(self._idle("no_referral"), sms_texts.dialog_no_referral())
        products = pick_products(
            self.rule_book.rules_at(now).catalogue,
            product_word,
            age_on(pesel.birth_date, today),
        )
        if not products:
            return Step(self._idle("unknown_product"), sms_texts.dialog_refused("unknown_product"))
        base = {
            **self._idle("offered"),
            "pesel_enc": self.vault.encrypt(pesel.value, self._pesel_context(key)),
            "patient_key": patient_key,
            "postcode": postcode,
            "products": products,
            "valid_to": valid_to.isoformat(),
            "appointment": None,
            "queue": None,
        }
        try:
            queued = self._through_the_queue(base, pesel, now)
            if queued is not None:
                return queued
            return self._next_offer(base, now)
        except ValidationFailedError:
            return Step(self._idle("bad_postcode"), sms_texts.dialog_bad_postcode())

    # -- a cohort opening's waiting room: the same room, the same place, as the portal's -----
    def _through_the_queue(
        self, dialog: dict[str, Any], pesel: Pesel, now: datetime
    ) -> Step | None:
        """None: go on to an offer (no opening governs this person, or their turn has come:
        the ticket is then kept on the dialog for the booking). Otherwise the step that tells
        them where they stand. A text joins the room exactly as the portal does (one place per
        person, whatever the channel), so no channel jumps the queue."""
        if self.room is None:
            return None
        opening = self.room.governing(pesel.birth_date, dialog["products"], now)
        if opening is None:
            return None
        if opening.phase(now) == "announced":
            return Step(
                self._idle("cohort_not_open"),
                sms_texts.dialog_opening_announced(opening.opens_at, opening.window_opens_at),
            )
        joined = self.room.join(
            opening.opening_id, dialog["patient_key"], pesel.birth_date, "sms", now
        )
        if joined["ticket"] is None:
            return None  # open to all since
        dialog["queue"] = {
            "opening_id": opening.opening_id,
            "ticket": joined["ticket"],
            "opens_at": opening.opens_at,
        }
        return self._queue_step(dialog, joined["position"])

    def _queue_step(self, dialog: dict[str, Any], position: dict[str, Any]) -> Step | None:
        if position["admitted"]:
            return None
        if position["expired"]:
            return Step(self._idle("turn_passed"), sms_texts.dialog_turn_passed())
        turn_at = position.get("admitted_at")
        return Step(
            {**dialog, "state": "queued", "outcome": "queued"},
            sms_texts.dialog_queued(
                dialog["queue"]["opens_at"],
                position["position"],
                position["ahead"],
                datetime.fromisoformat(turn_at) if turn_at else None,
            ),
        )

    def _queued_again(self, dialog: dict[str, Any], now: datetime) -> Step:
        """TAK while queued: the place now; the first offer once the turn has come."""
        queue = dialog.get("queue") or {}
        try:
            answer = self.room.position(
                queue["opening_id"], dialog["patient_key"], queue["ticket"], now
            )
        except (DomainError, KeyError, TypeError):
            return Step(self._idle("turn_passed"), sms_texts.dialog_turn_passed())
        step = self._queue_step(dialog, answer["position"])
        if step is not None:
            return step
        try:
            return self._next_offer(dialog, now)
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
            fields = {**self._idle("no_slots"), "appointment": dialog.get("appointment")}
            if self.waitlist is not None:
                # Kept for a CZEKAM (the waitlist books by PESEL); the dialog expires in a day.
                kept = ("pesel_enc", "patient_key", "postcode", "products")
                fields |= {"state": "no_slots", **{k: dialog.get(k) for k in kept}}
            return Step(fields, sms_texts.dialog_no_slots(self.waitlist is not None))
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
            **{
                k: dialog.get(k)
                for k in ("pesel_enc", "patient_key", "postcode", "products", "queue")
            },
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
        if state == "queued" and dialog is not None and version is not None:
            step = self._queued_again(dialog, now)
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
        pesel = self._dialog_pesel(key, dialog, now)
        if pesel is None:
            step = Step(self._idle("expired"), sms_texts.dialog_expired())
            return self._settle(key, dialog, step, inbound.message_id, now)
        command = BookAppointment(
            pesel=pesel.value,
            slot_id=offer["slot_id"],
            channel="sms",
            actor=Actor(uid=f"sms-{key[:16]}", role="patient"),
            queue_ticket=(dialog.get("queue") or {}).get("ticket"),
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
                "pesel_enc": None,  # the conversation's purpose is served: keep no more
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
