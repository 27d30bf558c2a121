"""Integration events: frozen, versioned, named in the past tense.

Published as JSON on Pub/Sub with `event_type` as a message attribute; consumers dedupe by
`event_id` (delivery is at least once). No PESEL, name or phone number ever travels in an
event: the patient is named by `patient_key`, a keyed hash.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict


class DomainEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str] = "event"
    topic: ClassVar[str] = "appointment-events"
    schema_version: ClassVar[int] = 1

    event_id: str
    occurred_at: datetime

    @classmethod
    def about(cls, appointment: Any, *, occurred_at: datetime, **fields: Any) -> Self:
        """The event for an appointment: every field the event shares with the appointment is
        copied from it (appointment_id, series_id, patient_key, point_id, slot_id, product,
        dose_number, starts_at, ...); `fields` gives the rest or overrides."""
        shared = {
            name: getattr(appointment, name)
            for name in cls.model_fields
            if name not in fields
            and name not in ("event_id", "occurred_at")
            and hasattr(appointment, name)
        }
        return cls(event_id=uuid.uuid4().hex, occurred_at=occurred_at, **shared, **fields)

    def envelope(self) -> dict[str, Any]:
        body = self.model_dump(mode="json")
        body["event_type"] = self.event_type
        body["schema_version"] = self.schema_version
        return body


class AppointmentEvent(DomainEvent):
    """What every event about one appointment's slot says: which visit, whose, where, when."""

    appointment_id: str
    series_id: str
    patient_key: str
    point_id: str
    slot_id: str
    product: str
    dose_number: int
    starts_at: datetime


class AppointmentBooked(AppointmentEvent):
    event_type: ClassVar[str] = "appointment.booked"

    channel: str
    linked_appointment_id: str | None = None


class AppointmentCancelled(AppointmentEvent):
    event_type: ClassVar[str] = "appointment.cancelled"

    channel: str
    reason: str | None = None


class AppointmentRescheduled(DomainEvent):
    event_type: ClassVar[str] = "appointment.rescheduled"

    appointment_id: str
    series_id: str
    patient_key: str
    product: str
    dose_number: int
    from_slot_id: str
    to_slot_id: str
    from_point_id: str
    to_point_id: str
    starts_at: datetime
    channel: str


class SlotOffer(BaseModel):
    """A free slot offered to a displaced patient instead of the one they lost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slot_id: str
    point_id: str
    starts_at: datetime
    distance_km: float


class AppointmentDisplaced(AppointmentEvent):
    """A point lowered a slot's capacity or removed the slot: this booked visit lost its seat.

    The visit is cancelled in the same commit; `alternatives` are the nearest free slots of
    the same product that the rules in force when it is displaced let the patient book (none
    if their age no longer allows the product; for a dose 2, inside its window after dose 1;
    otherwise from the visit's day on), for the notification that offers them.
    """

    event_type: ClassVar[str] = "appointment.displaced"

    reason: str
    alternatives: tuple[SlotOffer, ...] = ()


class AppointmentNoShow(AppointmentEvent):
    event_type: ClassVar[str] = "appointment.no_show"


class VaccinationCompleted(DomainEvent):
    """A dose was given (a booked visit or a walk-in): P1 writes the vaccination record."""

    event_type: ClassVar[str] = "vaccination.completed"

    appointment_id: str
    patient_key: str
    product: str
    lot_number: str
    dose_number: int
    dose_kind: str
    point_id: str
    given_on: date
    walk_in: bool = False
    leftover_dose: bool = False
    referral_id: str | None = None


EVENT_TYPES: dict[str, type[DomainEvent]] = {
    cls.event_type: cls
    for cls in (
        AppointmentBooked,
        AppointmentCancelled,
        AppointmentRescheduled,
        AppointmentDisplaced,
        AppointmentNoShow,
        VaccinationCompleted,
    )
}
