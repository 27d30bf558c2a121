"""Timed holds of a whole series, in the shape of FHIR's `$hold` / `$book`.

A patient (or, on their behalf, a re-plan or the waitlist) holds dose 1 and the matching dose 2
for a few minutes while deciding. A hold is seats, like a booking: `seats/{slot}_{n}` created
for the hold (`hold_id`, `holder`, `held_until`, and no `index` yet), so everyone else sees the
seat as taken, while the cheap count of booked seats does not count it; plus `holds/{hold_id}`
(who, what, until when, and its status). Nobody else can take a held seat before `held_until`;
confirming within the hold turns the same seats into the booking, so it cannot fail for want of
a seat. After `held_until` the seat is anyone's: a booker who lists it takes it over (a version
precondition), and the sweeper (`expire_holds`, every minute) deletes what is left and gives
the seat back to the free count.

Free-seat counts: a hold takes its seats (a delta of -1 each); a confirmation changes nothing;
a release or an expiry gives them back (+1 each, once: the hold's status moves with a
version precondition).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from common.adapters.firestore_store import ACTIVE_DOSES, SEATS
from common.domain.appointments import Appointment, active_dose_lock_id
from common.domain.errors import (
    AlreadyBookedError,
    AppointmentNotFoundError,
    InvalidStateTransitionError,
    OverloadedError,
    ValidationFailedError,
)
from common.domain.events import AppointmentBooked
from common.services.availability import stage_free_changes
from common.services.booking import (
    Actor,
    BookAppointment,
    BookingService,
    response_for,
    slot_full,
)
from common.services.idempotency import IdempotencyScope, StoredResponse
from common.services.seats import SlotChoice, hold_seat_document, seat_document, seat_index
from common.services.unit_of_work import UnitOfWork

HOLDS = "holds"
DEFAULT_HOLD = timedelta(minutes=5)
MAX_HOLD = timedelta(days=2)  # an offer by SMS waits for an answer longer than a click


class HoldNotFoundError(AppointmentNotFoundError):
    """No such hold (or not one of yours)."""

    code = "hold_not_found"


class HoldExpiredError(InvalidStateTransitionError):
    """This hold has ended: its seats are free again. Search again to book."""

    code = "hold_expired"


def _busy() -> Exception:
    return OverloadedError("these slots are very busy right now; try again shortly")


class HoldService:
    def __init__(self, booking: BookingService, *, ttl: timedelta = DEFAULT_HOLD) -> None:
        self.booking = booking
        self.units = booking.units
        self.ttl = ttl

    # -- $hold ------------------------------------------------------------------------------
    def hold(
        self,
        cmd: BookAppointment,
        now: datetime,
        idem: IdempotencyScope | None = None,
        *,
        ttl: timedelta | None = None,
        purpose: str = "patient",
        hold_id: str | None = None,
    ) -> StoredResponse:
        """Hold the series `cmd` would book (same checks), until now + ttl."""
        until = now + min(ttl or self.ttl, MAX_HOLD)
        hold_id = hold_id or uuid.uuid4().hex
        choices: list[SlotChoice] = []
        try:
            prepared = self.booking.prepare(cmd, now, choices)
            plan = prepared.plan

            locks = [
                (
                    ACTIVE_DOSES,
                    active_dose_lock_id(
                        prepared.patient_key, plan.kind, plan.dose_number + n, plan.booster_number
                    ),
                )
                for n in range(len(choices))
            ]

            def attempt(uow: UnitOfWork) -> StoredResponse:
                # A hold is for someone who could confirm it: not one booked for these doses.
                for lock in uow.get_all(locks).values():
                    if lock is not None:
                        raise AlreadyBookedError(
                            "this patient already has an active booking for this dose",
                            details={"appointment_id": lock.data["appointment_id"]},
                        )
                seats = []
                for number, choice in enumerate(choices):
                    slot = choice.slot
                    choice.stage(
                        uow,
                        hold_seat_document(
                            slot, choice.seat, hold_id, prepared.patient_key, until, now
                        ),
                    )
                    seats.append(
                        {
                            "seat_id": choice.seat_id,
                            "slot_id": slot.ref.slot_id,
                            "point_id": slot.ref.point_id,
                            "day": slot.ref.day.isoformat(),
                            "starts_at": slot.ref.starts_at,
                            "product": slot.ref.product,
                            "dose_number": plan.dose_number + number,
                        }
                    )
                document = {
                    "hold_id": hold_id,
                    "patient_key": prepared.patient_key,
                    "status": "held",
                    "purpose": purpose,
                    "channel": cmd.channel,
                    "created_at": now,
                    "expires_at": until,
                    # Firestore's TTL deletes the record a week after (not `expires_at`: the
                    # sweeper must still find an expired hold to give its seats back).
                    "purge_at": until + timedelta(days=7),
                    "seats": seats,
                    "dose_kind": plan.kind,
                    "booster_number": plan.booster_number,
                    "referral_id": prepared.referral.referral_id,
                    "booked_by_role": cmd.actor.role,
                }
                uow.create(HOLDS, hold_id, document)
                stage_free_changes(uow, [(s["slot_id"], -1) for s in seats], now)
                self.booking._count_write(uow, prepared.patient_key, now)
                uow.audit(cmd.actor, "hold.create", [], now, hold_id=hold_id)
                return uow.respond(StoredResponse(201, {"hold": hold_view(document)}))

            def on_conflict(uow: UnitOfWork) -> StoredResponse | None:
                state = uow.get_all([(SEATS, c.seat_id) for c in choices])
                for choice in choices:
                    if state[(SEATS, choice.seat_id)] is not None and not choice.pick(uow):
                        raise slot_full(choice.candidates[0].ref, now, self.booking.alternatives)
                return None

            return self.units.run(attempt, idem=idem, on_conflict=on_conflict, gave_up=_busy)
        finally:
            for choice in choices:
                choice.release()

    # -- $book ------------------------------------------------------------------------------
    def book(
        self,
        hold_id: str,
        actor: Actor,
        patient_key: str | None,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        """Turn the held seats into the booking: it cannot fail for want of a seat."""

        def attempt(uow: UnitOfWork) -> StoredResponse:
            hold, version = self._load(uow, hold_id, actor, patient_key)
            if hold["status"] != "held" or hold["expires_at"] <= now:
                raise HoldExpiredError(details={"status": hold["status"]})
            seats = uow.get_all([(SEATS, s["seat_id"]) for s in hold["seats"]])
            ids = [self.booking.new_id() for _ in hold["seats"]]
            series_id = self.booking.new_id()
            appointments = []
            for number, held in enumerate(hold["seats"]):
                seat = seats[(SEATS, held["seat_id"])]
                if seat is None or seat.data.get("hold_id") != hold_id:
                    raise HoldExpiredError()  # cannot happen before expiry: kept honest
                appointment = Appointment(
                    appointment_id=ids[number],
                    series_id=series_id,
                    patient_key=hold["patient_key"],
                    referral_id=hold["referral_id"],
                    dose_kind=hold["dose_kind"],
                    dose_number=held["dose_number"],
                    booster_number=hold["booster_number"],
                    product=held["product"],
                    point_id=held["point_id"],
                    slot_id=held["slot_id"],
                    seat_id=held["seat_id"],
                    starts_at=held["starts_at"],
                    day=held["day"],
                    channel=hold["channel"],
                    linked_appointment_id=(ids[1 - number] if len(ids) == 2 else None),
                    booked_by_role=hold["booked_by_role"],
                    created_at=now,
                    updated_at=now,
                )
                appointments.append(appointment)
                uow.update(
                    SEATS,
                    held["seat_id"],
                    {
                        "hold_id": _delete(),
                        "holder": _delete(),
                        "held_until": _delete(),
                    }
                    | seat_document(appointment, now),
                    if_version=seat.version,
                )
                lock_id = active_dose_lock_id(
                    appointment.patient_key,
                    appointment.dose_kind,
                    appointment.dose_number,
                    appointment.booster_number,
                )
                self.booking.stage_claim(uow, appointment, lock_id, now)
            uow.update(
                HOLDS,
                hold_id,
                {"status": "booked", "appointment_ids": ids, "updated_at": now},
                if_version=version,
            )
            uow.publish(AppointmentBooked.about(a, occurred_at=now) for a in appointments)
            uow.audit(actor, "hold.book", appointments, now, hold_id=hold_id)
            return uow.respond(StoredResponse(201, response_for(appointments)))

        def on_conflict(uow: UnitOfWork) -> StoredResponse | None:
            hold, _ = self._load(uow, hold_id, actor, patient_key)
            for held in hold["seats"]:
                lock = uow.get(
                    ACTIVE_DOSES,
                    active_dose_lock_id(
                        hold["patient_key"], hold["dose_kind"], held["dose_number"],
                        hold["booster_number"],
                    ),
                )  # fmt: skip
                if lock is not None:
                    if lock.data["appointment_id"] in hold.get("appointment_ids", []):
                        return None
                    raise AlreadyBookedError(
                        "this patient already has an active booking for this dose",
                        details={"appointment_id": lock.data["appointment_id"]},
                    )
            return None

        return self.units.run(attempt, idem=idem, on_conflict=on_conflict, gave_up=_busy)

    # -- release and expiry -----------------------------------------------------------------
    def release(
        self,
        hold_id: str,
        actor: Actor,
        patient_key: str | None,
        now: datetime,
        idem: IdempotencyScope | None = None,
        *,
        status: str = "released",
    ) -> StoredResponse:
        """Give the held seats back (at once; the sweeper does it at expiry)."""

        def attempt(uow: UnitOfWork) -> StoredResponse:
            hold, version = self._load(uow, hold_id, actor, patient_key)
            if hold["status"] != "held":
                return uow.respond(StoredResponse(200, {"hold": hold_view(hold)}))
            self._stage_release(uow, hold, version, now, status)
            uow.audit(actor, f"hold.{status}", [], now, hold_id=hold_id)
            return uow.respond(StoredResponse(200, {"hold": hold_view(hold | {"status": status})}))

        return self.units.run(attempt, idem=idem, gave_up=_busy)

    def _stage_release(
        self, uow: UnitOfWork, hold: dict[str, Any], version: Any, now: datetime, status: str
    ) -> None:
        seats = uow.get_all([(SEATS, s["seat_id"]) for s in hold["seats"]])
        for held in hold["seats"]:
            seat = seats[(SEATS, held["seat_id"])]
            if seat is not None and seat.data.get("hold_id") == hold["hold_id"]:
                uow.delete(SEATS, held["seat_id"], if_version=seat.version)
            # else: a booker took the expired seat over, and counted it; this hold's -1 is
            # given back all the same.
        stage_free_changes(uow, [(s["slot_id"], +1) for s in hold["seats"]], now)
        uow.update(HOLDS, hold["hold_id"], {"status": status, "updated_at": now},
                   if_version=version)  # fmt: skip

    def expire(self, now: datetime, limit: int = 200) -> dict[str, int]:
        """The sweeper: end every hold past its time (a few at a time, each once)."""
        found = self.units.reader().query(
            HOLDS, ("status", "==", "held"), ("expires_at", "<=", now), limit=limit
        )
        expired = 0
        for document in found:

            def attempt(uow: UnitOfWork, hold_id: str = document.id) -> bool:
                current = uow.get(HOLDS, hold_id)
                if current is None or current.data["status"] != "held":
                    return False
                if current.data["expires_at"] > now:
                    return False
                self._stage_release(uow, current.data, current.version, now, "expired")
                return True

            if self.units.run(attempt, gave_up=_busy):
                expired += 1
        return {"found": len(found), "expired": expired}

    def view(self, hold_id: str, actor: Actor, patient_key: str | None) -> dict[str, Any]:
        hold, _ = self._load(self.units.reader(), hold_id, actor, patient_key)
        return {"hold": hold_view(hold)}

    @staticmethod
    def _load(
        reader: UnitOfWork, hold_id: str, actor: Actor, patient_key: str | None
    ) -> tuple[dict[str, Any], Any]:
        if not hold_id or len(hold_id) > 64 or not hold_id.isalnum():
            raise HoldNotFoundError()
        found = reader.get(HOLDS, hold_id)
        if found is None:
            raise HoldNotFoundError()
        hold = found.data
        if actor.role == "patient" and hold["patient_key"] != patient_key:
            raise HoldNotFoundError()  # 404, not 403: nobody learns another's hold exists
        if actor.role not in ("patient", "agent", "admin", "system"):
            raise HoldNotFoundError()
        if actor.role == "agent" and not actor.reason:
            raise ValidationFailedError("an agent acting for a patient must give a 'reason'")
        return hold, found.version


def hold_view(hold: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a hold (no keyed patient id)."""

    def iso(value: Any) -> Any:
        return value.isoformat() if hasattr(value, "isoformat") else value

    return {
        "hold_id": hold["hold_id"],
        "status": hold["status"],
        "expires_at": iso(hold["expires_at"]),
        "slots": [
            {
                "slot_id": s["slot_id"],
                "point_id": s["point_id"],
                "starts_at": iso(s["starts_at"]),
                "product": s["product"],
                "dose_number": s["dose_number"],
                "seat": seat_index(s["seat_id"]),
            }
            for s in hold["seats"]
        ],
    }


def _delete() -> Any:
    from google.cloud.firestore_v1 import DELETE_FIELD

    return DELETE_FIELD
