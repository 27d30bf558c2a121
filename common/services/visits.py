"""Carrying out visits at a point: the day's list, check-in, completion, no-show, walk-ins.

Completion follows a check-in (the PESEL typed from the patient's identity document matched
the booking): a dose recorded for the wrong person is the error this prevents. When the
check-in cannot be done (no document at hand, a desk that failed), staff may still record the
dose with an explicit override and its reason, which goes to the audit entry and the visit.

Every change is one commit holding the change, its event (outbox), its audit entry and its
stored answer (the Idempotency-Key's record): a vaccination record without its
`vaccination.completed` event for P1, or without the audit entry of the staff member who
recorded it, cannot exist. Each change runs as an attempt of the one unit of work
(common/services/unit_of_work.py): it reads the visit with its version, decides, and stages
its writes with that version as their precondition; when the visit changed meanwhile (another
desk checked it in, a no-show was recorded), the attempt runs again from its reads, and
decides again on what is there now.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.adapters.firestore_store import (
    ACTIVE_DOSES,
    APPOINTMENTS,
    PATIENTS,
    REFERRALS,
    SEATS,
    VACCINATIONS,
)
from common.domain.appointments import Appointment, AppointmentStatus, active_dose_lock_id
from common.domain.calendar import SlotRef
from common.domain.eligibility import check_booking_eligibility
from common.domain.errors import (
    AlreadyBookedError,
    AppointmentNotFoundError,
    CheckInRequiredError,
    ForbiddenError,
    InvalidStateTransitionError,
    PatientMismatchError,
    ProductNotOfferedError,
)
from common.domain.events import (
    AppointmentCancelled,
    AppointmentNoShow,
    DomainEvent,
    VaccinationCompleted,
)
from common.domain.pesel import parse_pesel, pesel_key
from common.domain.rulebook import RuleBook
from common.domain.series import plan_next_dose
from common.domain.visits import (
    LOT_NUMBER_PATTERN,
    check_product_age,
    completes_referral,
    leftover_dose_plan,
    local_day,
    patient_summary,
    require_booked,
    require_same_product,
    require_started,
    require_visit_day,
)
from common.services.actions import Subject
from common.services.availability import stage_free_changes
from common.services.booking import BookingService
from common.services.idempotency import IdempotencyScope, StoredResponse
from common.services.patients import PatientFacts, facts_of
from common.services.point_access import authorize_point, read_point
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner

_PESEL = r"^\d{11}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class VisitsQuery(_Body):
    date: date


class CheckInRequest(_Body):
    pesel: str = Field(pattern=_PESEL)


class CompleteRequest(_Body):
    product: str = Field(min_length=1, max_length=40)
    lot_number: str = Field(pattern=LOT_NUMBER_PATTERN)
    # Only for a visit that was not checked in: why the dose is recorded without the identity
    # check (audited, and kept on the visit). Without it such a completion is refused.
    check_in_override_reason: str | None = Field(default=None, min_length=3, max_length=500)


class NoShowRequest(_Body):
    note: str | None = Field(default=None, max_length=500)


class WalkInRequest(_Body):
    pesel: str = Field(pattern=_PESEL)
    product: str = Field(min_length=1, max_length=40)
    lot_number: str = Field(pattern=LOT_NUMBER_PATTERN)
    leftover_dose: bool = False
    reason: str | None = Field(default=None, min_length=3, max_length=500)

    @model_validator(mode="after")
    def _leftover_reason(self) -> WalkInRequest:
        if self.leftover_dose and not self.reason:
            raise ValueError("a leftover-dose walk-in needs a 'reason'")
        return self


def _visit_view(appointment: Appointment, data: dict[str, Any], patient: Any) -> dict[str, Any]:
    return {
        "appointment_id": appointment.appointment_id,
        "slot_id": appointment.slot_id,
        "starts_at": appointment.starts_at.isoformat(),
        "product": appointment.product,
        "dose_kind": appointment.dose_kind,
        "dose_number": appointment.dose_number,
        "status": appointment.status.value,
        "checked_in_at": _iso(data.get("checked_in_at")),
        "check_in_override_reason": data.get("check_in_override_reason"),
        "linked_appointment_id": appointment.linked_appointment_id,
        "patient": patient_summary(patient),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _visit_keeps_changing() -> Exception:
    return InvalidStateTransitionError("the visit keeps changing; try again")


def _record_keeps_changing() -> Exception:
    return InvalidStateTransitionError("the patient's record keeps changing; try again")


def _patients_by_key(
    reader: UnitOfWork, keys: Sequence[str], today: date
) -> dict[str, PatientFacts | None]:
    """The patients' birth dates and sexes (from `patients/`, one batched read; no PESEL is
    read back); unknown ones map to None."""
    unique = list(dict.fromkeys(keys))
    found = reader.get_all([(PATIENTS, k) for k in unique])
    return {
        key: facts_of(d.data if (d := found.get((PATIENTS, key))) is not None else None, today)
        for key in unique
    }


class VisitService:
    def __init__(
        self,
        units: UnitOfWorkRunner,
        rule_book: RuleBook,
        pesel_secret: bytes,
        booking: BookingService,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.units = units
        # Completions and walk-ins are judged by the rules in force at their `now`.
        self.rule_book = rule_book
        self.secret = pesel_secret
        self.booking = booking
        self.new_id = new_id

    # -- the day's list -------------------------------------------------------------------
    def day_list(self, actor: Any, point_id: str, day: date, now: datetime) -> dict[str, Any]:
        authorize_point(actor, point_id)
        reader = self.units.reader()
        read_point(reader, point_id)
        found = reader.query(
            APPOINTMENTS, ("point_id", "==", point_id), ("day", "==", day.isoformat())
        )
        rows = [(Appointment.model_validate(d.data), d.data) for d in found]
        rows.sort(key=lambda r: (r[0].starts_at, r[0].appointment_id))
        walk_ins = [
            d.data
            for d in reader.query(
                VACCINATIONS,
                ("point_id", "==", point_id),
                ("dose.given_on", "==", day.isoformat()),
            )
            if d.data.get("walk_in")
        ]
        people = _patients_by_key(
            reader,
            [a.patient_key for a, _ in rows] + [w["patient_key"] for w in walk_ins],
            local_day(now),
        )
        return {
            "point_id": point_id,
            "date": day.isoformat(),
            "visits": [_visit_view(a, d, people.get(a.patient_key)) for a, d in rows],
            "walk_ins": [
                {
                    "vaccination_id": w["vaccination_id"],
                    "product": w["dose"]["product_code"],
                    "dose_number": w["dose"]["dose_number"],
                    "leftover_dose": bool(w.get("leftover_dose")),
                    "lot_number": w["lot_number"],
                    "patient": patient_summary(people.get(w["patient_key"])),
                }
                for w in sorted(walk_ins, key=lambda w: w["recorded_at"])
            ],
        }

    # -- shared ---------------------------------------------------------------------------
    @staticmethod
    def _load_for_staff(
        uow: UnitOfWork, actor: Any, appointment_id: str
    ) -> tuple[Appointment, datetime]:
        appointment, version, _ = VisitService._read_for_staff(uow, actor, appointment_id)
        return appointment, version

    @staticmethod
    def _read_for_staff(
        uow: UnitOfWork, actor: Any, appointment_id: str
    ) -> tuple[Appointment, datetime, dict[str, Any]]:
        if actor.role not in ("staff", "admin"):
            raise ForbiddenError(f"this operation is not open to the role '{actor.role}'")
        if not appointment_id or len(appointment_id) > 64 or "/" in appointment_id:
            raise AppointmentNotFoundError()
        if appointment_id.startswith("__") or appointment_id in (".", ".."):
            raise AppointmentNotFoundError()
        found = uow.get(APPOINTMENTS, appointment_id)
        if found is None or found.version is None:
            raise AppointmentNotFoundError()
        appointment = Appointment.model_validate(found.data)
        authorize_point(actor, appointment.point_id)
        return appointment, found.version, found.data

    @staticmethod
    def _response(appointment: Appointment, extra: dict[str, Any]) -> StoredResponse:
        return StoredResponse(200, {"appointment": appointment.to_api() | extra})

    # -- check-in -------------------------------------------------------------------------
    def check_in(
        self,
        actor: Any,
        appointment_id: str,
        body: CheckInRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        def attempt(uow: UnitOfWork) -> StoredResponse:
            appointment, version = self._load_for_staff(uow, actor, appointment_id)
            require_booked(appointment, "check in")
            require_visit_day(appointment, now)
            typed = pesel_key(parse_pesel(body.pesel, local_day(now)), self.secret)
            if not hmac.compare_digest(typed, appointment.patient_key):
                raise PatientMismatchError()
            uow.update(
                APPOINTMENTS,
                appointment.appointment_id,
                {"checked_in_at": now, "updated_at": now},
                if_version=version,
            )
            uow.audit(actor, "visit.check_in", [appointment], now)
            return uow.respond(self._response(appointment, {"checked_in_at": now.isoformat()}))

        return self.units.run(attempt, idem=idem, gave_up=_visit_keeps_changing)

    # -- completion -----------------------------------------------------------------------
    def complete(
        self,
        actor: Any,
        appointment_id: str,
        body: CompleteRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        def attempt(uow: UnitOfWork) -> StoredResponse:
            appointment, version, data = self._read_for_staff(uow, actor, appointment_id)
            require_booked(appointment, "complete")
            require_visit_day(appointment, now)
            require_same_product(appointment, body.product)
            checked_in = isinstance(data.get("checked_in_at"), datetime)
            override = None if checked_in else body.check_in_override_reason
            if not checked_in and not override:
                raise CheckInRequiredError(details={"appointment_id": appointment.appointment_id})
            product = self.rule_book.rules_at(now).catalogue.get(body.product)
            given_on = local_day(now)
            closes = completes_referral(appointment.dose_kind, appointment.dose_number, product)
            uow.update(
                APPOINTMENTS,
                appointment.appointment_id,
                {
                    "status": "completed",
                    "updated_at": now,
                    "completed_at": now,
                    "lot_number": body.lot_number,
                    "check_in_override_reason": override,
                },
                if_version=version,
            )
            # A create(): a second completion of the same visit cannot slip in (its commit
            # fails, and its next attempt finds the visit completed).
            uow.create(
                VACCINATIONS,
                appointment.appointment_id,
                {
                    "vaccination_id": appointment.appointment_id,
                    "appointment_id": appointment.appointment_id,
                    "patient_key": appointment.patient_key,
                    "dose": {
                        "product_code": product.code,
                        "dose_number": appointment.dose_number,
                        "given_on": given_on.isoformat(),
                        "kind": appointment.dose_kind,
                    },
                    "lot_number": body.lot_number,
                    "point_id": appointment.point_id,
                    "leftover_dose": False,
                    "walk_in": False,
                    "recorded_at": now,
                    "recorded_by_role": actor.role,
                },
            )
            if closes:
                self._close_referral(uow, appointment.referral_id, now)
            uow.publish(
                [
                    VaccinationCompleted(
                        event_id=uuid.uuid4().hex,
                        occurred_at=now,
                        appointment_id=appointment.appointment_id,
                        patient_key=appointment.patient_key,
                        product=product.code,
                        lot_number=body.lot_number,
                        dose_number=appointment.dose_number,
                        dose_kind=appointment.dose_kind,
                        point_id=appointment.point_id,
                        given_on=given_on,
                        referral_id=appointment.referral_id,
                    )
                ]
            )
            # An override is named as such in the audit trail, with its reason.
            uow.audit(
                actor,
                "visit.complete_without_check_in" if override else "visit.complete",
                [appointment],
                now,
                **({"check_in_override_reason": override} if override else {}),
            )
            completed = appointment.model_copy(
                update={"status": AppointmentStatus.COMPLETED, "updated_at": now}
            )
            return uow.respond(
                self._response(
                    completed,
                    {
                        "lot_number": body.lot_number,
                        "referral_closed": closes,
                        "checked_in": checked_in,
                        "check_in_override_reason": override,
                    },
                )
            )

        return self.units.run(attempt, idem=idem, gave_up=_visit_keeps_changing)

    @staticmethod
    def _close_referral(uow: UnitOfWork, referral_id: str, now: datetime) -> None:
        if uow.get(REFERRALS, referral_id) is None:
            return  # a referral kept only in P1: P1 closes it on the event
        uow.update(REFERRALS, referral_id, {"referral.status": "used", "used_at": now})

    # -- no-show --------------------------------------------------------------------------
    def no_show(
        self,
        actor: Any,
        appointment_id: str,
        body: NoShowRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        def attempt(uow: UnitOfWork) -> StoredResponse:
            appointment, version = self._load_for_staff(uow, actor, appointment_id)
            require_booked(appointment, "mark as no-show")
            require_started(appointment, now)
            linked = self._linked_second_dose(uow, appointment)
            events: list[DomainEvent] = [AppointmentNoShow.about(appointment, occurred_at=now)]
            uow.update(
                APPOINTMENTS,
                appointment.appointment_id,
                {"status": "no_show", "updated_at": now, "no_show_note": body.note},
                if_version=version,
            )
            # The dose was not given: the patient may book it again.
            uow.delete(ACTIVE_DOSES, self._lock_id(appointment))
            if linked:
                dose2, dose2_version = linked
                uow.update(
                    APPOINTMENTS,
                    dose2.appointment_id,
                    {
                        "status": "cancelled",
                        "updated_at": now,
                        "cancel_reason": "first_dose_missed",
                    },
                    if_version=dose2_version,
                )
                uow.delete(SEATS, dose2.seat_id)
                uow.delete(ACTIVE_DOSES, self._lock_id(dose2))
                # Dose 2's seat is free again: search learns it from a delta (availability.py).
                stage_free_changes(uow, [(dose2.slot_id, +1)], now)
                events.append(
                    AppointmentCancelled.about(
                        dose2, occurred_at=now, channel="point", reason="first_dose_missed"
                    )
                )
            uow.publish(events)
            subjects = [appointment] + ([linked[0]] if linked else [])
            uow.audit(actor, "visit.no_show", subjects, now)
            missed = appointment.model_copy(
                update={"status": AppointmentStatus.NO_SHOW, "updated_at": now}
            )
            return uow.respond(
                self._response(
                    missed,
                    {
                        "cancelled_linked_appointment_id": (
                            linked[0].appointment_id if linked else None
                        ),
                        "second_dose": self._second_dose_outcome(appointment, linked, now),
                    },
                )
            )

        return self.units.run(attempt, idem=idem, gave_up=_visit_keeps_changing)

    def _second_dose_outcome(
        self,
        appointment: Appointment,
        linked: tuple[Appointment, datetime] | None,
        now: datetime,
    ) -> dict[str, Any]:
        """What the no-show did to dose 2, for the staff who recorded it (and the patient's
        SMS about the cancellation, which the event brings)."""
        if linked is not None:
            dose2 = linked[0]
            return {
                "outcome": "cancelled",
                "appointment_id": dose2.appointment_id,
                "starts_at": dose2.starts_at.isoformat(),
                "point_id": dose2.point_id,
            }
        catalogue = self.rule_book.rules_at(now).catalogue
        two_doses = (
            appointment.product in catalogue and catalogue.get(appointment.product).doses == 2
        )
        if appointment.dose_kind == "primary" and appointment.dose_number == 1 and two_doses:
            return {"outcome": "not_booked"}  # dose 2 was cancelled or never booked
        return {"outcome": "not_applicable"}  # this was dose 2, a single dose or a booster

    @staticmethod
    def _lock_id(a: Appointment) -> str:
        return active_dose_lock_id(a.patient_key, a.dose_kind, a.dose_number, a.booster_number)

    @staticmethod
    def _linked_second_dose(
        uow: UnitOfWork, appointment: Appointment
    ) -> tuple[Appointment, datetime] | None:
        if appointment.dose_number != 1 or not appointment.linked_appointment_id:
            return None
        found = uow.get(APPOINTMENTS, appointment.linked_appointment_id)
        if found is None or found.version is None:
            return None
        linked = Appointment.model_validate(found.data)
        return (linked, found.version) if linked.is_active else None

    # -- walk-in --------------------------------------------------------------------------
    def walk_in(
        self,
        actor: Any,
        point_id: str,
        body: WalkInRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        authorize_point(actor, point_id)
        lock_ids: list[str] = []

        def attempt(uow: UnitOfWork) -> StoredResponse:
            point = read_point(uow, point_id)
            rules = self.rule_book.rules_at(now)
            product = rules.catalogue.get(body.product)
            if product.code not in (point.get("products") or []):
                raise ProductNotOfferedError(details={"product": product.code})
            today = local_day(now)
            pesel = parse_pesel(body.pesel, today)
            patient_key = pesel_key(pesel, self.secret)
            history = self.booking.history(uow, patient_key)
            referrals = self.booking.referrals(uow, patient_key)
            if body.leftover_dose:
                check_product_age(product, pesel.birth_date, today)
                kind, dose_number = leftover_dose_plan(history, product)
                booster_number = dose_number if kind == "booster" else 0
                matching = [r for r in referrals if r.kind == kind and r.status == "active"]
                referral = max(matching, key=lambda r: r.valid_to) if matching else None
            else:
                plan = plan_next_dose(history, product, rules.catalogue)
                kind, dose_number, booster_number = (
                    plan.kind,
                    plan.dose_number,
                    plan.booster_number,
                )
                referral = self.booking._pick_referral(
                    referrals, plan, SlotRef(point_id, today, time(0, 0), product.code)
                )
                check_booking_eligibility(
                    birth_date=pesel.birth_date,
                    referral=referral,
                    product=product,
                    visit_date=today,
                    now=now,
                    channel="point",
                    cohorts=rules.cohorts,
                    previous_doses=history,
                )
            vaccination_id = self.new_id()
            closes = referral is not None and completes_referral(kind, dose_number, product)
            lock_id = active_dose_lock_id(patient_key, kind, dose_number, booster_number)
            lock_ids[:] = [lock_id]
            # The dose's lock, taken with create(): a booked visit for this very dose (or a
            # second walk-in recorded at the same moment) refuses this one (on_conflict).
            uow.create(
                ACTIVE_DOSES,
                lock_id,
                {
                    "appointment_id": vaccination_id,
                    "series_id": vaccination_id,
                    "patient_key": patient_key,
                    "claimed_at": now,
                    "walk_in": True,
                },
            )
            uow.create(
                VACCINATIONS,
                vaccination_id,
                {
                    "vaccination_id": vaccination_id,
                    "appointment_id": None,
                    "patient_key": patient_key,
                    "dose": {
                        "product_code": product.code,
                        "dose_number": dose_number,
                        "given_on": today.isoformat(),
                        "kind": kind,
                    },
                    "lot_number": body.lot_number,
                    "point_id": point_id,
                    "leftover_dose": body.leftover_dose,
                    "leftover_reason": body.reason if body.leftover_dose else None,
                    "walk_in": True,
                    "recorded_at": now,
                    "recorded_by_role": actor.role,
                },
            )
            if closes and referral is not None:
                self._close_referral(uow, referral.referral_id, now)
            uow.publish(
                [
                    VaccinationCompleted(
                        event_id=uuid.uuid4().hex,
                        occurred_at=now,
                        appointment_id=vaccination_id,
                        patient_key=patient_key,
                        product=product.code,
                        lot_number=body.lot_number,
                        dose_number=dose_number,
                        dose_kind=kind,
                        point_id=point_id,
                        given_on=today,
                        walk_in=True,
                        leftover_dose=body.leftover_dose,
                        referral_id=referral.referral_id if referral else None,
                    )
                ]
            )
            uow.audit(
                actor,
                "visit.walk_in_leftover" if body.leftover_dose else "visit.walk_in",
                [Subject(vaccination_id, patient_key)],
                now,
                point_id=point_id,
                leftover_dose=body.leftover_dose,
                leftover_reason=body.reason if body.leftover_dose else None,
            )
            return uow.respond(
                StoredResponse(
                    201,
                    {
                        "vaccination": {
                            "vaccination_id": vaccination_id,
                            "point_id": point_id,
                            "product": product.code,
                            "dose_kind": kind,
                            "dose_number": dose_number,
                            "given_on": today.isoformat(),
                            "lot_number": body.lot_number,
                            "leftover_dose": body.leftover_dose,
                            "referral_closed": closes,
                        }
                    },
                )
            )

        def on_conflict(uow: UnitOfWork) -> StoredResponse | None:
            held = uow.get(ACTIVE_DOSES, lock_ids[0]) if lock_ids else None
            if held is None:
                return None  # what was there is gone: decide again from fresh reads
            raise AlreadyBookedError(
                "this patient already has a booked visit (or a record) for this dose; "
                "complete or cancel that visit instead",
                details={"appointment_id": held.data.get("appointment_id")},
            )

        return self.units.run(
            attempt, idem=idem, on_conflict=on_conflict, gave_up=_record_keeps_changing
        )
