"""The vaccines a patient may book on a date, judged by the rules in force (a read).

A search that offers a paediatric product to a 46-year-old, and refuses only after the click,
wastes the person's time and a seat's moment. The apps ask this first and offer only what the
rules allow: each product of the catalogue in force at `now` is put through the very checks a
booking makes (common/domain/eligibility.py: the e-referral, the cohort's opening on this
channel, the age on the visit day, the dose interval), for the dose the patient's history says
comes next (common/domain/series.py). A refused product says why (the error code a booking
would get, with its details), so an app can explain instead of hiding.

For each allowed product the answer gives what a person needs to know before committing: how
many doses, the interval to dose 2 (booked at the same time, at the same point), and the days
in which it may be booked (from the asked date, within the e-referral's validity and, for a
dose 2 after a given dose 1, within its window).

Reads only: the patient's e-referrals, vaccinations and dose locks (a product for a dose that
is booked already says so, with the appointment: move it rather than book again).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from datetime import date as Date  # a field is called `date`
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.adapters.firestore_store import ACTIVE_DOSES, REFERRALS, VACCINATIONS
from common.domain.appointments import active_dose_lock_id
from common.domain.eligibility import (
    Channel,
    PreviousDose,
    Referral,
    check_booking_eligibility,
)
from common.domain.errors import DomainError, ValidationFailedError
from common.domain.pesel import parse_pesel, pesel_key
from common.domain.rulebook import RuleBook
from common.domain.series import DosePlan, plan_next_dose
from common.domain.vaccines import VaccineProduct, second_dose_window
from common.domain.visits import local_day
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner

MAX_DAYS_AHEAD = 366  # as search: nobody books a vaccination years ahead


class EligibleProductsQuery(BaseModel):
    """GET /v1/me/eligible-products?date=: the calling patient's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date: Date | None = None


class EligibleProductsRequest(BaseModel):
    """POST /v1/patients/eligible-products: an agent's caller (the PESEL in the body)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    pesel: str = Field(pattern=r"^\d{11}$")
    date: Date | None = None
    reason: str = Field(min_length=3, max_length=500)


def _referral_for(referrals: Sequence[Referral], kind: str, day: date) -> Referral | None:
    """The referral a booking on `day` would be judged by (as booking picks it)."""
    matching = [r for r in referrals if r.kind == kind]
    active = [r for r in matching if r.status == "active"]
    covering = [r for r in active if r.valid_from <= day <= r.valid_to]
    for group in (covering, active, matching):
        if group:
            return max(group, key=lambda r: r.valid_to)
    return None


def _product_view(product: VaccineProduct) -> dict[str, Any]:
    return {
        "product": product.code,
        "name": product.name,
        "manufacturer": product.manufacturer,
        "platform": product.platform,
        "doses": product.doses,
        "min_interval_days": product.min_interval_days,
        "max_interval_days": product.max_interval_days,
        "planned_interval_days": product.planned_interval_days,
        "min_age": product.min_age,
        "max_age": product.max_age,
    }


class EligibleProductsService:
    def __init__(self, units: UnitOfWorkRunner, rule_book: RuleBook, secret: bytes) -> None:
        self.units = units
        self.rule_book = rule_book
        self.secret = secret

    def for_pesel(
        self, raw_pesel: str, day: date | None, channel: Channel, now: datetime
    ) -> dict[str, Any]:
        today = local_day(now)
        day = day or today
        if day < today:
            raise ValidationFailedError("the date is in the past", details={"field": "date"})
        if day > today + timedelta(days=MAX_DAYS_AHEAD):
            raise ValidationFailedError(
                f"dates may be at most {MAX_DAYS_AHEAD} days ahead", details={"field": "date"}
            )
        pesel = parse_pesel(raw_pesel, today)
        key = pesel_key(pesel, self.secret)
        reader = self.units.reader()
        history = [
            PreviousDose.model_validate(d.data["dose"])
            for d in reader.query(VACCINATIONS, ("patient_key", "==", key))
        ]
        referrals = [
            Referral.model_validate(d.data["referral"])
            for d in reader.query(REFERRALS, ("patient_key", "==", key))
        ]
        rules = self.rule_book.rules_at(now)
        allowed: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        booked: dict[str, str | None] = {}
        for product in rules.catalogue.products:
            try:
                plan = plan_next_dose(history, product, rules.catalogue)
                start, end = self._days(plan, product, referrals, day)
                check_booking_eligibility(
                    birth_date=pesel.birth_date,
                    referral=_referral_for(referrals, plan.kind, start),
                    product=product,
                    visit_date=start,
                    now=now,
                    channel=channel,
                    cohorts=rules.cohorts,
                    previous_doses=history,
                )
            except DomainError as err:
                refused.append(
                    _product_view(product)
                    | {
                        "code": err.code,
                        "message": err.message,
                        "details": err.details,
                    }
                )
                continue
            allowed.append(
                _product_view(product)
                | {
                    "dose_kind": plan.kind,
                    "dose_number": plan.dose_number,
                    "books_second_dose": plan.books_second_dose,
                    "date_from": start.isoformat(),
                    "date_to": end.isoformat() if end else None,
                    "booked_appointment_id": self._booked(reader, booked, key, plan),
                }
            )
        return {
            "date": day.isoformat(),
            "channel": channel,
            "rules": rules.versions,
            "products": allowed,
            "not_eligible": refused,
        }

    @staticmethod
    def _days(
        plan: DosePlan, product: VaccineProduct, referrals: Sequence[Referral], day: date
    ) -> tuple[date, date | None]:
        """The first and last day this dose may be booked from `day` on (None: no end known)."""
        start, end = day, None
        referral = _referral_for(referrals, plan.kind, day)
        if referral is not None and referral.status == "active":
            start = max(start, referral.valid_from)
            end = referral.valid_to
        first = plan.first_dose
        if first is not None and product.doses == 2 and first.product_code == product.code:
            earliest, latest, _ = second_dose_window(product, first.given_on)
            start = max(start, earliest)
            end = latest if end is None else min(end, latest)
        if end is not None and end < start:
            end = start  # the checks below refuse it, and say why
        return start, end

    @staticmethod
    def _booked(
        reader: UnitOfWork, seen: dict[str, str | None], key: str, plan: DosePlan
    ) -> str | None:
        lock_id = active_dose_lock_id(key, plan.kind, plan.dose_number, plan.booster_number)
        if lock_id not in seen:
            found = reader.get(ACTIVE_DOSES, lock_id)
            seen[lock_id] = found.data.get("appointment_id") if found is not None else None
        return seen[lock_id]
