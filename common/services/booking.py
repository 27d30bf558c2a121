"""Booking, cancelling and rescheduling: the reservation that holds under a rush.

Why seats, not counters. The official emulator locks pessimistically: two transactions that
read then write one document can both be aborted, and the Python client retries an aborted
commit five times with no backoff (measured: 20 concurrent read-modify-write transactions on
one document, 2 succeed, 18 fail). A counter per slot read and decremented in a transaction
would turn every rush into failures while seats remain. So a slot of capacity C is C seat
documents that do not exist until claimed: `seats/{slot_id}_{n}`. Booking is one batched
commit with no reads inside it:

  create seats/{slot_id}_{n}            (precondition: does not exist; one winner per seat)
  create active_doses/{patient}_{dose}  (precondition: one active booking per patient and dose)
  create appointments/{id}
  update availability/{point}           (blind Increment of the slot's free count)
  create outbox/{event_id}              (the event, in the same commit)
  update idempotency_keys/{id}          (COMPLETED + the response, in the same commit)

A commit is all-or-nothing, preconditions included, so a losing booker changes nothing, learns
which seat was taken, and tries another; every conflict means another booking succeeded, so
the loop always ends, and it ends in "full" only when every seat has been seen taken. Blind
writes take no read locks, so nothing here is aborted by contention.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from common.adapters.firestore_store import (
    ACTIVE_DOSES,
    APPOINTMENTS,
    AVAILABILITY,
    REFERRALS,
    RPC,
    SEATS,
    VACCINATIONS,
    get_many,
    get_with_version,
    merge_increments,
)
from common.adapters.pubsub_publisher import EventPublisher
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
    SlotUnavailableError,
    ValidationFailedError,
)
from common.domain.events import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentRescheduled,
)
from common.domain.pesel import parse_pesel, pesel_key
from common.domain.rulebook import RuleBook, RuleSet
from common.domain.series import DosePlan, plan_next_dose
from common.domain.vaccines import VaccineProduct, second_dose_window
from common.services import audit, outbox
from common.services.guardians import may_act_for
from common.services.idempotency import IdempotencyScope, StoredResponse

MAX_STATE_RETRIES = 5
_APPOINTMENT_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex, as new_id() makes them


@dataclass(frozen=True)
class Actor:
    """Who acts: the patient themself, a hotline agent, point staff or an admin."""

    uid: str
    role: str
    point_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class BookAppointment:
    pesel: str
    slot_id: str
    channel: Channel
    actor: Actor
    second_slot_id: str | None = None


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


@dataclass
class SeatPicker:
    """Tries the seats of one slot in a random order, forgetting none it saw taken."""

    slot: SlotAvailability
    rng: random.Random
    order: list[int] = field(default_factory=list)
    position: int = 0

    def __post_init__(self) -> None:
        self.order = list(range(self.slot.capacity))
        self.rng.shuffle(self.order)

    def current(self) -> int | None:
        return self.order[self.position] if self.position < len(self.order) else None

    def taken(self) -> None:
        self.position += 1


@dataclass
class SlotChoice:
    """A dose's candidate slots in order of preference, each with its seat picker."""

    candidates: list[SlotAvailability]
    rng: random.Random
    index: int = 0
    picker: SeatPicker | None = None

    def __post_init__(self) -> None:
        self._advance_to_available()

    def _advance_to_available(self) -> None:
        while self.index < len(self.candidates):
            self.picker = SeatPicker(self.candidates[self.index], self.rng)
            if self.picker.current() is not None:
                return
            self.index += 1
        self.picker = None

    @property
    def exhausted(self) -> bool:
        return self.picker is None

    @property
    def ref(self) -> SlotRef:
        assert self.picker is not None
        return self.picker.slot.ref

    @property
    def seat_id(self) -> str:
        assert self.picker is not None
        seat = self.picker.current()
        assert seat is not None
        return self.ref.seat_id(seat)

    def seat_taken(self) -> None:
        assert self.picker is not None
        self.picker.taken()
        if self.picker.current() is None:
            self.index += 1
            self._advance_to_available()


