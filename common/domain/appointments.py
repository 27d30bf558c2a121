"""Appointments and their life cycle, as pure data and pure transitions."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from common.domain.errors import InvalidStateTransitionError

Channel = Literal["portal", "hotline", "point", "sms"]
DoseKind = Literal["primary", "booster"]


class AppointmentStatus(StrEnum):
    BOOKED = "booked"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


ACTIVE_STATUSES = frozenset({AppointmentStatus.BOOKED})


class Appointment(BaseModel):
    """One dose at one slot for one patient. The patient is named only by a keyed hash."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    appointment_id: str
    series_id: str
    patient_key: str
    referral_id: str
    dose_kind: DoseKind
    dose_number: int
    booster_number: int = 0
    product: str
    point_id: str
    slot_id: str
    seat_id: str
    starts_at: datetime
    day: date
    status: AppointmentStatus = AppointmentStatus.BOOKED
    channel: Channel
    linked_appointment_id: str | None = None
    booked_by_role: str
    created_at: datetime
    updated_at: datetime

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def _require_booked(self, action: str) -> None:
        if self.status is not AppointmentStatus.BOOKED:
            raise InvalidStateTransitionError(
                f"cannot {action} an appointment that is {self.status.value}",
                details={"status": self.status.value},
            )

    def cancelled(self, now: datetime) -> Appointment:
        self._require_booked("cancel")
        return self.model_copy(update={"status": AppointmentStatus.CANCELLED, "updated_at": now})

    def moved_to(
        self,
        slot_id: str,
        seat_id: str,
        point_id: str,
        starts_at: datetime,
        day: date,
        now: datetime,
    ) -> Appointment:
        self._require_booked("reschedule")
        return self.model_copy(
            update={
                "slot_id": slot_id,
                "seat_id": seat_id,
                "point_id": point_id,
                "starts_at": starts_at,
                "day": day,
                "updated_at": now,
            }
        )

    def to_document(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        # Firestore keeps real timestamps for ordering and TTL; dates stay ISO strings.
        data["starts_at"] = self.starts_at
        data["created_at"] = self.created_at
        data["updated_at"] = self.updated_at
        return data

    def to_api(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"patient_key", "seat_id"})
        return data


def active_dose_lock_id(
    patient_key: str, dose_kind: DoseKind, dose_number: int, booster_no: int = 0
) -> str:
    """The document that makes "one active booking per patient and dose" a create() precondition."""
    series = dose_kind if dose_kind == "primary" else f"booster{booster_no}"
    return f"{patient_key}_{series}_{dose_number}"
