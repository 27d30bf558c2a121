"""Which dose a new booking is for, from the patient's vaccination history (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from common.domain.appointments import DoseKind
from common.domain.eligibility import PreviousDose
from common.domain.errors import DoseIntervalError
from common.domain.vaccines import VaccineCatalogue, VaccineProduct


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
