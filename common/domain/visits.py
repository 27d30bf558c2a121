"""Carrying out a visit: when it may be recorded, which dose it is, what closes a referral."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from common.domain.appointments import Appointment, AppointmentStatus, DoseKind
from common.domain.calendar import WARSAW
from common.domain.eligibility import PreviousDose, age_on
from common.domain.errors import (
    AgeNotAllowedError,
    InvalidStateTransitionError,
    ValidationFailedError,
    VisitNotDueError,
)
from common.domain.pesel import Pesel
from common.domain.vaccines import VaccineProduct

LOT_NUMBER_PATTERN = r"^[A-Z0-9-]{3,20}$"


def local_day(now: datetime) -> date:
    return now.astimezone(WARSAW).date()


def require_booked(appointment: Appointment, action: str) -> None:
    if appointment.status is not AppointmentStatus.BOOKED:
        raise InvalidStateTransitionError(
            f"cannot {action} a visit that is {appointment.status.value}",
            details={"status": appointment.status.value},
        )


def require_visit_day(appointment: Appointment, now: datetime) -> None:
    """Check-in and completion happen on the visit's day (Warsaw) or later."""
    if local_day(now) < appointment.day:
        raise VisitNotDueError(
            f"the visit is on {appointment.day.isoformat()}",
            details={"day": appointment.day.isoformat()},
        )


def require_started(appointment: Appointment, now: datetime) -> None:
    if now < appointment.starts_at:
        raise VisitNotDueError(
            "a no-show is recorded only once the visit has started",
            details={"starts_at": appointment.starts_at.isoformat()},
        )


def completes_referral(kind: DoseKind, dose_number: int, product: VaccineProduct) -> bool:
    """A referral is used once the primary series (or the booster) is complete."""
    return kind == "booster" or dose_number >= product.doses


def leftover_dose_plan(
    history: Sequence[PreviousDose], product: VaccineProduct
) -> tuple[DoseKind, int]:
    """Which dose a leftover-dose walk-in is: it never refuses (only the age limit does)."""
    primary = [d for d in history if d.kind == "primary"]
    if not primary:
        return "primary", 1
    first = min(primary, key=lambda d: d.given_on)
    if first.product_code == product.code and len(primary) < product.doses:
        return "primary", len(primary) + 1
    return "booster", 1 + sum(1 for d in history if d.kind == "booster")


def check_product_age(product: VaccineProduct, birth_date: date, day: date) -> None:
    age = age_on(birth_date, day)
    if not product.allows_age(age):
        raise AgeNotAllowedError(
            f"{product.name} is not authorised for the patient's age ({age}).",
            details={"product": product.code, "min_age": product.min_age},
        )


def patient_summary(pesel: Pesel | None) -> dict[str, object]:
    """How a patient appears in a list: never the full PESEL."""
    if pesel is None:
        return {"masked_pesel": None, "birth_year": None, "sex": None}
    return {"masked_pesel": pesel.masked, "birth_year": pesel.birth_date.year, "sex": pesel.sex}


def require_same_product(appointment: Appointment, product: str) -> None:
    if product != appointment.product:
        raise ValidationFailedError(
            "the product given differs from the booked one; record a walk-in instead",
            details={"booked_product": appointment.product},
        )
