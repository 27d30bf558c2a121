"""Which dose a new booking is for, from the patient's vaccination history, and where a
displaced visit may be booked again (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from common.domain.appointments import DoseKind
from common.domain.eligibility import PreviousDose, age_on
from common.domain.errors import DoseIntervalError
from common.domain.vaccines import VaccineCatalogue, VaccineProduct, second_dose_window


@dataclass(frozen=True)
class DosePlan:
    kind: DoseKind
    dose_number: int
    booster_number: int
    # A two-dose primary series is booked whole: dose 1 and dose 2 in one commit.
    books_second_dose: bool
    first_dose: PreviousDose | None = None


def plan_next_dose(
    history: Sequence[PreviousDose], product: VaccineProduct, catalogue: VaccineCatalogue
) -> DosePlan:
    primary = sorted((d for d in history if d.kind == "primary"), key=lambda d: d.given_on)
    if not primary:
        return DosePlan("primary", 1, 0, books_second_dose=product.doses == 2)
    series_product = catalogue.get(primary[0].product_code)
    if len(primary) < series_product.doses:
        if product.code != series_product.code:
            raise DoseIntervalError(
                f"the second dose must be {series_product.name}, like the first",
                details={"required_product": series_product.code},
            )
        return DosePlan("primary", len(primary) + 1, 0, False, first_dose=primary[-1])
    boosters = sum(1 for d in history if d.kind == "booster")
    return DosePlan("booster", 1, boosters + 1, books_second_dose=False)


def rebooking_days(
    catalogue: VaccineCatalogue,
    product_code: str,
    dose_number: int,
    visit_day: date,
    *,
    first_dose_day: date | None = None,
    birth_date: date | None = None,
) -> tuple[date, date | None] | None:
    """The days (inclusive; an open end means the search's own horizon) in which a displaced
    visit may be booked again under ``catalogue`` (the rules in force when it is displaced),
    or None when these rules leave nothing to offer: the product is gone, or it is not
    authorised for the patient's age. A dose 2 keeps the window after dose 1 that these rules
    set; any other visit is offered from its own day on."""
    if product_code not in catalogue:
        return None
    product = catalogue.get(product_code)
    if dose_number == 2 and first_dose_day is not None and product.doses == 2:
        earliest, latest, _planned = second_dose_window(product, first_dose_day)
        start: date = earliest
        end: date | None = latest
    else:
        start, end = visit_day, None
    if birth_date is not None and not product.allows_age(age_on(birth_date, start)):
        return None
    return start, end
