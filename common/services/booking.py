"""Booking, cancelling and rescheduling: the reservation that holds under a rush.

Why seats, not counters. The official emulator locks pessimistically: two transactions that
read then write one document can both be aborted, and the Python client retries an aborted
commit five times with no backoff (measured: 20 concurrent read-modify-write transactions on
one document, 2 succeed, 18 fail). A counter per slot read and decremented in a transaction
would turn every rush into failures while seats remain; in production a counter would also be
one hot document. So a slot of capacity C is C seat documents that do not exist until claimed:
`seats/{slot_id}_{n}`. Booking reads the truth (common/services/seats.py: one aggregation
tells a full slot, one query which seats are free), then commits, with no read inside:

  create seats/{slot_id}_{n}            (precondition: does not exist; one winner per seat)
  create active_doses/{patient}_{dose}  (precondition: one active booking per patient and dose)
  create appointments/{id}
  create availability_deltas/{random}   (what search shows is folded from these, later)
  create outbox/{event_id}              (the event, in the same commit)
  create idempotency_keys/{id}          (the answer, for a retry with the same key)

A commit is all-or-nothing, preconditions included, so a losing booker changes nothing. The
unit of work (common/services/unit_of_work.py) runs the attempt; when a create() finds its
document there, `on_conflict` reads what was taken: the patient's lock (already booked), our own
earlier commit (a lost answer: replayed), or a seat (pick another, from a fresh read). Every
seat conflict means another booking succeeded, so this ends; it ends in "full" only when the
store says no seat is left. No document is written by every booker of a point: search's
free-seat counts are folded in the background (common/services/availability.py).
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from common.adapters.firestore_store import (
    ACTIVE_DOSES,
    APPOINTMENTS,
    GUARDIANS,
    PATIENTS,
    REFERRALS,
    SEATS,
    VACCINATIONS,
)
from common.domain.appointments import (
    Appointment,
    AppointmentStatus,
    Channel,
    active_dose_lock_id,
)
from common.domain.calendar import WARSAW, PointCalendar, SlotAvailability, SlotRef
from common.domain.eligibility import (
    PreviousDose,
    Referral,
    check_booking_eligibility,
    second_dose_allowed,
)
from common.domain.errors import (
    AlreadyBookedError,
    AppointmentNotFoundError,
    ForbiddenError,
    InvalidStateTransitionError,
    OverloadedError,
    SlotUnavailableError,
    ValidationFailedError,
)
from common.domain.events import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentRescheduled,
)
from common.domain.pesel import parse_pesel, pesel_key
from common.domain.reservations import SeatsReservedError
from common.domain.rulebook import RuleBook, RuleSet
from common.domain.series import DosePlan, plan_next_dose
from common.domain.vaccines import VaccineProduct, second_dose_window
from common.services.availability import stage_free_changes
from common.services.guardians import guardian_doc_id, is_minor_record
from common.services.idempotency import IdempotencyScope, StoredResponse
from common.services.seats import SeatBroker, SlotChoice, seat_document
from common.services.unit_of_work import RetryPolicy, UnitOfWork, UnitOfWorkRunner

_APPOINTMENT_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex, as new_id() makes them

# A seat conflict is resolved at once (on_conflict reads what was taken and picks again), so
# these attempts are spent only by bookers who keep losing seats to others: each loss means
# someone else booked. Past them the booker is told to retry (503), never "full".
BOOKING_RETRY = RetryPolicy(attempts=24)


@dataclass(frozen=True)
class Actor:
    """Who acts: the patient themself, a hotline agent, point staff or an admin."""

    uid: str
    role: str
    point_id: str | None = None
    reason: str | None = None
    supervisor: bool = False


@dataclass(frozen=True)
class BookAppointment:
    pesel: str
    slot_id: str
    channel: Channel
    actor: Actor
    second_slot_id: str | None = None
    queue_ticket: str | None = None  # X-Queue-Ticket, while an opening's queue governs


@dataclass(frozen=True)
class CancelAppointment:
    appointment_id: str
    actor: Actor
    channel: Channel
    patient_key: str | None = None  # set when the actor is the patient
    reason: str | None = None


@dataclass(frozen=True)
class RescheduleAppointment:
    appointment_id: str
    new_slot_id: str
    actor: Actor
    channel: Channel
    patient_key: str | None = None
    new_second_slot_id: str | None = None


@dataclass(frozen=True)
class Prepared:
    """What a booking decided before its commit (seats aside)."""

    patient_key: str
    birth_date: date
    plan: DosePlan
    referral: Referral


class Calendars(Protocol):
    """A point's calendar (slots and capacities), fresh within a second (availability.py)."""

    def calendar(self, point_id: str, fresh: bool = False) -> PointCalendar: ...


