"""Who may book which vaccine when: e-referral, cohort opening, age and dose-interval rules.

Everything here is pure; ``now`` and dates are always parameters. The only I/O is reading
the cohort YAML in ``load_cohort_rules``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.domain.errors import (
    AgeNotAllowedError,
    BoosterNotAllowedError,
    CohortNotOpenError,
    DoseIntervalError,
    ReferralExpiredError,
    ReferralMissingError,
    ReferralNotYetValidError,
    ReferralUsedError,
)
from common.domain.vaccines import (
    DEFAULT_BOOSTER_POLICY,
    BoosterPolicy,
    BoosterRule,
    VaccineProduct,
    second_dose_window,
)

DEFAULT_COHORTS_PATH = Path(__file__).parent / "rules" / "cohorts.yaml"

Channel = Literal["portal", "hotline", "point", "sms"]
CHANNELS: tuple[Channel, ...] = get_args(Channel)
DoseKind = Literal["primary", "booster"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- age -------------------------------------------------------------------------------


def age_on(birth_date: date, day: date) -> int:
    """Age in full years on ``day``.

    Someone born on 29 February turns a year older on 1 March in common years (the
    birthday has not "happened" on 28 February), the usual convention for age limits.
    """
    if day < birth_date:
        raise ValueError("day is before birth_date")
    had_birthday = (day.month, day.day) >= (birth_date.month, birth_date.day)
    return day.year - birth_date.year - (0 if had_birthday else 1)


# --- cohorts ---------------------------------------------------------------------------


class CohortOpening(_Frozen):
    """Birth years ``born_from``..``born_to`` (inclusive; None = unbounded) open at ``opens_at``.

    ``opens_at`` is wall-clock time in the rules' timezone when naive; an aware value is
    converted to it.
    """

    born_from: int | None = None
    born_to: int | None = None
    opens_at: datetime

    @model_validator(mode="after")
    def _ordered(self) -> CohortOpening:
        lo, hi = self.born_from, self.born_to
        if lo is not None and hi is not None and lo > hi:
            raise ValueError("born_from must not be after born_to")
        return self

    def covers(self, birth_year: int) -> bool:
        return (self.born_from is None or birth_year >= self.born_from) and (
            self.born_to is None or birth_year <= self.born_to
        )


class CohortRules(_Frozen):
    version: str
    timezone: str = "Europe/Warsaw"
    # Wall-clock delay per channel after a cohort's opening (the hotline starts at 06:00).
    channel_delay_hours: dict[Channel, int]
    cohorts: tuple[CohortOpening, ...]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @field_validator("channel_delay_hours")
    @classmethod
    def _every_channel(cls, value: dict[Channel, int]) -> dict[Channel, int]:
        missing = set(CHANNELS) - set(value)
        if missing:
            raise ValueError(f"channel_delay_hours lacks {sorted(missing)}")
        if any(h < 0 for h in value.values()):
            raise ValueError("channel delays must not be negative")
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _local(self, moment: datetime) -> datetime:
        return (
            moment.replace(tzinfo=self.tz) if moment.tzinfo is None else moment.astimezone(self.tz)
        )

    def opens_at(self, birth_date: date, channel: Channel) -> datetime | None:
        """When this birth date's cohort may book on ``channel`` (aware, local), or None
        if no opening is scheduled yet."""
        openings = [self._local(c.opens_at) for c in self.cohorts if c.covers(birth_date.year)]
        if not openings:
            return None
        earliest = min(openings, key=lambda moment: moment.astimezone(UTC))
        # Adding to a ZoneInfo-aware datetime is wall-clock arithmetic: 00:00 + 6 h is 06:00
        # local even on a DST-change night, which is what "the hotline opens at 6" means.
        return earliest + timedelta(hours=self.channel_delay_hours[channel])

    def is_open(self, birth_date: date, channel: Channel, now: datetime) -> bool:
        _require_aware(now)
        opening = self.opens_at(birth_date, channel)
        return opening is not None and now.astimezone(UTC) >= opening.astimezone(UTC)


def load_cohort_rules(path: Path | None = None) -> CohortRules:
    """Read the cohort YAML (default: the packaged one). The only I/O in this module."""
    with (path or DEFAULT_COHORTS_PATH).open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    return CohortRules.model_validate(raw)


def _require_aware(now: datetime) -> None:
    # A naive 'now' would silently be read as UTC or local depending on the caller.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


# --- referral and dose history ---------------------------------------------------------


class Referral(_Frozen):
    """An e-referral (e-skierowanie) issued by P1. Booking does not consume it: it becomes
    ``used`` only once the dose is given, so a booked visit can still be rescheduled."""

    referral_id: str = Field(min_length=1)
    kind: DoseKind
    valid_from: date
    valid_to: date
    status: Literal["active", "used", "cancelled"] = "active"
    # For boosters: 1 = first booster, 2 = second... 0 = not stated (inferred from history).
    booster_number: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Referral:
        if self.valid_to < self.valid_from:
            raise ValueError("valid_to must not be before valid_from")
        return self


class PreviousDose(_Frozen):
    product_code: str
    dose_number: int = Field(ge=1)
    given_on: date
    # Needed only to count earlier boosters when a referral does not state its number.
    kind: DoseKind = "primary"


# --- checks ----------------------------------------------------------------------------


def check_booking_eligibility(
    *,
    birth_date: date,
    referral: Referral | None,
    product: VaccineProduct,
    visit_date: date,
    now: datetime,
    channel: Channel,
    cohorts: CohortRules,
    previous_doses: Sequence[PreviousDose] = (),
    booster_policy: BoosterPolicy = DEFAULT_BOOSTER_POLICY,
) -> None:
    """Raise the DomainError explaining why this booking is refused; return None if allowed.

    Order matters for the error the patient sees: referral, then cohort, then age, then
    dose rules.
    """
    _require_aware(now)
    referral = _check_referral(referral, visit_date)
    _check_cohort(cohorts, birth_date, channel, now)
    age = age_on(birth_date, visit_date)
    _check_product_age(product, age)
    if referral.kind == "booster":
        _check_booster(product, age, referral, visit_date, previous_doses, booster_policy)
    else:
        _check_primary_interval(product, visit_date, previous_doses)


def _check_referral(referral: Referral | None, visit_date: date) -> Referral:
    if referral is None or referral.status == "cancelled":
        raise ReferralMissingError()
    if referral.status == "used":
        raise ReferralUsedError()
    if visit_date < referral.valid_from:
        raise ReferralNotYetValidError(
            f"The e-referral is valid from {referral.valid_from.isoformat()}.",
            details={"valid_from": referral.valid_from.isoformat()},
        )
    if visit_date > referral.valid_to:
        raise ReferralExpiredError(
            f"The e-referral was valid until {referral.valid_to.isoformat()}.",
            details={"valid_to": referral.valid_to.isoformat()},
        )
    return referral


def _check_cohort(cohorts: CohortRules, birth_date: date, channel: Channel, now: datetime) -> None:
    if cohorts.is_open(birth_date, channel, now):
        return
    opening = cohorts.opens_at(birth_date, channel)
    if opening is None:
        raise CohortNotOpenError(details={"channel": channel, "opens_at": None})
    raise CohortNotOpenError(
        f"Registration for your age group opens on {opening:%Y-%m-%d at %H:%M} "
        f"({cohorts.timezone}) via this channel.",
        details={"channel": channel, "opens_at": opening.isoformat()},
    )


def _age_band(min_age: int, max_age: int | None) -> str:
    return f"{min_age}+" if max_age is None else f"{min_age}-{max_age}"


def _check_product_age(product: VaccineProduct, age: int) -> None:
    if not product.allows_age(age):
        band = _age_band(product.min_age, product.max_age)
        raise AgeNotAllowedError(
            f"{product.name} is authorised for ages {band} on the visit date.",
            details={
                "product": product.code,
                "min_age": product.min_age,
                "max_age": product.max_age,
            },
        )


def _check_primary_interval(
    product: VaccineProduct, visit_date: date, previous_doses: Sequence[PreviousDose]
) -> None:
    primary = [d for d in previous_doses if d.kind == "primary"]
    if not primary:
        return
    last = max(primary, key=lambda d: d.given_on)
    # Only a same-product continuation has a window in our data; cross-product schedules
    # are a medical decision taken at the point.
    if last.product_code == product.code and last.dose_number < product.doses:
        second_dose_allowed(product, last.given_on, visit_date)


def _booster_number(referral: Referral, previous_doses: Sequence[PreviousDose]) -> int:
    if referral.booster_number:
        return referral.booster_number
    return 1 + sum(1 for d in previous_doses if d.kind == "booster")


def _check_booster(
    product: VaccineProduct,
    age: int,
    referral: Referral,
    visit_date: date,
    previous_doses: Sequence[PreviousDose],
    policy: BoosterPolicy,
) -> None:
    if not product.booster_eligible:
        raise BoosterNotAllowedError(
            f"{product.name} is not used for booster doses; boosters are mRNA only.",
            details={"product": product.code, "reason": "product_not_booster_eligible"},
        )
    number = _booster_number(referral, previous_doses)
    rules = policy.rules_for(number)
    if not rules:
        raise BoosterNotAllowedError(
            f"Booster dose number {number} is not offered.",
            details={"booster_number": number, "reason": "booster_number_not_offered"},
        )
    rule = _rule_for_age(rules, age)
    if not previous_doses:
        raise BoosterNotAllowedError(
            "No completed primary vaccination is recorded.",
            details={"reason": "no_previous_dose"},
        )
    last = max(previous_doses, key=lambda d: d.given_on)
    earliest = last.given_on + timedelta(days=rule.min_days_since_last_dose)
    if visit_date < earliest:
        raise DoseIntervalError(
            f"Booster {number} needs at least {rule.min_days_since_last_dose} days after the "
            f"previous dose: earliest {earliest.isoformat()}.",
            details={
                "booster_number": number,
                "min_days": rule.min_days_since_last_dose,
                "days_since_last_dose": (visit_date - last.given_on).days,
                "earliest": earliest.isoformat(),
            },
        )


def _rule_for_age(rules: Sequence[BoosterRule], age: int) -> BoosterRule:
    for rule in rules:
        if rule.allows_age(age):
            return rule
    bands = ", ".join(_age_band(r.min_age, r.max_age) for r in rules)
    raise AgeNotAllowedError(
        f"Booster dose {rules[0].booster_number} is offered to ages {bands} only.",
        details={"booster_number": rules[0].booster_number, "reason": "booster_age"},
    )


def second_dose_allowed(
    product: VaccineProduct, first_dose_date: date, second_dose_date: date
) -> None:
    """Raise DoseIntervalError unless dose 2 falls in the product's window (inclusive)."""
    if product.doses < 2:
        raise DoseIntervalError(
            f"{product.name} is a single-dose vaccine.",
            details={"product": product.code, "reason": "single_dose_product"},
        )
    earliest, latest, _planned = second_dose_window(product, first_dose_date)
    if not earliest <= second_dose_date <= latest:
        raise DoseIntervalError(
            f"Dose 2 of {product.name} must be given {product.min_interval_days}-"
            f"{product.max_interval_days} days after dose 1: between {earliest.isoformat()} "
            f"and {latest.isoformat()}.",
            details={
                "product": product.code,
                "earliest": earliest.isoformat(),
                "latest": latest.isoformat(),
            },
        )
