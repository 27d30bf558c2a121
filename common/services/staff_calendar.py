"""A point's calendar as its staff edit it: publish a template, add, change, block, remove.

Concurrency, and why no booking is ever dropped silently. Bookings read a slot's capacity C
from the availability document outside any transaction and claim `seats/{slot_id}_{n}`,
n < C, with create() (see common/services/booking.py). A booker may therefore still be using
an old, larger C when the capacity goes down. So a decrease to C' claims the seat indices
[C', C) itself, with "blocker" seat documents created in the same commit that lowers `cap`:

  create seats/{slot}_{n} (blocker)   for every index in [C', C) that was free when read
  update appointments/{id} (cancelled, precondition: unchanged since read)
  set    seats/{slot}_{n} (blocker)   for every index held by a patient: that visit is displaced
  delete active_doses/{...}           of each displaced visit (the patient may book again)
  update availability/{point}         cap = C', free += -(blockers created)   (blind writes)
  update calendar_controls/{point}    precondition: unchanged since read (one staff edit at once)
  create outbox/... appointment.displaced (with the nearest alternatives the rules in force
                                        let the patient book), audit, idempotency

If a booker claimed one of those indices after our read, our create() fails, nothing is
written, and we read again: the index now holds a patient, who is displaced in the next
attempt. If we commit first, the booker's create() fails and it tries another seat. Either
way no booking can hold an index >= C' unnoticed, and every displaced visit is cancelled in
the same commit as its seat's release, with its event. Blocking is C' = 0 that keeps the
slot visible; removing is C' = 0 that leaves a tombstone (so a re-added slot knows that its
indices hold blockers to delete). An increase deletes the blockers of [C, C'): by the rule
above only blockers can be there. Staff edits serialise on `calendar_controls/{point}`, a
document bookings never touch, so a rush on the availability document does not starve them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.adapters.firestore_store import (
    ACTIVE_DOSES,
    APPOINTMENTS,
    AVAILABILITY,
    CALENDAR_CONTROLS,
    RPC,
    SEATS,
    VACCINATIONS,
    get_many,
    get_with_version,
    slot_field,
    slot_part_field,
)
from common.adapters.pubsub_publisher import EventPublisher
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
from common.services import outbox
from common.services.actions import audit_action, patients_by_key, write_free_increments
from common.services.availability import AvailabilityFolder, changed
from common.services.idempotency import IdempotencyScope, StoredResponse
from common.services.point_access import authorize_point, load_point

MAX_ATTEMPTS = 8
ALTERNATIVES = 3
ALTERNATIVES_RADIUS_KM = 100
MAX_DAYS_AHEAD = 366
_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


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


@dataclass(frozen=True)
class _Target:
    """What a slot should become: its effective capacity and its blocked state."""

    capacity: int
    blocked: bool
    held_capacity: int  # the capacity a blocked slot returns to when unblocked
    remove: bool = False
    # Set by supply (common/services/sds_sync.py): the capacity staff published, kept as
    # `tmpl` while supply holds `cap` below it. A staff change drops it: theirs is the new one.
    template: int | None = None


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


class StaffCalendarService:
    def __init__(
        self,
        client: firestore.Client,
        rule_book: RuleBook,
        search: Any,
        publisher: EventPublisher | None = None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        calendars: Any = None,
    ) -> None:
        self.db = client
        self.rule_book = rule_book  # products and displaced patients' alternatives, at `now`
        self.search = search
        self.publisher = publisher
        self.new_id = new_id
        # Bookings reach the availability document through the folder, a second or so late:
        # staff decide on a point's calendar after folding what is pending for it.
        self.folder = AvailabilityFolder(client)
        self.calendars = calendars  # booking's cache of calendars in this instance

    # -- shared ---------------------------------------------------------------------------
    def _point(self, actor: Any, point_id: str) -> dict[str, Any]:
        authorize_point(actor, point_id)
        return load_point(self.db, point_id)

    def _offered(self, point: dict[str, Any], product: str, now: datetime) -> None:
        self.rule_book.rules_at(now).catalogue.get(product)
        if product not in (point.get("products") or []):
            raise ProductNotOfferedError(details={"product": product})

    def _control(self, point_id: str) -> datetime | None:
        _, version = get_with_version(self.db.collection(CALENDAR_CONTROLS).document(point_id))
        return version

    def _write_control(
        self, batch: firestore.WriteBatch, point_id: str, version: datetime | None, now: datetime
    ) -> None:
        ref = self.db.collection(CALENDAR_CONTROLS).document(point_id)
        data = {"point_id": point_id, "updated_at": now}
        if version is None:
            batch.create(ref, data)
        else:
            batch.update(ref, data, option=self.db.write_option(last_update_time=version))

    def _availability(self, point_id: str) -> dict[str, Any] | None:
        self.folder.fold_point(point_id)
        snapshot = self.db.collection(AVAILABILITY).document(point_id).get(**RPC)
        return snapshot.to_dict() if snapshot.exists else None

    def _changed(self, point_id: str) -> None:
        """This instance's search and booking see the change at once (other instances within
        their refresh: a second)."""
        view = getattr(self.search, "view", None)
        if view is not None:
            view.invalidate()
        if self.calendars is not None:
            self.calendars.invalidate(point_id)

    # -- read: the staff view -------------------------------------------------------------
    def calendar(
        self, actor: Any, point_id: str, query: CalendarQuery, now: datetime
    ) -> dict[str, Any]:
        self._point(actor, point_id)
        today = local_day(now)
        date_from = query.date_from or today
        date_to = query.date_to or date_from + timedelta(days=30)
        if (date_to - date_from).days + 1 > MAX_PUBLISH_DAYS:
            raise ValidationFailedError(f"the range spans at most {MAX_PUBLISH_DAYS} days")
        document = self._availability(point_id) or {}
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
        point = self._point(actor, point_id)
        self._offered(point, body.product, now)
        check_publish_range(body.date_from, body.date_to, now)
        days = template_days(body.date_from, body.date_to, frozenset(body.weekdays))
        starts = template_starts(parse_hhmm(body.opens), parse_hhmm(body.closes), body.slot_minutes)
        refs = [SlotRef(point_id, d, s, body.product) for d in days for s in starts]
        refs = [r for r in refs if r.starts_at > now]
        if len(refs) > MAX_PUBLISH_SLOTS:
            raise ValidationFailedError(f"a template makes at most {MAX_PUBLISH_SLOTS} slots")
        entry_new = {"cap": body.capacity, "free": body.capacity}
        for _ in range(MAX_ATTEMPTS):
            version = self._control(point_id)
            document = self._availability(point_id)
            added, kept, readded = [], [], []
            for ref in refs:
                entry = _entry(document, ref)
                if entry is None:
                    added.append(ref)
                elif entry.get("removed"):
                    readded.append(ref)
                else:
                    kept.append(ref)  # never lowered here: capacity changes are PATCH's job
            response = StoredResponse(
                200,
                {
                    "point_id": point_id,
                    "product": body.product,
                    "added": len(added) + len(readded),
                    "kept": len(kept),
                    "slot_ids": [r.slot_id for r in sorted(added + readded)],
                },
            )
            batch = self.db.batch()
            self._write_new_slots(batch, point_id, document, added + readded, entry_new)
            for ref in readded:
                for index in range(body.capacity):
                    batch.delete(self.db.collection(SEATS).document(ref.seat_id(index)))
            self._write_control(batch, point_id, version, now)
            audit_action(
                batch,
                self.db,
                actor,
                "calendar.publish",
                [],
                now,
                point_id=point_id,
                product=body.product,
                added=len(added) + len(readded),
                kept=len(kept),
            )
            if idem is not None:
                idem.complete(batch, response)
            try:
                batch.commit(**RPC)
                self._changed(point_id)
            except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound):
                continue
            return response
        raise CalendarBusyError()

    def _write_new_slots(
        self,
        batch: firestore.WriteBatch,
        point_id: str,
        document: dict[str, Any] | None,
        refs: list[SlotRef],
        entry: dict[str, int],
    ) -> None:
        if not refs:
            return
        ref_doc = self.db.collection(AVAILABILITY).document(point_id)
        if document is None:
            days: dict[str, dict[str, Any]] = {}
            for ref in refs:
                days.setdefault(ref.day_key, {})[ref.slot_key] = dict(entry)
            batch.create(ref_doc, changed({"point_id": point_id, "days": days}))
        else:
            # A whole new entry per slot: no booking can have touched a slot not yet listed.
            batch.update(
                ref_doc, changed({slot_field(r.day_key, r.slot_key): dict(entry) for r in refs})
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
        point = self._point(actor, point_id)
        self._offered(point, body.product, now)
        ref = SlotRef(point_id, body.day, parse_hhmm(body.start), body.product)
        if ref.starts_at <= now:
            raise ValidationFailedError("a slot cannot be added in the past")
        if body.day > local_day(now) + timedelta(days=MAX_DAYS_AHEAD):
            raise ValidationFailedError(f"a slot is at most {MAX_DAYS_AHEAD} days ahead")
        entry_new = {"cap": body.capacity, "free": body.capacity}
        for _ in range(MAX_ATTEMPTS):
            version = self._control(point_id)
            document = self._availability(point_id)
            entry = _entry(document, ref)
            if entry is not None and not entry.get("removed"):
                raise SlotExistsError(details={"slot_id": ref.slot_id})
            response = StoredResponse(201, {"slot": staff_slot_view(ref, entry_new)})
            batch = self.db.batch()
            self._write_new_slots(batch, point_id, document, [ref], entry_new)
            if entry is not None:  # a tombstone: its indices hold blockers
                for index in range(body.capacity):
                    batch.delete(self.db.collection(SEATS).document(ref.seat_id(index)))
            self._write_control(batch, point_id, version, now)
            audit_action(batch, self.db, actor, "slot.add", [], now, slot_id=ref.slot_id)
            if idem is not None:
                idem.complete(batch, response)
            try:
                batch.commit(**RPC)
                self._changed(point_id)
            except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound):
                continue
            return response
        raise CalendarBusyError()

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
            blocked_now = bool(entry.get("blocked"))
            held = int(entry.get("blocked_cap", 0)) if blocked_now else int(entry.get("cap", 0))
            blocked = body.blocked if body.blocked is not None else blocked_now
            capacity = body.capacity if body.capacity is not None else held
            return _Target(0 if blocked else capacity, blocked, capacity)

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
            lambda entry: _Target(0, False, 0, remove=True),
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
            if entry.get("blocked"):
                return _Target(0, True, int(entry.get("blocked_cap", 0)))
            return _Target(capacity, False, capacity, template=template)

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
        point = self._point(actor, point_id)
        ref = self._slot_ref(point_id, slot_id)
        for _ in range(MAX_ATTEMPTS):
            version = self._control(point_id)
            entry = _entry(self._availability(point_id), ref)
            if entry is None or entry.get("removed"):
                raise SlotNotFoundError(details={"slot_id": ref.slot_id})
            if ref.starts_at <= now:
                raise InvalidStateTransitionError("a slot that has started cannot be changed")
            target = target_of(entry)
            old_capacity = int(entry.get("cap", 0))
            plan = plan_capacity(
                old_capacity, target.capacity, self._seats(ref, old_capacity, target)
            )
            displaced = self._displaced(plan)
            linked = self._linked(displaced)
            people = patients_by_key(self.db, [a.patient_key for a, _ in displaced], local_day(now))
            alternatives = self._alternatives(point, ref, displaced, people, now)
            response = self._response(ref, entry, target, plan, displaced, people)
            batch = self.db.batch()
            self._write_plan(batch, ref, entry, target, plan, now, reason)
            self.write_availability(batch, ref, entry, target, plan, linked)
            events = self._write_displacements(
                batch, ref, displaced, linked, alternatives, reason, now
            )
            self._write_control(batch, point_id, version, now)
            audit_action(
                batch,
                self.db,
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
            if idem is not None:
                idem.complete(batch, response)
            try:
                batch.commit(**RPC)
                self._changed(point_id)
            except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound):
                continue  # a booker or a patient got there first: read again, decide again
            outbox.publish_now(self.db, self.publisher, events)
            return response
        raise CalendarBusyError()

    def _seats(self, ref: SlotRef, old_capacity: int, target: _Target) -> dict[int, SeatHolder]:
        if target.capacity >= old_capacity:
            return {}
        indices = range(target.capacity, old_capacity)
        refs = [self.db.collection(SEATS).document(ref.seat_id(n)) for n in indices]
        found = get_many(self.db, refs)
        seats: dict[int, SeatHolder] = {}
        for index, seat_ref in zip(indices, refs, strict=True):
            data = found[seat_ref.path]
            if data is None:
                seats[index] = SeatHolder("free")
            elif data.get("blocker"):
                seats[index] = SeatHolder("blocker")
            else:
                seats[index] = SeatHolder("patient", str(data.get("appointment_id")))
        return seats

    def _displaced(self, plan: CapacityPlan) -> list[tuple[Appointment, datetime]]:
        found = []
        for index, appointment_id in plan.displace:
            data, version = get_with_version(
                self.db.collection(APPOINTMENTS).document(appointment_id)
            )
            if data is None or version is None:
                raise CalendarBusyError()  # a seat without its visit: read again next time
            appointment = Appointment.model_validate(data)
            if appointment.status is not AppointmentStatus.BOOKED:
                raise InvalidStateTransitionError(
                    f"seat {index} holds a visit already {appointment.status.value}; "
                    "the capacity cannot go below it",
                    details={"appointment_id": appointment.appointment_id},
                )
            found.append((appointment, version))
        return found

    def _linked(
        self, displaced: list[tuple[Appointment, datetime]]
    ) -> list[tuple[Appointment, datetime]]:
        """Dose 2 booked with a displaced dose 1 goes with it (as a cancellation does)."""
        found = []
        for appointment, _ in displaced:
            if appointment.dose_number != 1 or not appointment.linked_appointment_id:
                continue
            data, version = get_with_version(
                self.db.collection(APPOINTMENTS).document(appointment.linked_appointment_id)
            )
            if data is not None and version is not None:
                linked = Appointment.model_validate(data)
                if linked.is_active:
                    found.append((linked, version))
        return found

    def _alternatives(
        self,
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
                first_dose_day=self._first_dose_day(appointment),
                birth_date=patient.birth_date if patient is not None else None,
            )
            if days is None:
                offers[appointment.appointment_id] = ()
                continue
            if days not in searched:
                searched[days] = self._nearest_offers(point, ref, days[0], days[1], now)
            offers[appointment.appointment_id] = searched[days]
        return offers

    def _first_dose_day(self, appointment: Appointment) -> date | None:
        """When a displaced dose 2's dose 1 was given (or is booked); None for other doses."""
        if appointment.dose_kind != "primary" or appointment.dose_number != 2:
            return None
        query = self.db.collection(VACCINATIONS).where(
            filter=firestore.FieldFilter("patient_key", "==", appointment.patient_key)
        )
        doses = [PreviousDose.model_validate(s.to_dict()["dose"]) for s in query.stream(**RPC)]
        given = [d.given_on for d in doses if d.kind == "primary" and d.dose_number == 1]
        if given:
            return min(given)
        if appointment.linked_appointment_id:
            data, _ = get_with_version(
                self.db.collection(APPOINTMENTS).document(appointment.linked_appointment_id)
            )
            if data is not None and data.get("status") == AppointmentStatus.BOOKED.value:
                return Appointment.model_validate(data).day
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

    def _write_plan(
        self,
        batch: firestore.WriteBatch,
        ref: SlotRef,
        entry: dict[str, Any],
        target: _Target,
        plan: CapacityPlan,
        now: datetime,
        reason: str,
    ) -> None:
        seats = self.db.collection(SEATS)
        for index in plan.create_blockers:
            batch.create(seats.document(ref.seat_id(index)), _blocker(ref, now, reason))
        for index in plan.delete_blockers:
            batch.delete(seats.document(ref.seat_id(index)))
        for index, _ in plan.displace:
            # Overwrites the patient's seat; the appointment's precondition guards it.
            batch.set(seats.document(ref.seat_id(index)), _blocker(ref, now, reason))

    def _write_displacements(
        self,
        batch: firestore.WriteBatch,
        ref: SlotRef,
        displaced: list[tuple[Appointment, datetime]],
        linked: list[tuple[Appointment, datetime]],
        alternatives: Mapping[str, tuple[SlotOffer, ...]],
        reason: str,
        now: datetime,
    ) -> list[DomainEvent]:
        events: list[DomainEvent] = []
        for appointment, version in displaced + linked:
            batch.update(
                self.db.collection(APPOINTMENTS).document(appointment.appointment_id),
                {"status": "cancelled", "updated_at": now, "cancel_reason": reason},
                option=self.db.write_option(last_update_time=version),
            )
            lock_id = active_dose_lock_id(
                appointment.patient_key,
                appointment.dose_kind,
                appointment.dose_number,
                appointment.booster_number,
            )
            batch.delete(self.db.collection(ACTIVE_DOSES).document(lock_id))
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
            batch.delete(self.db.collection(SEATS).document(appointment.seat_id))
            events.append(
                AppointmentCancelled.about(
                    appointment, occurred_at=now, channel="point", reason=f"{reason}_first_dose"
                )
            )
        outbox.add_events(batch, self.db, events)
        return events

    def write_availability(
        self,
        batch: firestore.WriteBatch,
        ref: SlotRef,
        entry: dict[str, Any],
        target: _Target,
        plan: CapacityPlan,
        linked: list[tuple[Appointment, datetime]],
    ) -> None:
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
        write_free_increments(
            batch, self.db, [(a.slot_id, +1) for a, _ in linked], extra={ref.point_id: fields}
        )