class OpeningGate(Protocol):
    """Whether an opening's waiting room lets this booking through (waiting_room.py)."""

    def __call__(
        self,
        patient_key: str,
        birth_date: date,
        ref: SlotRef,
        ticket: str | None,
        now: datetime,
    ) -> None: ...


def no_gate(patient_key: str, birth_date: date, ref: SlotRef, ticket: str | None, now) -> None:
    return None


class Alternatives(Protocol):
    """The nearest free slots of the same product, for the one who found a slot full."""

    def __call__(self, ref: SlotRef, now: datetime) -> list[dict[str, Any]]: ...


def no_alternatives(ref: SlotRef, now: datetime) -> list[dict[str, Any]]:
    return []


def response_for(appointments: Sequence[Appointment]) -> dict[str, Any]:
    return {"appointments": [a.to_api() for a in appointments]}


def slot_full(ref: SlotRef, now: datetime, alternatives: Alternatives) -> SlotUnavailableError:
    return SlotUnavailableError(
        "all seats of this slot are taken",
        details={"reason": "full", "alternatives": alternatives(ref, now)},
    )


def slot_refused(
    choice: SlotChoice, ref: SlotRef, now: datetime, alternatives: Alternatives
) -> SlotUnavailableError:
    """No seat for this booker: full, or its free seats are kept for a group they are not in
    (reserved capacity: `details.until` says when they open to all)."""
    if choice.reserved_until is None:
        return slot_full(ref, now, alternatives)
    until = choice.reserved_until
    return SeatsReservedError(
        f"the free seats of this slot are reserved for a group until {until.isoformat()}",
        details={
            "reason": "reserved",
            "until": until.isoformat(),
            "alternatives": alternatives(ref, now),
        },
    )


def _busy() -> Exception:
    return OverloadedError("this slot is very busy right now; try again shortly")


