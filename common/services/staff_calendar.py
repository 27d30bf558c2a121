"""A point's calendar as its staff edit it: publish a template, add, change, block, remove.

Concurrency, and why no booking is ever dropped silently. Bookings read a slot's capacity C
from the availability document outside any transaction and claim `seats/{slot_id}_{n}`,
n < C, with create() (see common/services/booking.py). A booker may therefore still be using
an old, larger C when the capacity goes down. So a decrease to C' claims the seat indices
[C', C) itself, with "blocker" seat documents created in the same commit that lowers `cap`:

  create seats/{slot}_{n} (blocker)   for every index in [C', C) that was free when read
  update appointments/{id} (cancelled, precondition: unchanged since read)
  set    seats/{slot}_{n} (blocker)   for every index held by a patient: that visit is displaced
                                      (its seat stays taken, by the blocker: no free change)
  delete active_doses/{...}           of each displaced visit (the patient may book again)
  delete seats/{...}                  of a displaced dose 1's linked dose 2, cancelled with it
  create availability_deltas/{...}    that dose 2's freed seat: a patient-level change, folded
                                      into search's counts like a cancellation's
  update availability/{point}         cap = C', free += -(blockers created)   (blind writes,
                                      stamped `changed_at` so search's view notices)
  update calendar_controls/{point}    precondition: unchanged since read (one staff edit at once)
  create outbox/... appointment.displaced (with the nearest alternatives the rules in force
                                        let the patient book), audit, idempotency

All of it is one attempt of the unit of work (common/services/unit_of_work.py): it reads (the
pending free-seat deltas of the point folded first, so staff decide on current counts),
decides, stages, and commits once. If a booker claimed one of those indices after our read,
our create() fails, nothing is written, and the attempt runs again at once from its reads: the
index now holds a patient, who is displaced. If we commit first, the booker's create() fails
and it tries another seat. A stale control or appointment version (another staff edit, a
cancellation) runs the attempt again too, after a jittered pause; past the bound the staff
member is told the calendar is busy. Either way no booking can hold an index >= C' unnoticed,
and every displaced visit is cancelled in the same commit as its seat's release, with its
event. Blocking is C' = 0 that keeps the slot visible; removing is C' = 0 that leaves a
tombstone (so a re-added slot knows that its indices hold blockers to delete). An increase
deletes the blockers of [C, C'): by the rule above only blockers can be there. Staff edits
serialise on `calendar_controls/{point}`, a document bookings never touch, so a rush on the
availability document does not starve them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.adapters.firestore_store import (
    ACTIVE_DOSES,
    APPOINTMENTS,
    AVAILABILITY,
    CALENDAR_CONTROLS,
    SEATS,
    VACCINATIONS,
    slot_field,
    slot_part_field,
)
from common.domain.appointments import Appointment, AppointmentStatus, active_dose_lock_id
from common.domain.calendar import SlotRef
from common.domain.eligibility import PreviousDose
from common.domain.errors import (
    CalendarBusyError,
    InvalidStateTransitionError,
    ProductNotOfferedError,
    SlotExistsError,
    SlotNotFoundError,
    ValidationFailedError,
)
from common.domain.events import (
    AppointmentCancelled,
    AppointmentDisplaced,
    DomainEvent,
    SlotOffer,
)
from common.domain.impact import (
    SlotTarget,
    change_target,
    goes_with,
    remove_target,
    seat_holder,
    supply_target,
)
from common.domain.pesel import Pesel
from common.domain.rulebook import RuleBook
from common.domain.series import rebooking_days
from common.domain.slots import (
    MAX_CAPACITY,
    MAX_PUBLISH_DAYS,
    MAX_PUBLISH_SLOTS,
    CapacityPlan,
    SeatHolder,
    check_publish_range,
    parse_hhmm,
    plan_capacity,
    template_days,
    template_starts,
)
from common.domain.visits import local_day, patient_summary
from common.services.actions import patients_by_key
from common.services.availability import changed, stage_free_changes
from common.services.idempotency import IdempotencyScope, StoredResponse
from common.services.point_access import authorize_point, read_point
from common.services.unit_of_work import Document, RetryPolicy, UnitOfWork, UnitOfWorkRunner

ALTERNATIVES = 3
ALTERNATIVES_RADIUS_KM = 100
MAX_DAYS_AHEAD = 366
_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"

# A staff edit loses a round only when someone else committed first (a booker took a seat we
# meant to block, another staff edit of the point): up to this many attempts, then "busy".
CALENDAR_RETRY = RetryPolicy(attempts=8)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class PublishCalendarRequest(_Body):
    date_from: date
    date_to: date
    weekdays: list[int] = Field(min_length=1, max_length=7)
    opens: str = Field(pattern=_HHMM)
    closes: str = Field(pattern=_HHMM)
    slot_minutes: int = Field(ge=5, le=120)
    capacity: int = Field(ge=0, le=MAX_CAPACITY)
    product: str = Field(min_length=1, max_length=40)

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(not 0 <= d <= 6 for d in value) or len(set(value)) != len(value):
            raise ValueError("weekdays are distinct numbers 0 (Monday) to 6 (Sunday)")
        return value


class AddSlotRequest(_Body):
    day: date
    start: str = Field(pattern=_HHMM)
    product: str = Field(min_length=1, max_length=40)
    capacity: int = Field(ge=0, le=MAX_CAPACITY)


class ChangeSlotRequest(_Body):
    capacity: int | None = Field(default=None, ge=0, le=MAX_CAPACITY)
    blocked: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> ChangeSlotRequest:
        if self.capacity is None and self.blocked is None:
            raise ValueError("give 'capacity', 'blocked' or both")
        return self


class RemoveSlotRequest(_Body):
    """DELETE carries no body; the model only fingerprints the request."""


class CalendarQuery(_Body):
    date_from: date | None = None
    date_to: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CalendarQuery:
        if self.date_from and self.date_to and self.date_to < self.date_from:
            raise ValueError("date_to is before date_from")
        return self


# What a slot should become; decided by common/domain/impact.py, which the impact dry run
# (common/services/impact.py) calls too, so that it cannot disagree with the change itself.
_Target = SlotTarget


def _entry(document: dict[str, Any] | None, ref: SlotRef) -> dict[str, Any] | None:
    entry = ((document or {}).get("days") or {}).get(ref.day_key, {}).get(ref.slot_key)
    return entry if isinstance(entry, dict) else None


def staff_slot_view(ref: SlotRef, entry: dict[str, Any]) -> dict[str, Any]:
    capacity = int(entry.get("cap", 0))
    free = int(entry.get("free", 0))
    blocked = bool(entry.get("blocked"))
    return {
        "slot_id": ref.slot_id,
        "point_id": ref.point_id,
        "starts_at": ref.starts_at.isoformat(),
        "product": ref.product,
        "capacity": capacity,
        "free": max(free, 0),
        "booked": max(capacity - free, 0),
        "blocked": blocked,
        "blocked_capacity": int(entry.get("blocked_cap", 0)) if blocked else None,
    }


def _blocker(ref: SlotRef, now: datetime, reason: str) -> dict[str, Any]:
    # Not a patient's seat: it has no appointment_id, so nothing counts it as a booking.
    return {
        "blocker": True,
        "slot_id": ref.slot_id,
        "point_id": ref.point_id,
        "day": ref.day.isoformat(),
        "reason": reason,
        "claimed_at": now,
    }


class Folder(Protocol):
    """Folds a point's pending free-seat deltas into its availability document now
    (common/services/availability.py: AvailabilityFolder)."""

    def fold_point(self, point_id: str) -> Any: ...


def _read_again(uow: UnitOfWork) -> None:
    """A create() found its document: a booker took a seat we meant to block, or another
    staff edit created the point's control first. Nothing was written: decide again at once
    from fresh reads (that seat now holds a patient, who is displaced)."""
    return None


class StaffCalendarService:
    def __init__(
        self,
        units: UnitOfWorkRunner,
        rule_book: RuleBook,
        search: Any,
        folder: Folder,
        *,
        calendars: Any = None,
    ) -> None:
        self.units = units
        self.rule_book = rule_book  # products and displaced patients' alternatives, at `now`
        self.search = search
        # Bookings reach the availability document through the folder, a second or so late:
        # staff decide on a point's calendar after folding what is pending for it.
        self.folder = folder
        self.calendars = calendars  # booking's cache of calendars in this instance

    @classmethod
    def on_firestore(
        cls,
        client: firestore.Client,
        rule_book: RuleBook,
        search: Any,
        publisher: Any = None,
        **options: Any,
    ) -> StaffCalendarService:
        """The service against one Firestore client (tests and tools; wiring.py builds the rest)."""
        from common.services.availability import AvailabilityFolder
        from common.services.unit_of_work import FirestoreUnitsOfWork

        units = FirestoreUnitsOfWork(client, publisher)
        return cls(units, rule_book, search, AvailabilityFolder(client), **options)

    # -- shared ---------------------------------------------------------------------------
    def _offered(self, point: dict[str, Any], product: str, now: datetime) -> None:
        self.rule_book.rules_at(now).catalogue.get(product)
        if product not in (point.get("products") or []):
            raise ProductNotOfferedError(details={"product": product})

    @staticmethod
    def _stage_control(
        uow: UnitOfWork, point_id: str, control: Document | None, now: datetime
    ) -> None:
        """One staff edit of a point at a time: the commit lands only if nobody else's did
        since we read the control (a create when there was none)."""
        data = {"point_id": point_id, "updated_at": now}
        if control is None or control.version is None:
            uow.create(CALENDAR_CONTROLS, point_id, data)
        else:
            uow.update(CALENDAR_CONTROLS, point_id, data, if_version=control.version)

    def _availability(self, reader: UnitOfWork, point_id: str) -> dict[str, Any] | None:
        self.folder.fold_point(point_id)
        found = reader.get(AVAILABILITY, point_id)
        return found.data if found is not None else None

    def _changed(self, point_id: str) -> None:
        """This instance's search and booking see the change at once (other instances within
        their refresh: a second)."""
        view = getattr(self.search, "view", None)
        if view is not None:
            view.invalidate()
        if self.calendars is not None:
            self.calendars.invalidate(point_id)

    def _run(
        self, attempt: Callable[[UnitOfWork], StoredResponse], idem: IdempotencyScope | None
    ) -> StoredResponse:
        return self.units.run(
            attempt,
            idem=idem,
            on_conflict=_read_again,
            gave_up=CalendarBusyError,
            policy=CALENDAR_RETRY,
        )

    # -- read: the staff view -------------------------------------------------------------
    def calendar(
        self, actor: Any, point_id: str, query: CalendarQuery, now: datetime
    ) -> dict[str, Any]:
        authorize_point(actor, point_id)
        reader = self.units.reader()
        read_point(reader, point_id)
        today = local_day(now)
        date_from = query.date_from or today
        date_to = query.date_to or date_from + timedelta(days=30)
        if (date_to - date_from).days + 1 > MAX_PUBLISH_DAYS:
            raise ValidationFailedError(f"the range spans at most {MAX_PUBLISH_DAYS} days")
        document = self._availability(reader, point_id) or {}
        slots = []
        for dkey, day_slots in (document.get("days") or {}).items():
            for skey, entry in (day_slots or {}).items():
                ref = SlotRef.from_keys(point_id, dkey, skey)
                if date_from <= ref.day <= date_to and not entry.get("removed"):
                    slots.append(staff_slot_view(ref, entry))
        slots.sort(key=lambda s: (s["starts_at"], s["product"]))
        return {
            "point_id": point_id,
            "date_from": date_from.isoformat(),
            "date_to": date_to.isoformat(),
            "slots": slots,
        }

    # -- publish a template ---------------------------------------------------------------
    def publish(
        self,
        actor: Any,
        point_id: str,
        body: PublishCalendarRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        authorize_point(actor, point_id)
        entry_new = {"cap": body.capacity, "free": body.capacity}

        def attempt(uow: UnitOfWork) -> StoredResponse:
            point = read_point(uow, point_id)
            self._offered(point, body.product, now)
            check_publish_range(body.date_from, body.date_to, now)
            days = template_days(body.date_from, body.date_to, frozenset(body.weekdays))
            starts = template_starts(
                parse_hhmm(body.opens), parse_hhmm(body.closes), body.slot_minutes
            )
            refs = [SlotRef(point_id, d, s, body.product) for d in days for s in starts]
            refs = [r for r in refs if r.starts_at > now]
            if len(refs) > MAX_PUBLISH_SLOTS:
                raise ValidationFailedError(f"a template makes at most {MAX_PUBLISH_SLOTS} slots")
            control = uow.get(CALENDAR_CONTROLS, point_id)
            document = self._availability(uow, point_id)
            added, kept, readded = [], [], []
            for ref in refs:
                entry = _entry(document, ref)
                if entry is None:
                    added.append(ref)
                elif entry.get("removed"):
                    readded.append(ref)
                else:
                    kept.append(ref)  # never lowered here: capacity changes are PATCH's job
            self._stage_new_slots(uow, point_id, document, added + readded, entry_new)
            for ref in readded:  # tombstones: their indices hold blockers
                for index in range(body.capacity):
                    uow.delete(SEATS, ref.seat_id(index))
            self._stage_control(uow, point_id, control, now)
            uow.audit(
                actor,
                "calendar.publish",
                [],
                now,
                point_id=point_id,
                product=body.product,
                added=len(added) + len(readded),
                kept=len(kept),
            )
            uow.after_commit(lambda: self._changed(point_id))
            return uow.respond(
                StoredResponse(
                    200,
                    {
                        "point_id": point_id,
                        "product": body.product,
                        "added": len(added) + len(readded),
                        "kept": len(kept),
                        "slot_ids": [r.slot_id for r in sorted(added + readded)],
                    },
                )
            )

        return self._run(attempt, idem)

    @staticmethod
    def _stage_new_slots(
        uow: UnitOfWork,
        point_id: str,
        document: dict[str, Any] | None,
        refs: list[SlotRef],
        entry: dict[str, int],
    ) -> None:
        if not refs:
            return
        if document is None:
            days: dict[str, dict[str, Any]] = {}
            for ref in refs:
                days.setdefault(ref.day_key, {})[ref.slot_key] = dict(entry)
            uow.create(AVAILABILITY, point_id, changed({"point_id": point_id, "days": days}))
        else:
            # A whole new entry per slot: no booking can have touched a slot not yet listed.
            uow.update(
                AVAILABILITY,
                point_id,
                changed({slot_field(r.day_key, r.slot_key): dict(entry) for r in refs}),
            )

    # -- one slot -------------------------------------------------------------------------
    def add_slot(
        self,
        actor: Any,
        point_id: str,
        body: AddSlotRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        authorize_point(actor, point_id)
        entry_new = {"cap": body.capacity, "free": body.capacity}

        def attempt(uow: UnitOfWork) -> StoredResponse:
            point = read_point(uow, point_id)
            self._offered(point, body.product, now)
            ref = SlotRef(point_id, body.day, parse_hhmm(body.start), body.product)
            if ref.starts_at <= now:
                raise ValidationFailedError("a slot cannot be added in the past")
            if body.day > local_day(now) + timedelta(days=MAX_DAYS_AHEAD):
                raise ValidationFailedError(f"a slot is at most {MAX_DAYS_AHEAD} days ahead")
            control = uow.get(CALENDAR_CONTROLS, point_id)
            document = self._availability(uow, point_id)
            entry = _entry(document, ref)
            if entry is not None and not entry.get("removed"):
                raise SlotExistsError(details={"slot_id": ref.slot_id})
            self._stage_new_slots(uow, point_id, document, [ref], entry_new)
            if entry is not None:  # a tombstone: its indices hold blockers
                for index in range(body.capacity):
                    uow.delete(SEATS, ref.seat_id(index))
            self._stage_control(uow, point_id, control, now)
            uow.audit(actor, "slot.add", [], now, slot_id=ref.slot_id)
            uow.after_commit(lambda: self._changed(point_id))
            return uow.respond(StoredResponse(201, {"slot": staff_slot_view(ref, entry_new)}))

        return self._run(attempt, idem)

    def change_slot(
        self,
        actor: Any,
        point_id: str,
        slot_id: str,
        body: ChangeSlotRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        def target(entry: dict[str, Any]) -> _Target:
            return change_target(entry, body.capacity, body.blocked)

        return self._apply(
            actor, point_id, slot_id, target, "point_capacity_reduced", "slot.change", now, idem
        )

    def remove_slot(
        self,
        actor: Any,
        point_id: str,
        slot_id: str,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        return self._apply(
            actor,
            point_id,
            slot_id,
            lambda entry: remove_target(),
            "slot_removed",
            "slot.remove",
            now,
            idem,
        )

    def apply_supply_capacity(
        self,
        actor: Any,
        point_id: str,
        slot_id: str,
        capacity: int,
        template: int,
        reason: str,
        now: datetime,
    ) -> StoredResponse:
        """Supply's change of a slot's capacity, by the same safe path as a staff change:
        blockers for freed indices, displaced visits cancelled with `appointment.displaced`
        events in the same commit. A slot staff blocked meanwhile is left as it is."""

        def target(entry: dict[str, Any]) -> _Target:
            return supply_target(entry, capacity, template)

        return self._apply(actor, point_id, slot_id, target, reason, "slot.supply", now, None)

    def _slot_ref(self, point_id: str, slot_id: str) -> SlotRef:
        try:
            ref = SlotRef.parse(slot_id)
        except ValidationFailedError:
            raise SlotNotFoundError() from None
        if ref.point_id != point_id:
            raise SlotNotFoundError()
        return ref

    def _apply(
        self,
        actor: Any,
        point_id: str,
        slot_id: str,
        target_of: Callable[[dict[str, Any]], _Target],
        reason: str,
        action: str,
        now: datetime,
        idem: IdempotencyScope | None,
    ) -> StoredResponse:
        authorize_point(actor, point_id)

        def attempt(uow: UnitOfWork) -> StoredResponse:
            point = read_point(uow, point_id)
            ref = self._slot_ref(point_id, slot_id)
            control = uow.get(CALENDAR_CONTROLS, point_id)
            entry = _entry(self._availability(uow, point_id), ref)
            if entry is None or entry.get("removed"):
                raise SlotNotFoundError(details={"slot_id": ref.slot_id})
            if ref.starts_at <= now:
                raise InvalidStateTransitionError("a slot that has started cannot be changed")
            target = target_of(entry)
            old_capacity = int(entry.get("cap", 0))
            plan = plan_capacity(
                old_capacity, target.capacity, self._seats(uow, ref, old_capacity, target)
            )
            displaced = self._displaced(uow, plan)
            linked = self._linked(uow, displaced)
            people = patients_by_key(uow, [a.patient_key for a, _ in displaced], local_day(now))
            alternatives = self._alternatives(uow, point, ref, displaced, people, now)
            self._stage_plan(uow, ref, plan, now, reason)
            self._stage_availability(uow, ref, entry, target, plan)
            self._stage_displacements(uow, displaced, linked, alternatives, reason, now)
            self._stage_control(uow, point_id, control, now)
            uow.audit(
                actor,
                action,
                [a for a, _ in displaced] + [a for a, _ in linked],
                now,
                slot_id=ref.slot_id,
                capacity_from=old_capacity,
                capacity_to=target.capacity,
                blocked=target.blocked,
                removed=target.remove,
            )
            uow.after_commit(lambda: self._changed(point_id))
            return uow.respond(self._response(ref, entry, target, plan, displaced, people))

        return self._run(attempt, idem)

    @staticmethod
    def _seats(
        reader: UnitOfWork, ref: SlotRef, old_capacity: int, target: _Target
    ) -> dict[int, SeatHolder]:
        if target.capacity >= old_capacity:
            return {}
        indices = range(target.capacity, old_capacity)
        found = reader.get_all([(SEATS, ref.seat_id(n)) for n in indices])
        seats: dict[int, SeatHolder] = {}
        for index in indices:
            seat = found.get((SEATS, ref.seat_id(index)))
            seats[index] = seat_holder(seat.data if seat is not None else None)
        return seats

    @staticmethod
    def _displaced(reader: UnitOfWork, plan: CapacityPlan) -> list[tuple[Appointment, datetime]]:
        found = []
        for index, appointment_id in plan.displace:
            stored = reader.get(APPOINTMENTS, appointment_id)
            if stored is None or stored.version is None:
                raise CalendarBusyError()  # a seat without its visit: read again next time
            appointment = Appointment.model_validate(stored.data)
            if appointment.status is not AppointmentStatus.BOOKED:
                raise InvalidStateTransitionError(
                    f"seat {index} holds a visit already {appointment.status.value}; "
                    "the capacity cannot go below it",
                    details={"appointment_id": appointment.appointment_id},
                )
            found.append((appointment, stored.version))
        return found

    @staticmethod
    def _linked(
        reader: UnitOfWork, displaced: list[tuple[Appointment, datetime]]
    ) -> list[tuple[Appointment, datetime]]:
        """Dose 2 booked with a displaced dose 1 goes with it (as a cancellation does)."""
        found = []
        for appointment, _ in displaced:
            linked_id = goes_with(appointment)
            if linked_id is None:
                continue
            stored = reader.get(APPOINTMENTS, linked_id)
            if stored is not None and stored.version is not None:
                linked = Appointment.model_validate(stored.data)
                if linked.is_active:
                    found.append((linked, stored.version))
        return found

    def _alternatives(
        self,
        reader: UnitOfWork,
        point: dict[str, Any],
        ref: SlotRef,
        displaced: list[tuple[Appointment, datetime]],
        people: Mapping[str, Pesel | None],
        now: datetime,
    ) -> dict[str, tuple[SlotOffer, ...]]:
        """Per displaced visit, the nearest free slots the patient may book under the rules in
        force at `now`: its product while their age allows it, a dose 2 inside its window
        after dose 1. Visits with the same days share one search."""
        catalogue = self.rule_book.rules_at(now).catalogue
        searched: dict[tuple[date, date | None], tuple[SlotOffer, ...]] = {}
        offers: dict[str, tuple[SlotOffer, ...]] = {}
        for appointment, _ in displaced:
            patient = people.get(appointment.patient_key)
            days = rebooking_days(
                catalogue,
                appointment.product,
                appointment.dose_number,
                appointment.day,
                first_dose_day=self._first_dose_day(reader, appointment),
                birth_date=patient.birth_date if patient is not None else None,
            )
            if days is None:
                offers[appointment.appointment_id] = ()
                continue
            if days not in searched:
                searched[days] = self._nearest_offers(point, ref, days[0], days[1], now)
            offers[appointment.appointment_id] = searched[days]
        return offers

    @staticmethod
    def _first_dose_day(reader: UnitOfWork, appointment: Appointment) -> date | None:
        """When a displaced dose 2's dose 1 was given (or is booked); None for other doses."""
        if appointment.dose_kind != "primary" or appointment.dose_number != 2:
            return None
        found = reader.query(VACCINATIONS, ("patient_key", "==", appointment.patient_key))
        doses = [PreviousDose.model_validate(d.data["dose"]) for d in found]
        given = [d.given_on for d in doses if d.kind == "primary" and d.dose_number == 1]
        if given:
            return min(given)
        if appointment.linked_appointment_id:
            first = reader.get(APPOINTMENTS, appointment.linked_appointment_id)
            if first is not None and first.data.get("status") == AppointmentStatus.BOOKED.value:
                return Appointment.model_validate(first.data).day
        return None

    def _nearest_offers(
        self,
        point: dict[str, Any],
        ref: SlotRef,
        date_from: date,
        date_to: date | None,
        now: datetime,
    ) -> tuple[SlotOffer, ...]:
        from common.services.search import MAX_RANGE_DAYS, SearchQuery

        if date_to is not None:
            # A window longer than one search may span is offered from its first days.
            start = max(date_from, local_day(now))
            date_to = min(date_to, start + timedelta(days=MAX_RANGE_DAYS))
        try:
            result = self.search.search(
                SearchQuery(
                    lat=point["lat"],
                    lon=point["lon"],
                    product=ref.product,
                    date_from=date_from,
                    date_to=date_to,
                    radius_km=ALTERNATIVES_RADIUS_KM,
                    limit=ALTERNATIVES + 1,
                ),
                now,
            )
        except (ValidationFailedError, KeyError, ValueError):
            return ()
        offers = [
            SlotOffer(
                slot_id=slot["slot_id"],
                point_id=slot["point_id"],
                starts_at=slot["starts_at"],
                distance_km=item["distance_km"],
            )
            for item in result["items"]
            for slot in item["earliest_slots"]
            if slot["slot_id"] != ref.slot_id
        ]
        offers.sort(key=lambda o: (o.distance_km, o.starts_at))
        return tuple(offers[:ALTERNATIVES])

    def _response(
        self,
        ref: SlotRef,
        entry: dict[str, Any],
        target: _Target,
        plan: CapacityPlan,
        displaced: list[tuple[Appointment, datetime]],
        people: Mapping[str, Pesel | None],
    ) -> StoredResponse:
        free = int(entry.get("free", 0)) + plan.free_delta
        after = {"cap": target.capacity, "free": 0 if target.remove else free}
        if target.blocked:
            after |= {"blocked": True, "blocked_cap": target.held_capacity}
        return StoredResponse(
            200,
            {
                "slot": staff_slot_view(ref, after),
                "removed": target.remove,
                "displaced": [
                    {
                        "appointment_id": a.appointment_id,
                        "dose_number": a.dose_number,
                        "starts_at": a.starts_at.isoformat(),
                        "patient": patient_summary(people.get(a.patient_key)),
                    }
                    for a, _ in displaced
                ],
            },
        )

    @staticmethod
    def _stage_plan(
        uow: UnitOfWork, ref: SlotRef, plan: CapacityPlan, now: datetime, reason: str
    ) -> None:
        for index in plan.create_blockers:
            uow.create(SEATS, ref.seat_id(index), _blocker(ref, now, reason))
        for index in plan.delete_blockers:
            uow.delete(SEATS, ref.seat_id(index))
        for index, _ in plan.displace:
            # Overwrites the patient's seat; the appointment's precondition guards it.
            uow.set(SEATS, ref.seat_id(index), _blocker(ref, now, reason))

    @staticmethod
    def _stage_displacements(
        uow: UnitOfWork,
        displaced: list[tuple[Appointment, datetime]],
        linked: list[tuple[Appointment, datetime]],
        alternatives: Mapping[str, tuple[SlotOffer, ...]],
        reason: str,
        now: datetime,
    ) -> None:
        events: list[DomainEvent] = []
        for appointment, version in displaced + linked:
            uow.update(
                APPOINTMENTS,
                appointment.appointment_id,
                {"status": "cancelled", "updated_at": now, "cancel_reason": reason},
                if_version=version,
            )
            lock_id = active_dose_lock_id(
                appointment.patient_key,
                appointment.dose_kind,
                appointment.dose_number,
                appointment.booster_number,
            )
            uow.delete(ACTIVE_DOSES, lock_id)
        for appointment, _ in displaced:
            events.append(
                AppointmentDisplaced.about(
                    appointment,
                    occurred_at=now,
                    reason=reason,
                    alternatives=alternatives.get(appointment.appointment_id, ()),
                )
            )
        for appointment, _ in linked:
            uow.delete(SEATS, appointment.seat_id)
            events.append(
                AppointmentCancelled.about(
                    appointment, occurred_at=now, channel="point", reason=f"{reason}_first_dose"
                )
            )
        # A displaced visit's own seat became a blocker (still taken); its dose 2's seat is
        # freed, a patient-level change like a cancellation's: a delta the folder applies.
        stage_free_changes(uow, [(a.slot_id, +1) for a, _ in linked], now)
        uow.publish(events)

    @staticmethod
    def _stage_availability(
        uow: UnitOfWork,
        ref: SlotRef,
        entry: dict[str, Any],
        target: _Target,
        plan: CapacityPlan,
    ) -> None:
        """The slot's capacity, and its free seats for the blockers created or deleted: a
        staff write (rare) to the availability document, stamped for search's view."""
        fields: dict[str, Any] = {}
        if target.remove:
            fields[slot_field(ref.day_key, ref.slot_key)] = {"cap": 0, "free": 0, "removed": True}
        else:
            fields[slot_part_field(ref.day_key, ref.slot_key, "cap")] = target.capacity
            if plan.free_delta:
                fields[slot_part_field(ref.day_key, ref.slot_key, "free")] = firestore.Increment(
                    plan.free_delta
                )
            if target.blocked:
                fields[slot_part_field(ref.day_key, ref.slot_key, "blocked")] = True
                fields[slot_part_field(ref.day_key, ref.slot_key, "blocked_cap")] = (
                    target.held_capacity
                )
            elif entry.get("blocked") or "blocked_cap" in entry:
                fields[slot_part_field(ref.day_key, ref.slot_key, "blocked")] = (
                    firestore.DELETE_FIELD
                )
                fields[slot_part_field(ref.day_key, ref.slot_key, "blocked_cap")] = (
                    firestore.DELETE_FIELD
                )
            if target.template is not None and target.template != target.capacity:
                fields[slot_part_field(ref.day_key, ref.slot_key, "tmpl")] = target.template
            elif "tmpl" in entry:
                fields[slot_part_field(ref.day_key, ref.slot_key, "tmpl")] = firestore.DELETE_FIELD
        uow.update(AVAILABILITY, ref.point_id, changed(fields))
