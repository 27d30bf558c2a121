"""Vaccine catalogue: products, dose intervals, age limits and booster rules, loaded as data."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.domain.errors import UnknownProductError

DEFAULT_CATALOGUE_PATH = Path(__file__).parent / "rules" / "vaccines.yaml"

Platform = Literal["mRNA", "vector", "protein"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VaccineProduct(_Frozen):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    manufacturer: str
    platform: Platform
    doses: int = Field(ge=1, le=2)
    min_interval_days: int | None = Field(default=None, ge=1)
    max_interval_days: int | None = Field(default=None, ge=1)
    planned_interval_days: int | None = Field(default=None, ge=1)
    min_age: int = Field(ge=0)
    max_age: int | None = Field(default=None, ge=0)
    booster_eligible: bool = False

    @model_validator(mode="after")
    def _coherent(self) -> VaccineProduct:
        intervals = (self.min_interval_days, self.max_interval_days, self.planned_interval_days)
        if self.doses == 1:
            if any(i is not None for i in intervals):
                raise ValueError(f"{self.code}: a 1-dose product has no dose interval")
        else:
            lo, hi, planned = intervals
            if lo is None or hi is None or planned is None or not lo <= planned <= hi:
                raise ValueError(f"{self.code}: need min <= planned <= max interval days")
        if self.max_age is not None and self.max_age < self.min_age:
            raise ValueError(f"{self.code}: max_age < min_age")
        return self

    def allows_age(self, age: int) -> bool:
        return age >= self.min_age and (self.max_age is None or age <= self.max_age)


class BoosterRule(_Frozen):
    """Booster number N is allowed in an age band once enough days passed since the last dose."""

    booster_number: int = Field(ge=1)
    min_age: int = Field(ge=0)
    max_age: int | None = Field(default=None, ge=0)
    min_days_since_last_dose: int = Field(ge=0)

    def allows_age(self, age: int) -> bool:
        return age >= self.min_age and (self.max_age is None or age <= self.max_age)


class BoosterPolicy(_Frozen):
    rules: tuple[BoosterRule, ...]

    def rules_for(self, booster_number: int) -> tuple[BoosterRule, ...]:
        return tuple(r for r in self.rules if r.booster_number == booster_number)


# Kept in code (identical to rules/vaccines.yaml, a test enforces it) so pure functions
# have a sensible default without reading a file.
DEFAULT_BOOSTER_POLICY = BoosterPolicy(
    rules=(
        BoosterRule(booster_number=1, min_age=18, min_days_since_last_dose=150),
        BoosterRule(booster_number=2, min_age=80, min_days_since_last_dose=150),
        BoosterRule(booster_number=2, min_age=60, max_age=79, min_days_since_last_dose=120),
    )
)


class VaccineCatalogue(_Frozen):
    version: str
    effective_from: date
    products: tuple[VaccineProduct, ...]
    boosters: BoosterPolicy = DEFAULT_BOOSTER_POLICY

    @model_validator(mode="after")
    def _unique_codes(self) -> VaccineCatalogue:
        codes = [p.code for p in self.products]
        if len(codes) != len(set(codes)):
            raise ValueError("duplicate product codes in catalogue")
        return self

    @property
    def _by_code(self) -> Mapping[str, VaccineProduct]:
        return {p.code: p for p in self.products}

    def get(self, code: str) -> VaccineProduct:
        try:
            return self._by_code[code]
        except KeyError:
            raise UnknownProductError(
                f"Unknown vaccine product: {code!r}.", details={"product": code}
            ) from None

    def codes(self) -> tuple[str, ...]:
        return tuple(p.code for p in self.products)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def for_age(self, age: int) -> tuple[VaccineProduct, ...]:
        """Products authorised for a patient of ``age`` full years (catalogue order)."""
        return tuple(p for p in self.products if p.allows_age(age))


def load_catalogue(path: Path | None = None) -> VaccineCatalogue:
    """Read the catalogue YAML (default: the packaged one). The only I/O in this module."""
    with (path or DEFAULT_CATALOGUE_PATH).open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    return VaccineCatalogue.model_validate(raw)


def second_dose_window(product: VaccineProduct, first_dose_date: date) -> tuple[date, date, date]:
    """(earliest, latest, planned) dates for dose 2, all inclusive."""
    lo, hi, planned = (
        product.min_interval_days,
        product.max_interval_days,
        product.planned_interval_days,
    )
    if product.doses < 2 or lo is None or hi is None or planned is None:
        raise ValueError(f"{product.code} is a single-dose product; it has no second dose")
    return (
        first_dose_date + timedelta(days=lo),
        first_dose_date + timedelta(days=hi),
        first_dose_date + timedelta(days=planned),
    )