class BookingService:
    def __init__(
        self,
        units: UnitOfWorkRunner,
        calendars: Calendars,
        rule_book: RuleBook,
        pesel_secret: bytes,
        *,
        alternatives: Alternatives = no_alternatives,
        gate: OpeningGate = no_gate,
        quotas: Any = None,
        reservations: Any = None,
        broker: SeatBroker | None = None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        rng: random.Random | None = None,
    ) -> None:
        self.units = units
        self.calendars = calendars
        # Every decision (dose 1, the dose-2 window, a move) is judged by the rules in force
        # at its `now` (versioned data); `RuleBook.fixed(...)` pins one rule set in tests.
        self.rule_book = rule_book
        self.secret = pesel_secret
        self.alternatives = alternatives
        self.gate = gate
        # Booking writes per patient (common/services/quotas.py): a loop of booking and
        # cancelling, to hold seats or to probe, meets a limit; refusals cost nothing.
        self.quotas = quotas
        # Reserved capacity (common/services/reservations.py): the instance's copy of the
        # reservations in force; each claim skips seats kept for groups the patient is not in.
        self.reservations = reservations
        self.broker = broker or SeatBroker()
        self.new_id = new_id
        self.rng = rng or random.Random()

    @classmethod
    def on_firestore(
        cls,
        client: Any,
        rule_book: RuleBook,
        pesel_secret: bytes,
        publisher: Any = None,
        **options: Any,
    ) -> BookingService:
        """Booking against one Firestore client (tests and tools; wiring.py builds the rest)."""
        from common.services.availability import CalendarCache
        from common.services.unit_of_work import FirestoreUnitsOfWork

        units = FirestoreUnitsOfWork(client, publisher)
        return cls(units, CalendarCache(client), rule_book, pesel_secret, **options)

    def rules_at(self, now: datetime) -> RuleSet:
        return self.rule_book.rules_at(now)

    # -- reads ---------------------------------------------------------------------------
    def calendar(self, point_id: str) -> PointCalendar:
        return self.calendars.calendar(point_id)

    def patient_key(self, pesel: str, now: datetime) -> str:
        return pesel_key(parse_pesel(pesel, now.astimezone(WARSAW).date()), self.secret)

    def history(self, reader: UnitOfWork, patient_key: str) -> list[PreviousDose]:
        found = reader.query(VACCINATIONS, ("patient_key", "==", patient_key))
        return [PreviousDose.model_validate(d.data["dose"]) for d in found]

    def referrals(self, reader: UnitOfWork, patient_key: str) -> list[Referral]:
        found = reader.query(REFERRALS, ("patient_key", "==", patient_key))
        return [Referral.model_validate(d.data["referral"]) for d in found]

    def _history(self, patient_key: str) -> list[PreviousDose]:
        return self.history(self.units.reader(), patient_key)

    def _referrals(self, patient_key: str) -> list[Referral]:
        return self.referrals(self.units.reader(), patient_key)

    def appointments_of(self, patient_key: str) -> list[Appointment]:
        found = self.units.reader().query(APPOINTMENTS, ("patient_key", "==", patient_key))
        appointments = [Appointment.model_validate(d.data) for d in found]
        return sorted(appointments, key=lambda a: (a.starts_at, a.dose_number))

    @staticmethod
    def _load(reader: UnitOfWork, appointment_id: str) -> tuple[Appointment, datetime]:
        if not _APPOINTMENT_ID.fullmatch(appointment_id or ""):
            raise AppointmentNotFoundError()
        found = reader.get(APPOINTMENTS, appointment_id)
        if found is None or found.version is None:
            raise AppointmentNotFoundError()
        return Appointment.model_validate(found.data), found.version

    # -- book ----------------------------------------------------------------------------
    def book(
        self, cmd: BookAppointment, now: datetime, idem: IdempotencyScope | None = None
    ) -> StoredResponse:
        choices: list[SlotChoice] = []
        try:
            prepared = self.prepare(cmd, now, choices)
            return self._claim(cmd, choices, prepared, now, idem)
        finally:
            for choice in choices:
                choice.release()

    def prepare(self, cmd: BookAppointment, now: datetime, choices: list[SlotChoice]) -> Prepared:
        """Everything a booking (or a hold) decides before its commit: the seats (into
        `choices`, which the caller releases), the quota, eligibility, the dose plan."""
        today = now.astimezone(WARSAW).date()
        pesel = parse_pesel(cmd.pesel, today)
        patient_key = pesel_key(pesel, self.secret)
        first_ref = SlotRef.parse(cmd.slot_id)
        self._require_own_point(cmd.actor, first_ref)
        rules = self.rules_at(now)
        product = rules.catalogue.get(first_ref.product)
        calendar, first = self._slot(first_ref, now)
        # An opening's queue governs this cohort: only a holder whose turn it is goes on.
        self.gate(patient_key, pesel.birth_date, first_ref, cmd.queue_ticket, now)
        reader = self.units.reader()
        # The seat first: one who finds the slot full learns it from one read, writes nothing.
        rule = self._rule_of(pesel.birth_date, now)
        choices.append(SlotChoice([first], self.broker, self.rng, now=now, rule=rule))
        if not choices[0].pick(reader):
            raise slot_refused(choices[0], first_ref, now, self.alternatives)
        self._within_quota(reader, cmd.actor, patient_key, now)
        history = self.history(reader, patient_key)
        plan = plan_next_dose(history, product, rules.catalogue)
        referral = self._pick_referral(self.referrals(reader, patient_key), plan, first_ref)
        check_booking_eligibility(
            birth_date=pesel.birth_date,
            referral=referral,
            product=product,
            visit_date=first_ref.day,
            now=now,
            channel=cmd.channel,
            cohorts=rules.cohorts,
            previous_doses=history,
        )
        assert referral is not None
        if plan.books_second_dose:
            choices.append(
                self._second_dose_choice(reader, calendar, product, first_ref, cmd, now, rule)
            )
        return Prepared(patient_key, pesel.birth_date, plan, referral)

    def _claim(
        self,
        cmd: BookAppointment,
        choices: list[SlotChoice],
        prepared: Prepared,
        now: datetime,
        idem: IdempotencyScope | None,
    ) -> StoredResponse:
        plan, referral, patient_key = prepared.plan, prepared.referral, prepared.patient_key
        series_id = self.new_id()
        ids = [self.new_id() for _ in choices]
        dose_numbers = [plan.dose_number + i for i in range(len(choices))]
        lock_ids = [
            active_dose_lock_id(patient_key, plan.kind, n, plan.booster_number)
            for n in dose_numbers
        ]
        staged: list[Appointment] = []
        attempts = [0]

        def attempt(uow: UnitOfWork) -> StoredResponse:
            attempts[0] += 1
            if attempts[0] > 1:
                # A seat taken over from an expired hold that was renewed or taken meanwhile
                # fails its precondition (not a create conflict): choose it again.
                for choice in choices:
                    if choice.replaces is not None and not choice.pick(uow):
                        ref = choice.candidates[0].ref
                        raise slot_refused(choice, ref, now, self.alternatives)
            appointments = [
                Appointment(
                    appointment_id=ids[i],
                    series_id=series_id,
                    patient_key=patient_key,
                    referral_id=referral.referral_id,
                    dose_kind=plan.kind,
                    dose_number=dose_numbers[i],
                    booster_number=plan.booster_number,
                    product=c.slot.ref.product,
                    point_id=c.slot.ref.point_id,
                    slot_id=c.slot.ref.slot_id,
                    seat_id=c.seat_id,
                    starts_at=c.slot.ref.starts_at,
                    day=c.slot.ref.day,
                    channel=cmd.channel,
                    linked_appointment_id=(ids[1 - i] if len(choices) == 2 else None),
                    booked_by_role=cmd.actor.role,
                    created_at=now,
                    updated_at=now,
                )
                for i, c in enumerate(choices)
            ]
            staged[:] = appointments
            for appointment, lock_id, choice in zip(appointments, lock_ids, choices, strict=True):
                choice.stage(uow, seat_document(appointment, now))
                self.stage_claim(uow, appointment, lock_id, now, prepared.birth_date)
            stage_free_changes(uow, [(a.slot_id, -1) for a in appointments], now)
            self._count_write(uow, patient_key, now)
            uow.publish(AppointmentBooked.about(a, occurred_at=now) for a in appointments)
            uow.audit(cmd.actor, "appointment.book", appointments, now)
            return uow.respond(StoredResponse(201, response_for(appointments)))

        def on_conflict(uow: UnitOfWork) -> StoredResponse | None:
            """After ALREADY_EXISTS: was it our own landed commit, the patient, or a seat?"""
            keys = [(ACTIVE_DOSES, i) for i in lock_ids] + [(SEATS, c.seat_id) for c in choices]
            state = uow.get_all(keys)
            ours = {a.appointment_id for a in staged}
            for lock_id in lock_ids:
                holder = state[(ACTIVE_DOSES, lock_id)]
                if holder is not None:
                    if holder.data["appointment_id"] in ours:
                        return StoredResponse(201, response_for(staged))  # a lost answer
                    raise AlreadyBookedError(
                        "this patient already has an active booking for this dose",
                        details={"appointment_id": holder.data["appointment_id"]},
                    )
            for number, choice in enumerate(choices):
                if state[(SEATS, choice.seat_id)] is not None and not choice.pick(uow):
                    if number == 0:
                        ref = choice.candidates[0].ref
                        raise slot_refused(choice, ref, now, self.alternatives)
                    raise SlotUnavailableError(
                        "no free slot for the second dose at this point in the allowed window",
                        details={"reason": "no_second_dose_slot"},
                    )
            return None

        return self.units.run(
            attempt, idem=idem, on_conflict=on_conflict, gave_up=_busy, policy=BOOKING_RETRY
        )

    def _slot(self, ref: SlotRef, now: datetime) -> tuple[PointCalendar, SlotAvailability]:
        """The slot as its point's calendar has it (a slot just published: read afresh)."""
        calendar = self.calendars.calendar(ref.point_id)
        slot = calendar.get(ref)
        if slot is None:
            calendar = self.calendars.calendar(ref.point_id, fresh=True)
            slot = calendar.get(ref)
        if slot is None:
            raise SlotUnavailableError("there is no such slot", details={"reason": "no_such_slot"})
        if ref.starts_at <= now:
            raise SlotUnavailableError("this slot has already started", details={"reason": "past"})
        return calendar, slot

    # -- reserved capacity (common/services/reservations.py) --------------------------------
    def _rule_of(
        self, birth_date: date | None, now: datetime
    ) -> Callable[[SlotAvailability], Any] | None:
        """Each slot's rule for this patient, from the instance's copy of the reservations in
        force (no read per booking); None when reservations are not wired."""
        book = self.reservations
        if book is None:
            return None
        return lambda slot: book.rule(slot.ref, slot.capacity, birth_date, now)

    def _patient_rule(
        self, reader: UnitOfWork, patient_key: str, point_id: str, now: datetime
    ) -> Callable[[SlotAvailability], Any] | None:
        """The same for a move (its command names no PESEL): the birth date comes from the
        patient's record, read only where a reservation is in force at the point."""
        if self.reservations is None or not self.reservations.at_point(point_id, now):
            return None
        found = reader.get(PATIENTS, patient_key)
        raw = found.data.get("birth_date") if found is not None else None
        return self._rule_of(date.fromisoformat(raw) if isinstance(raw, str) else None, now)

    # -- quotas -------------------------------------------------------------------------------
    def _within_quota(self, reader: UnitOfWork, actor: Actor, patient_key: str, now) -> None:
        """Refuse (429) a patient whose booking writes are used up: audited, nothing else."""
        if self.quotas is not None:
            self.quotas.enforce(self.units, reader, actor, "booking_write", patient_key, now)

    def _count_write(self, uow: UnitOfWork, patient_key: str, now: datetime) -> None:
        if self.quotas is not None:
            self.quotas.count(uow, "booking_write", patient_key, now)

    @staticmethod
    def _pick_referral(referrals: list[Referral], plan: DosePlan, ref: SlotRef) -> Referral | None:
        matching = [r for r in referrals if r.kind == plan.kind]
        active = [r for r in matching if r.status == "active"]
        covering = [r for r in active if r.valid_from <= ref.day <= r.valid_to]
        # The most helpful one to judge by: one that covers the day, else any active one
        # (its dates explain the refusal), else whatever exists (used/cancelled explain it).
        for group in (covering, active, matching):
            if group:
                return max(group, key=lambda r: r.valid_to)
        return None

    def _second_dose_choice(
        self,
        reader: UnitOfWork,
        calendar: PointCalendar,
        product: VaccineProduct,
        first: SlotRef,
        cmd: BookAppointment,
        now: datetime,
        rule: Any = None,
    ) -> SlotChoice:
        """Dose 2's slot, in the window of `product` as the rules in force at `now` set it."""
        earliest, latest, planned = second_dose_window(product, first.day)
        if cmd.second_slot_id:
            ref = SlotRef.parse(cmd.second_slot_id)
            self._require_same_point_and_product(ref, first)
            second_dose_allowed(product, first.day, ref.day)
            slot = calendar.get(ref)
            if slot is None:
                raise SlotUnavailableError(
                    "there is no such slot", details={"reason": "no_such_slot"}
                )
            candidates = [slot]
        else:
            # Free counts here are the background view's (a few seconds old): an order of
            # preference only; the seats themselves decide.
            candidates = calendar.second_dose_candidates(product.code, earliest, latest, planned)
        choice = SlotChoice(candidates, self.broker, self.rng, now=now, rule=rule)
        if not choice.pick(reader):
            raise SlotUnavailableError(
                f"no free slot for the second dose at this point between {earliest} and {latest}",
                details={
                    "reason": "no_second_dose_slot",
                    "earliest": str(earliest),
                    "latest": str(latest),
                },
            )
        return choice

    @staticmethod
    def _require_same_point_and_product(second: SlotRef, first: SlotRef) -> None:
        # A series booked (or moved) together stays together: same point, same product.
        if second.point_id != first.point_id or second.product != first.product:
            raise ValidationFailedError(
                "the second dose is booked at the same point and with the same product"
            )

    @staticmethod
    def stage_claim(
        uow: UnitOfWork,
        appointment: Appointment,
        lock_id: str,
        now: datetime,
        birth_date: date | None = None,
    ):
        """The patient's dose lock and the appointment (the seat is staged by its choice).

        The appointment keeps the patient's birth date (not a PESEL, never in an event or an
        answer): a proposed rules version is judged on the bookings already made, and its age
        and cohort rules need it (common/services/impact.py)."""
        uow.create(
            ACTIVE_DOSES,
            lock_id,
            {
                "appointment_id": appointment.appointment_id,
                "series_id": appointment.series_id,
                "patient_key": appointment.patient_key,
                "claimed_at": now,
            },
        )
        document = appointment.to_document()
        if birth_date is not None:
            document["birth_date"] = birth_date.isoformat()
        uow.create(APPOINTMENTS, appointment.appointment_id, document)

    # -- authorisation of an existing appointment ----------------------------------------
    def _authorize(
        self,
        reader: UnitOfWork,
        actor: Actor,
        appointment: Appointment,
        patient_key: str | None,
        now: datetime,
    ) -> None:
        if actor.role == "patient":
            if patient_key is None or (
                appointment.patient_key != patient_key
                # A parent acts for their child under 18 (common/services/guardians.py).
                and not self._guardian_of(
                    reader, patient_key, appointment.patient_key, now.astimezone(WARSAW).date()
                )
            ):
                # 404, not 403: a patient must not learn that someone else's id exists.
                raise AppointmentNotFoundError()
        elif actor.role == "staff":
            if actor.point_id != appointment.point_id:
                raise ForbiddenError("staff may act only on their own point's visits")
        elif actor.role == "agent":
            if not actor.reason:
                raise ValidationFailedError("an agent must give a reason")
        elif actor.role != "admin":
            raise ForbiddenError()

    @staticmethod
    def _guardian_of(reader: UnitOfWork, guardian: str, child: str, today: date) -> bool:
        found = reader.get(GUARDIANS, guardian_doc_id(guardian, child))
        return found is not None and is_minor_record(found.data, today)

    @staticmethod
    def _require_own_point(actor: Actor, ref: SlotRef) -> None:
        if actor.role == "staff" and actor.point_id != ref.point_id:
            raise ForbiddenError("point staff book only at their own point")

    def get_for(
        self, appointment_id: str, actor: Actor, patient_key: str | None, now: datetime
    ) -> Appointment:
        reader = self.units.reader()
        appointment, _ = self._load(reader, appointment_id)
        self._authorize(reader, actor, appointment, patient_key, now)
        return appointment

    # -- cancel --------------------------------------------------------------------------
    def cancel(
        self, cmd: CancelAppointment, now: datetime, idem: IdempotencyScope | None = None
    ) -> StoredResponse:
        def attempt(uow: UnitOfWork) -> StoredResponse:
            appointment, version = self._load(uow, cmd.appointment_id)
            self._authorize(uow, cmd.actor, appointment, cmd.patient_key, now)
            if not appointment.is_active:
                raise InvalidStateTransitionError(
                    f"the appointment is already {appointment.status.value}",
                    details={"status": appointment.status.value},
                )
            if appointment.starts_at <= now and cmd.actor.role == "patient":
                raise InvalidStateTransitionError("a visit that has started cannot be cancelled")
            self._within_quota(uow, cmd.actor, appointment.patient_key, now)
            targets = [(appointment, version)]
            if appointment.linked_appointment_id and appointment.dose_number == 1:
                linked, linked_version = self._load(uow, appointment.linked_appointment_id)
                if linked.is_active:
                    targets.append((linked, linked_version))
            cancelled = [a.cancelled(now) for a, _ in targets]
            for (old, version_), new in zip(targets, cancelled, strict=True):
                self.stage_release(uow, old, new, version_)
            stage_free_changes(uow, [(old.slot_id, +1) for old, _ in targets], now)
            self._count_write(uow, appointment.patient_key, now)
            uow.publish(
                AppointmentCancelled.about(
                    a, occurred_at=now, channel=cmd.channel, reason=cmd.reason
                )
                for a in cancelled
            )
            uow.audit(cmd.actor, "appointment.cancel", cancelled, now)
            return uow.respond(StoredResponse(200, response_for(cancelled)))

        return self.units.run(
            attempt,
            idem=idem,
            gave_up=lambda: InvalidStateTransitionError(
                "the appointment keeps changing; try again"
            ),
        )

    @staticmethod
    def stage_release(
        uow: UnitOfWork, old: Appointment, new: Appointment, version: datetime
    ) -> None:
        """The appointment leaves its seat and its patient's dose lock (cancel, no-show)."""
        uow.update(
            APPOINTMENTS,
            old.appointment_id,
            {"status": new.status.value, "updated_at": new.updated_at},
            if_version=version,
        )
        uow.delete(SEATS, old.seat_id)
        lock_id = active_dose_lock_id(
            old.patient_key, old.dose_kind, old.dose_number, old.booster_number
        )
        uow.delete(ACTIVE_DOSES, lock_id)

    # -- reschedule ----------------------------------------------------------------------
    def reschedule(
        self, cmd: RescheduleAppointment, now: datetime, idem: IdempotencyScope | None = None
    ) -> StoredResponse:
        new_ref = SlotRef.parse(cmd.new_slot_id)
        self._require_own_point(cmd.actor, new_ref)
        moves: list[tuple[Appointment, datetime, SlotChoice]] = []
        # The plan holds after a seat conflict (on_conflict picks another seat); after a stale
        # read (the appointment changed under us) it is made again from a fresh read.
        plan_holds = [True]

        def plan(uow: UnitOfWork) -> None:
            """Read the appointment (again) and decide which seats the move needs."""
            for _, _, choice in moves:
                choice.release()
            moves.clear()
            appointment, version = self._load(uow, cmd.appointment_id)
            self._authorize(uow, cmd.actor, appointment, cmd.patient_key, now)
            self._check_movable(appointment, new_ref, now)
            self._within_quota(uow, cmd.actor, appointment.patient_key, now)
            calendar, new_first = self._slot(new_ref, now)
            self._plan_moves(uow, appointment, version, new_first, calendar, cmd, now, moves)

        def attempt(uow: UnitOfWork) -> StoredResponse:
            if not plan_holds[0]:
                plan(uow)
            plan_holds[0] = False
            return self._stage_moves(uow, moves, cmd, now)

        def on_conflict(uow: UnitOfWork) -> StoredResponse | None:
            state = uow.get_all([(SEATS, c.seat_id) for _, _, c in moves])
            for _, _, choice in moves:
                if state[(SEATS, choice.seat_id)] is not None and not choice.pick(uow):
                    raise SlotUnavailableError("all seats of the chosen slot are taken")
            plan_holds[0] = True
            return None

        try:
            plan(self.units.reader())
            return self.units.run(
                attempt,
                idem=idem,
                on_conflict=on_conflict,
                policy=BOOKING_RETRY,
                gave_up=lambda: InvalidStateTransitionError(
                    "the appointment keeps changing; try again"
                ),
            )
        finally:
            for _, _, choice in moves:
                choice.release()

    @staticmethod
    def _check_movable(appointment: Appointment, new_ref: SlotRef, now: datetime) -> None:
        if not appointment.is_active:
            raise InvalidStateTransitionError(
                f"the appointment is {appointment.status.value}",
                details={"status": appointment.status.value},
            )
        if appointment.starts_at <= now:
            raise InvalidStateTransitionError("a visit that has started cannot be moved")
        if new_ref.product != appointment.product:
            raise ValidationFailedError(
                "a move keeps the product; cancel and book again to change it"
            )
        if new_ref.slot_id == appointment.slot_id:
            raise ValidationFailedError("the appointment is already in this slot")

    def _plan_moves(
        self,
        reader: UnitOfWork,
        appointment: Appointment,
        version: datetime,
        new_first: SlotAvailability,
        calendar: PointCalendar,
        cmd: RescheduleAppointment,
        now: datetime,
        moves: list[tuple[Appointment, datetime, SlotChoice]],
    ) -> None:
        """Fill `moves` (the caller releases their seats whatever happens)."""
        # The dose-2 window of a move is the one in force now, not the one the booking saw.
        product = self.rules_at(now).catalogue.get(appointment.product)
        rule = self._patient_rule(reader, appointment.patient_key, new_first.ref.point_id, now)
        first_choice = SlotChoice([new_first], self.broker, self.rng, now=now, rule=rule)
        moves.append((appointment, version, first_choice))
        if not first_choice.pick(reader):
            raise slot_refused(first_choice, new_first.ref, now, self.alternatives)
        linked = first_given = None
        linked_version: datetime | None = None
        if appointment.linked_appointment_id:
            linked, linked_version = self._load(reader, appointment.linked_appointment_id)
            if linked.status is AppointmentStatus.COMPLETED:
                first_given = linked  # dose 1 was given: dose 2 still keeps its window
            if not linked.is_active:
                linked = None
        if appointment.dose_number == 1:
            referral = next(
                (
                    r
                    for r in self.referrals(reader, appointment.patient_key)
                    if r.referral_id == appointment.referral_id
                ),
                None,
            )
            if (
                referral is not None
                and not referral.valid_from <= new_first.ref.day <= referral.valid_to
            ):
                raise ValidationFailedError("the new date is outside the e-referral's validity")
            if linked is not None and linked_version is not None:
                earliest, latest, _ = second_dose_window(product, new_first.ref.day)
                keeps = (
                    linked.point_id == new_first.ref.point_id
                    and earliest <= linked.day <= latest
                    and not cmd.new_second_slot_id
                )
                if not keeps:
                    moves.append(
                        (
                            linked,
                            linked_version,
                            self._moved_second_dose(
                                reader, calendar, cmd, product, new_first, now, rule
                            ),
                        )
                    )
        elif appointment.dose_number == 2:
            first_dose = linked if linked is not None else first_given
            if first_dose is not None:
                second_dose_allowed(product, first_dose.day, new_first.ref.day)

    def _moved_second_dose(
        self,
        reader: UnitOfWork,
        calendar: PointCalendar,
        cmd: RescheduleAppointment,
        product: VaccineProduct,
        new_first: SlotAvailability,
        now: datetime,
        rule: Any = None,
    ) -> SlotChoice:
        earliest, latest, planned = second_dose_window(product, new_first.ref.day)
        if cmd.new_second_slot_id:
            ref = SlotRef.parse(cmd.new_second_slot_id)
            self._require_same_point_and_product(ref, new_first.ref)
            second_dose_allowed(product, new_first.ref.day, ref.day)
            candidates = [self._slot(ref, now)[1]]
        else:
            candidates = calendar.second_dose_candidates(product.code, earliest, latest, planned)
        choice = SlotChoice(candidates, self.broker, self.rng, now=now, rule=rule)
        if not choice.pick(reader):
            raise SlotUnavailableError(
                "no free slot for the second dose at the new point in the window",
                details={"reason": "no_second_dose_slot"},
            )
        return choice

    def _stage_moves(
        self,
        uow: UnitOfWork,
        moves: list[tuple[Appointment, datetime, SlotChoice]],
        cmd: RescheduleAppointment,
        now: datetime,
    ) -> StoredResponse:
        """Claim the new seats and free the old in one commit."""
        moved = [
            old.moved_to(
                c.slot.ref.slot_id,
                c.seat_id,
                c.slot.ref.point_id,
                c.slot.ref.starts_at,
                c.slot.ref.day,
                now,
            )
            for old, _, c in moves
        ]
        for (old, version, choice), new in zip(moves, moved, strict=True):
            choice.stage(uow, seat_document(new, now))
            uow.delete(SEATS, old.seat_id)
            uow.update(APPOINTMENTS, old.appointment_id, new.to_document(), if_version=version)
        stage_free_changes(
            uow,
            [(old.slot_id, +1) for old, _, _ in moves] + [(new.slot_id, -1) for new in moved],
            now,
        )
        self._count_write(uow, moves[0][0].patient_key, now)
        uow.publish(
            AppointmentRescheduled(
                event_id=uuid.uuid4().hex,
                occurred_at=now,
                appointment_id=new.appointment_id,
                series_id=new.series_id,
                patient_key=new.patient_key,
                product=new.product,
                dose_number=new.dose_number,
                from_slot_id=old.slot_id,
                to_slot_id=new.slot_id,
                from_point_id=old.point_id,
                to_point_id=new.point_id,
                starts_at=new.starts_at,
                channel=cmd.channel,
            )
            for (old, _, _), new in zip(moves, moved, strict=True)
        )
        uow.audit(cmd.actor, "appointment.reschedule", moved, now)
        return uow.respond(StoredResponse(200, response_for(moved)))
