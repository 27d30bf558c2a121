"""Eligibility rules as versioned data: which cohort and vaccine rules are in force on a day.

`rules/index.yaml` lists the versions of each kind with the day each takes effect. Pure apart
from ``load_rule_book`` (the only I/O): ``rules_for(day)`` is a lookup, and ``day`` is always a
parameter (a Warsaw date), never the clock; ``rules_at(now)`` is the same lookup for the Warsaw
day of a moment the caller passes in.

Every service takes a ``RuleBook`` and judges each decision (dose 1, the dose-2 window, a move,
a walk-in, a displaced patient's alternatives, the SMS dialog's products, a product's name) by
``rules_at(now)`` of that decision, so a new version (a new file plus a line in index.yaml)
changes the whole system from its day on. ``RuleBook.fixed`` pins one rule set (tests).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field

from common.domain.calendar import WARSAW
from common.domain.eligibility import CohortRules, load_cohort_rules
from common.domain.vaccines import VaccineCatalogue, load_catalogue

RULES_DIR = Path(__file__).parent / "rules"
INDEX_FILE = "index.yaml"
_T = TypeVar("_T")


class RuleVersion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1)
    effective_from: date
    file: str = Field(pattern=r"^[A-Za-z0-9._-]+\.yaml$")


class RuleIndex(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cohorts: tuple[RuleVersion, ...] = Field(min_length=1)
    vaccines: tuple[RuleVersion, ...] = Field(min_length=1)


@dataclass(frozen=True)
class RuleSet:
    """The rules in force on one day."""

    cohorts: CohortRules
    catalogue: VaccineCatalogue

    @property
    def versions(self) -> dict[str, str]:
        return {"cohorts": self.cohorts.version, "vaccines": self.catalogue.version}


def _pick(versions: tuple[tuple[date, _T], ...], day: date) -> _T:
    starts = [start for start, _ in versions]
    index = bisect.bisect_right(starts, day) - 1
    return versions[max(index, 0)][1]


@dataclass(frozen=True)
class RuleBook:
    cohort_versions: tuple[tuple[date, CohortRules], ...]
    catalogue_versions: tuple[tuple[date, VaccineCatalogue], ...]

    def cohorts_for(self, day: date) -> CohortRules:
        return _pick(self.cohort_versions, day)

    def catalogue_for(self, day: date) -> VaccineCatalogue:
        return _pick(self.catalogue_versions, day)

    def rules_for(self, day: date) -> RuleSet:
        return RuleSet(self.cohorts_for(day), self.catalogue_for(day))

    def rules_at(self, now: datetime) -> RuleSet:
        """The rules in force at the moment ``now`` (aware): those of its Warsaw day."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        return self.rules_for(now.astimezone(WARSAW).date())

    @classmethod
    def fixed(cls, catalogue: VaccineCatalogue, cohorts: CohortRules) -> RuleBook:
        """A book of one version of each kind, in force on every day (tests pin rules so)."""
        return cls(((date.min, cohorts),), ((date.min, catalogue),))

    @property
    def latest(self) -> RuleSet:
        return RuleSet(self.cohort_versions[-1][1], self.catalogue_versions[-1][1])


def _ordered(kind: str, versions: tuple[RuleVersion, ...]) -> None:
    starts = [v.effective_from for v in versions]
    if starts != sorted(set(starts)):
        raise ValueError(f"{kind} versions must have distinct, increasing effective_from")


def load_rule_book(directory: Path = RULES_DIR) -> RuleBook:
    """Read the index and every version it names; a file's own `version` must match."""
    raw = yaml.safe_load((directory / INDEX_FILE).read_text(encoding="utf-8"))
    index = RuleIndex.model_validate(raw)
    _ordered("cohorts", index.cohorts)
    _ordered("vaccines", index.vaccines)
    cohorts = []
    for entry in index.cohorts:
        rules = load_cohort_rules(directory / entry.file)
        _same_version("cohorts", entry, rules.version)
        cohorts.append((entry.effective_from, rules))
    catalogues = []
    for entry in index.vaccines:
        catalogue = load_catalogue(directory / entry.file)
        _same_version("vaccines", entry, catalogue.version)
        catalogues.append((entry.effective_from, catalogue))
    return RuleBook(tuple(cohorts), tuple(catalogues))


def _same_version(kind: Literal["cohorts", "vaccines"], entry: RuleVersion, found: str) -> None:
    if entry.version != found:
        raise ValueError(
            f"{kind} file {entry.file} says version {found}, the index says {entry.version}"
        )