def response_for(appointments: Sequence[Appointment]) -> dict[str, Any]:
    return {"appointments": [a.to_api() for a in appointments]}


class BookingService:
    def __init__(
        self,
        client: firestore.Client,
        rule_book: RuleBook,
        pesel_secret: bytes,
        publisher: EventPublisher | None = None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        rng: random.Random | None = None,
    ) -> None:
        self.db = client
        # Every decision (dose 1, the dose-2 window, a move) is judged by the rules in force
        # at its `now` (versioned data); `RuleBook.fixed(...)` pins one rule set in tests.
        self.rule_book = rule_book
        self.secret = pesel_secret
        self.publisher = publisher
        self.new_id = new_id
        self.rng = rng or random.Random()

    def rules_at(self, now: datetime) -> RuleSet:
        return self.rule_book.rules_at(now)

    # -- reads ---------------------------------------------------------------------------
    def calendar(self, point_id: str) -> PointCalendar:
        snapshot = self.db.collection(AVAILABILITY).document(point_id).get(**RPC)
        return PointCalendar.from_document(
            point_id, snapshot.to_dict() if snapshot.exists else None
        )

    def patient_key(self, pesel: str, now: datetime) -> str:
        return pesel_key(parse_pesel(pesel, now.astimezone(WARSAW).date()), self.secret)

    def _history(self, patient_key: str) -> list[PreviousDose]:
        query = self.db.collection(VACCINATIONS).where(
            filter=firestore.FieldFilter("patient_key", "==", patient_key)
        )
        return [PreviousDose.model_validate(s.to_dict()["dose"]) for s in query.stream(**RPC)]

    def _referrals(self, patient_key: str) -> list[Referral]:
        query = self.db.collection(REFERRALS).where(
            filter=firestore.FieldFilter("patient_key", "==", patient_key)
        )
        return [Referral.model_validate(s.to_dict()["referral"]) for s in query.stream(**RPC)]

    def appointments_of(self, patient_key: str) -> list[Appointment]:
        query = self.db.collection(APPOINTMENTS).where(
            filter=firestore.FieldFilter("patient_key", "==", patient_key)
        )
        found = [Appointment.model_validate(s.to_dict()) for s in query.stream(**RPC)]
        return sorted(found, key=lambda a: (a.starts_at, a.dose_number))

    def _load(self, appointment_id: str) -> tuple[Appointment, datetime]:
        if not _APPOINTMENT_ID.fullmatch(appointment_id or ""):
            raise AppointmentNotFoundError()
        data, version = get_with_version(self.db.collection(APPOINTMENTS).document(appointment_id))
        if data is None or version is None:
            raise AppointmentNotFoundError()
        return Appointment.model_validate(data), version

    # -- book ----------------------------------------------------------------------------
    def book(
        self, cmd: BookAppointment, now: datetime, idem: IdempotencyScope | None = None
    ) -> StoredResponse:
        patient_key = self.patient_key(cmd.pesel, now)
        birth_date = parse_pesel(cmd.pesel, now.astimezone(WARSAW).date()).birth_date
        first_ref = SlotRef.parse(cmd.slot_id)
        self._require_own_point(cmd.actor, first_ref)
        rules = self.rules_at(now)
        product = rules.catalogue.get(first_ref.product)
        calendar = self.calendar(first_ref.point_id)
        first = self._bookable(calendar, first_ref, now)
        history = self._history(patient_key)
        plan = plan_next_dose(history, product, rules.catalogue)
        referral = self._pick_referral(self._referrals(patient_key), plan, first_ref)
        check_booking_eligibility(
            birth_date=birth_date,
            referral=referral,
            product=product,
            visit_date=first_ref.day,
            now=now,
            channel=cmd.channel,
            cohorts=rules.cohorts,
            previous_doses=history,
        )
        assert referral is not None
        choices = [SlotChoice([first], self.rng)]
        if plan.books_second_dose:
            choices.append(self._second_dose_choice(calendar, product, first_ref, cmd, now))
        series_id = self.new_id()
        ids = [self.new_id() for _ in choices]
        dose_numbers = [plan.dose_number + i for i in range(len(choices))]
        lock_ids = [
            active_dose_lock_id(patient_key, plan.kind, n, plan.booster_number)
            for n in dose_numbers
        ]
        for _attempt in range(sum(len(c.candidates) * 64 for c in choices) + 8):
            if any(c.exhausted for c in choices):
                raise SlotUnavailableError(
                    "all seats of this slot are taken"
                    if choices[0].exhausted
                    else "no free slot for the second dose at this point in the allowed window"
                )
            appointments = [
                Appointment(
                    appointment_id=ids[i],
                    series_id=series_id,
                    patient_key=patient_key,
                    referral_id=referral.referral_id,
                    dose_kind=plan.kind,
                    dose_number=dose_numbers[i],
                    booster_number=plan.booster_number,
                    product=product.code,
                    point_id=c.ref.point_id,
                    slot_id=c.ref.slot_id,
                    seat_id=c.seat_id,
                    starts_at=c.ref.starts_at,
                    day=c.ref.day,
                    channel=cmd.channel,
                    linked_appointment_id=(ids[1 - i] if len(choices) == 2 else None),
                    booked_by_role=cmd.actor.role,
                    created_at=now,
                    updated_at=now,
                )
                for i, c in enumerate(choices)
            ]
            events = [self._booked_event(a, now) for a in appointments]
            response = StoredResponse(201, response_for(appointments))
            batch = self.db.batch()
            for appointment, lock_id in zip(appointments, lock_ids, strict=True):
                self._write_claim(batch, appointment, lock_id, now)
            self._write_increments(batch, [(a, -1) for a in appointments])
            outbox.add_events(batch, self.db, events)
            audit.record(batch, self.db, cmd.actor, "appointment.book", appointments, now)
            if idem is not None:
                idem.complete(batch, response)
            try:
                batch.commit(**RPC)
            except gexc.Conflict:
                if self._resolve_conflict(choices, appointments, lock_ids):
                    return response  # our own earlier commit had landed (lost response)
                continue
            outbox.publish_now(self.db, self.publisher, events)
            return response
        raise SlotUnavailableError("the slot is too busy right now; try again")

    def _bookable(self, calendar: PointCalendar, ref: SlotRef, now: datetime) -> SlotAvailability:
        slot = calendar.get(ref)
        if slot is None:
            raise SlotUnavailableError("there is no such slot", details={"reason": "no_such_slot"})
        if ref.starts_at <= now:
            raise SlotUnavailableError("this slot has already started", details={"reason": "past"})
        if slot.free <= 0:
            raise SlotUnavailableError(
                "all seats of this slot are taken", details={"reason": "full"}
            )
        return slot

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
        calendar: PointCalendar,
        product: VaccineProduct,
        first: SlotRef,
        cmd: BookAppointment,
        now: datetime,
    ) -> SlotChoice:
        """Dose 2's slot, in the window of `product` as the rules in force at `now` set it."""
        earliest, latest, planned = second_dose_window(product, first.day)
        if cmd.second_slot_id:
            ref = SlotRef.parse(cmd.second_slot_id)
            self._require_same_point_and_product(ref, first)
            second_dose_allowed(product, first.day, ref.day)
            return SlotChoice([self._bookable(calendar, ref, now)], self.rng)
        candidates = calendar.second_dose_candidates(product.code, earliest, latest, planned)
        if not candidates:
            raise SlotUnavailableError(
                f"no free slot for the second dose at this point between {earliest} and {latest}",
                details={
                    "reason": "no_second_dose_slot",
                    "earliest": str(earliest),
                    "latest": str(latest),
                },
            )
        return SlotChoice(candidates, self.rng)

    @staticmethod
    def _require_same_point_and_product(second: SlotRef, first: SlotRef) -> None:
        # A series booked (or moved) together stays together: same point, same product.
        if second.point_id != first.point_id or second.product != first.product:
            raise ValidationFailedError(
                "the second dose is booked at the same point and with the same product"
            )

    def _write_claim(
        self, batch: firestore.WriteBatch, appointment: Appointment, lock_id: str, now: datetime
    ) -> None:
        batch.create(
            self.db.collection(SEATS).document(appointment.seat_id),
            {
                "appointment_id": appointment.appointment_id,
                "slot_id": appointment.slot_id,
                "point_id": appointment.point_id,
                "day": appointment.day.isoformat(),
                "claimed_at": now,
            },
        )
        batch.create(
            self.db.collection(ACTIVE_DOSES).document(lock_id),
            {
                "appointment_id": appointment.appointment_id,
                "series_id": appointment.series_id,
                "patient_key": appointment.patient_key,
                "claimed_at": now,
            },
        )
        batch.create(
            self.db.collection(APPOINTMENTS).document(appointment.appointment_id),
            appointment.to_document(),
        )

    def _write_increments(
        self, batch: firestore.WriteBatch, changes: Sequence[tuple[Appointment, int]]
    ) -> None:
        updates = merge_increments(
            (a.point_id, SlotRef.parse(a.slot_id).day_key, SlotRef.parse(a.slot_id).slot_key, d)
            for a, d in changes
        )
        for point_id, fields in updates.items():
            batch.update(self.db.collection(AVAILABILITY).document(point_id), fields)

    def _resolve_conflict(
        self, choices: list[SlotChoice], appointments: list[Appointment], lock_ids: list[str]
    ) -> bool:
        """After ALREADY_EXISTS: was it our own landed commit, the patient, or a seat?"""
        lock_refs = [self.db.collection(ACTIVE_DOSES).document(i) for i in lock_ids]
        seat_refs = [self.db.collection(SEATS).document(a.seat_id) for a in appointments]
        state = get_many(self.db, lock_refs + seat_refs)
        ours = {a.appointment_id for a in appointments}
        for ref in lock_refs:
            holder = state[ref.path]
            if holder is not None:
                if holder["appointment_id"] in ours:
                    return True
                raise AlreadyBookedError(
                    "this patient already has an active booking for this dose",
                    details={"appointment_id": holder["appointment_id"]},
                )
        for choice, ref in zip(choices, seat_refs, strict=True):
            if state[ref.path] is not None:
                choice.seat_taken()
        return False

    @staticmethod
    def _booked_event(a: Appointment, now: datetime) -> AppointmentBooked:
        return AppointmentBooked.about(a, occurred_at=now)

    # -- authorisation of an existing appointment ----------------------------------------
    def _authorize(
        self, actor: Actor, appointment: Appointment, patient_key: str | None, now: datetime
    ) -> None:
        if actor.role == "patient":
            if patient_key is None or (
                appointment.patient_key != patient_key
                # A parent acts for their child under 18 (common/services/guardians.py).
                and not may_act_for(
                    self.db, patient_key, appointment.patient_key, now.astimezone(WARSAW).date()
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
    def _require_own_point(actor: Actor, ref: SlotRef) -> None:
        if actor.role == "staff" and actor.point_id != ref.point_id:
            raise ForbiddenError("point staff book only at their own point")

    def get_for(
        self, appointment_id: str, actor: Actor, patient_key: str | None, now: datetime
    ) -> Appointment:
        appointment, _ = self._load(appointment_id)
        self._authorize(actor, appointment, patient_key, now)
        return appointment

    # -- cancel --------------------------------------------------------------------------
    def cancel(
        self, cmd: CancelAppointment, now: datetime, idem: IdempotencyScope | None = None
    ) -> StoredResponse:
        for _ in range(MAX_STATE_RETRIES):
            appointment, version = self._load(cmd.appointment_id)
            self._authorize(cmd.actor, appointment, cmd.patient_key, now)
            if not appointment.is_active:
                raise InvalidStateTransitionError(
                    f"the appointment is already {appointment.status.value}",
                    details={"status": appointment.status.value},
                )
            if appointment.starts_at <= now and cmd.actor.role == "patient":
                raise InvalidStateTransitionError("a visit that has started cannot be cancelled")
            targets = [(appointment, version)]
            if appointment.linked_appointment_id and appointment.dose_number == 1:
                linked, linked_version = self._load(appointment.linked_appointment_id)
                if linked.is_active:
                    targets.append((linked, linked_version))
            cancelled = [(a.cancelled(now), v) for a, v in targets]
            events = [self._cancelled_event(a, now, cmd) for a, _ in cancelled]
            response = StoredResponse(200, response_for([a for a, _ in cancelled]))
            batch = self.db.batch()
            for (new, version_), (old, _) in zip(cancelled, targets, strict=True):
                self._write_release(batch, old, new, version_)
            self._write_increments(batch, [(old, +1) for old, _ in targets])
            outbox.add_events(batch, self.db, events)
            audit.record(
                batch, self.db, cmd.actor, "appointment.cancel", [a for a, _ in cancelled], now
            )
            if idem is not None:
                idem.complete(batch, response)
            try:
                batch.commit(**RPC)
            except (gexc.FailedPrecondition, gexc.NotFound):
                continue  # changed under us: read again and decide again
            outbox.publish_now(self.db, self.publisher, events)
            return response
        raise InvalidStateTransitionError("the appointment keeps changing; try again")

    def _write_release(
        self, batch: firestore.WriteBatch, old: Appointment, new: Appointment, version: datetime
    ) -> None:
        batch.update(
            self.db.collection(APPOINTMENTS).document(old.appointment_id),
            {"status": new.status.value, "updated_at": new.updated_at},
            option=self.db.write_option(last_update_time=version),
        )
        batch.delete(self.db.collection(SEATS).document(old.seat_id))
        lock_id = active_dose_lock_id(
            old.patient_key, old.dose_kind, old.dose_number, old.booster_number
        )
        batch.delete(self.db.collection(ACTIVE_DOSES).document(lock_id))

    @staticmethod
    def _cancelled_event(
        a: Appointment, now: datetime, cmd: CancelAppointment
    ) -> AppointmentCancelled:
        return AppointmentCancelled.about(
            a, occurred_at=now, channel=cmd.channel, reason=cmd.reason
        )

    # -- reschedule ----------------------------------------------------------------------
    def reschedule(
        self, cmd: RescheduleAppointment, now: datetime, idem: IdempotencyScope | None = None
    ) -> StoredResponse:
        for _ in range(MAX_STATE_RETRIES):
            appointment, version = self._load(cmd.appointment_id)
            self._authorize(cmd.actor, appointment, cmd.patient_key, now)
            if not appointment.is_active:
                raise InvalidStateTransitionError(
                    f"the appointment is {appointment.status.value}",
                    details={"status": appointment.status.value},
                )
            if appointment.starts_at <= now:
                raise InvalidStateTransitionError("a visit that has started cannot be moved")
            new_ref = SlotRef.parse(cmd.new_slot_id)
            self._require_own_point(cmd.actor, new_ref)
            if new_ref.product != appointment.product:
                raise ValidationFailedError(
                    "a move keeps the product; cancel and book again to change it"
                )
            if new_ref.slot_id == appointment.slot_id:
                raise ValidationFailedError("the appointment is already in this slot")
            calendar = self.calendar(new_ref.point_id)
            new_first = self._bookable(calendar, new_ref, now)
            moves = self._plan_moves(appointment, new_first, calendar, cmd, now)
            result = self._commit_moves(moves, version, cmd, now, idem)
            if result is not None:
                return result
        raise InvalidStateTransitionError("the appointment keeps changing; try again")

    def _plan_moves(
        self,
        appointment: Appointment,
        new_first: SlotAvailability,
        calendar: PointCalendar,
        cmd: RescheduleAppointment,
        now: datetime,
    ) -> list[tuple[Appointment, datetime | None, SlotChoice]]:
        # The dose-2 window of a move is the one in force now, not the one the booking saw.
        product = self.rules_at(now).catalogue.get(appointment.product)
        moves: list[tuple[Appointment, datetime | None, SlotChoice]] = [
            (appointment, None, SlotChoice([new_first], self.rng))
        ]
        linked = first_given = None
        if appointment.linked_appointment_id:
            linked, linked_version = self._load(appointment.linked_appointment_id)
            if linked.status is AppointmentStatus.COMPLETED:
                first_given = linked  # dose 1 was given: dose 2 still keeps its window
            if not linked.is_active:
                linked = None
        if appointment.dose_number == 1:
            referral = next(
                (
                    r
                    for r in self._referrals(appointment.patient_key)
                    if r.referral_id == appointment.referral_id
                ),
                None,
            )
            if (
                referral is not None
                and not referral.valid_from <= new_first.ref.day <= referral.valid_to
            ):
                raise ValidationFailedError("the new date is outside the e-referral's validity")
            if linked is not None:
                earliest, latest, planned = second_dose_window(product, new_first.ref.day)
                keeps = (
                    linked.point_id == new_first.ref.point_id
                    and earliest <= linked.day <= latest
                    and not cmd.new_second_slot_id
                )
                if not keeps:
                    if cmd.new_second_slot_id:
                        ref = SlotRef.parse(cmd.new_second_slot_id)
                        self._require_same_point_and_product(ref, new_first.ref)
                        second_dose_allowed(product, new_first.ref.day, ref.day)
                        candidates = [self._bookable(self.calendar(ref.point_id), ref, now)]
                    else:
                        candidates = calendar.second_dose_candidates(
                            product.code, earliest, latest, planned
                        )
                    if not candidates:
                        raise SlotUnavailableError(
                            "no free slot for the second dose at the new point in the window",
                            details={"reason": "no_second_dose_slot"},
                        )
                    moves.append((linked, linked_version, SlotChoice(candidates, self.rng)))
        elif appointment.dose_number == 2:
            first_dose = linked if linked is not None else first_given
            if first_dose is not None:
                second_dose_allowed(product, first_dose.day, new_first.ref.day)
        return moves

    def _commit_moves(
        self,
        moves: list[tuple[Appointment, datetime | None, SlotChoice]],
        version: datetime,
        cmd: RescheduleAppointment,
        now: datetime,
        idem: IdempotencyScope | None,
    ) -> StoredResponse | None:
        """Claim the new seats and free the old in one commit; None means: read again."""
        versions = [version if v is None else v for _, v, _ in moves]
        for _attempt in range(sum(len(c.candidates) * 64 for _, _, c in moves) + 8):
            if any(c.exhausted for _, _, c in moves):
                raise SlotUnavailableError("all seats of the chosen slot are taken")
            moved = [
                old.moved_to(
                    c.ref.slot_id, c.seat_id, c.ref.point_id, c.ref.starts_at, c.ref.day, now
                )
                for old, _, c in moves
            ]
            events = [
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
            ]
            response = StoredResponse(200, response_for(moved))
            batch = self.db.batch()
            for (old, _, _), new, v in zip(moves, moved, versions, strict=True):
                batch.create(
                    self.db.collection(SEATS).document(new.seat_id),
                    {
                        "appointment_id": new.appointment_id,
                        "slot_id": new.slot_id,
                        "point_id": new.point_id,
                        "day": new.day.isoformat(),
                        "claimed_at": now,
                    },
                )
                batch.delete(self.db.collection(SEATS).document(old.seat_id))
                batch.update(
                    self.db.collection(APPOINTMENTS).document(old.appointment_id),
                    new.to_document(),
                    option=self.db.write_option(last_update_time=v),
                )
            self._write_increments(
                batch, [(old, +1) for old, _, _ in moves] + [(new, -1) for new in moved]
            )
            outbox.add_events(batch, self.db, events)
            audit.record(batch, self.db, cmd.actor, "appointment.reschedule", moved, now)
            if idem is not None:
                idem.complete(batch, response)
            try:
                batch.commit(**RPC)
            except (gexc.FailedPrecondition, gexc.NotFound):
                return None
            except gexc.Conflict:
                seat_refs = [self.db.collection(SEATS).document(n.seat_id) for n in moved]
                state = get_many(self.db, seat_refs)
                for (_, _, choice), ref in zip(moves, seat_refs, strict=True):
                    if state[ref.path] is not None:
                        choice.seat_taken()
                continue
            outbox.publish_now(self.db, self.publisher, events)
            return response
        raise SlotUnavailableError("the slot is too busy right now; try again")
