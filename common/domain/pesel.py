"""PESEL (Polish national identification number): parsing, validation, masking, keyed IDs.

A PESEL is special-category personal data: it must never appear in logs, URLs, error
messages or document IDs in clear. Hence ``Pesel`` masks itself when printed and
``pesel_key`` derives an opaque, keyed identifier from it.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.domain.errors import InvalidPeselError

PESEL_LENGTH = 11
_WEIGHTS = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
# Month offset -> first year of the century it encodes.
_CENTURY_BY_OFFSET = {80: 1800, 0: 1900, 20: 2000, 40: 2100, 60: 2200}
_OFFSET_BY_CENTURY = {century: offset for offset, century in _CENTURY_BY_OFFSET.items()}
MIN_BIRTH_YEAR = 1800
MAX_BIRTH_YEAR = 2299
_MAX_SERIAL = 4999  # four digits ZZZX carry serial * 2 + sex bit
_KEY_HEX_CHARS = 32

Sex = Literal["F", "M"]


def _check_digit(first_ten: str) -> int:
    total = sum(int(d) * w for d, w in zip(first_ten, _WEIGHTS, strict=True))
    return (10 - total % 10) % 10


def _decode(raw: object) -> tuple[str, date, Sex]:
    """Structural validation without reference to 'today'. Messages never echo the input."""
    if not isinstance(raw, str):
        raise InvalidPeselError("PESEL must be a string.", details={"reason": "format"})
    value = raw.strip()
    if len(value) != PESEL_LENGTH:
        raise InvalidPeselError(
            f"PESEL must have exactly {PESEL_LENGTH} digits (got {len(value)} characters).",
            details={"reason": "length"},
        )
    # isdigit() accepts non-ASCII digits such as Arabic-Indic ones; PESEL is ASCII only.
    if not (value.isascii() and value.isdigit()):
        raise InvalidPeselError("PESEL must contain only digits 0-9.", details={"reason": "format"})

    year2, month_field, day = int(value[0:2]), int(value[2:4]), int(value[4:6])
    offset = month_field // 20 * 20
    month = month_field - offset
    if offset not in _CENTURY_BY_OFFSET or not 1 <= month <= 12:
        raise InvalidPeselError(
            "PESEL has an invalid month field (no month/century encodes it).",
            details={"reason": "month"},
        )
    try:
        birth_date = date(_CENTURY_BY_OFFSET[offset] + year2, month, day)
    except ValueError:
        raise InvalidPeselError(
            "PESEL encodes a date that does not exist.", details={"reason": "date"}
        ) from None
    if _check_digit(value[:10]) != int(value[10]):
        raise InvalidPeselError(
            "PESEL check digit is incorrect.", details={"reason": "check_digit"}
        )
    sex: Sex = "M" if int(value[9]) % 2 else "F"
    return value, birth_date, sex


class Pesel(BaseModel):
    """A structurally valid PESEL; build it with ``parse_pesel`` (which rejects future dates)."""

    # hide_input_in_errors: a pydantic ValidationError would otherwise echo the number.
    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    value: str = Field(repr=False)
    birth_date: date
    sex: Sex

    @model_validator(mode="after")
    def _consistent(self) -> Pesel:
        # Constructing Pesel directly must not bypass the rules parse_pesel enforces.
        _, birth_date, sex = _decode(self.value)
        if (birth_date, sex) != (self.birth_date, self.sex):
            raise ValueError("birth_date/sex do not match the PESEL number")
        return self

    @property
    def masked(self) -> str:
        return self.value[:6] + "*" * (PESEL_LENGTH - 6)

    def __repr__(self) -> str:
        return f"Pesel({self.masked})"

    def __str__(self) -> str:
        return self.masked

    def __repr_args__(self) -> Any:
        # Used by pydantic's own pretty-printers (devtools, rich); keep them masked too.
        yield "value", self.masked

    def __format__(self, format_spec: str) -> str:
        return format(self.masked, format_spec)


def parse_pesel(raw: str, today: date) -> Pesel:
    """Validate ``raw`` and return a ``Pesel``; raises InvalidPeselError with the reason."""
    value, birth_date, sex = _decode(raw)
    if birth_date > today:
        raise InvalidPeselError(
            "PESEL encodes a birth date in the future.", details={"reason": "future"}
        )
    return Pesel(value=value, birth_date=birth_date, sex=sex)


def is_valid_pesel(raw: str, today: date) -> bool:
    try:
        parse_pesel(raw, today)
    except InvalidPeselError:
        return False
    return True


def pesel_key(pesel: Pesel | str, secret: bytes) -> str:
    """Opaque, stable document ID for a PESEL: HMAC-SHA256 under ``secret``, 32 hex chars.

    Keyed (not a bare hash) because the PESEL space is small enough to brute-force.
    """
    if not secret:
        raise ValueError("pesel_key needs a non-empty secret")
    value = pesel.value if isinstance(pesel, Pesel) else pesel.strip()
    return hmac.new(secret, value.encode("ascii"), hashlib.sha256).hexdigest()[:_KEY_HEX_CHARS]


def make_pesel(birth_date: date, sex: str, serial: int) -> str:
    """Build a valid PESEL (test and demo data). ``serial`` in 0..4999 picks the number
    among those sharing the birth date and sex, so one day holds 5000 people of each sex."""
    sex_upper = sex.upper()
    if sex_upper not in ("F", "M"):
        raise ValueError("sex must be 'F' or 'M'")
    if not 0 <= serial <= _MAX_SERIAL:
        raise ValueError(f"serial must be in 0..{_MAX_SERIAL}")
    century = birth_date.year - birth_date.year % 100
    if century not in _OFFSET_BY_CENTURY:
        raise ValueError(f"birth year must be in {MIN_BIRTH_YEAR}..{MAX_BIRTH_YEAR}")
    month_field = birth_date.month + _OFFSET_BY_CENTURY[century]
    serial_and_sex = serial * 2 + (1 if sex_upper == "M" else 0)
    first_ten = (
        f"{birth_date.year % 100:02d}{month_field:02d}{birth_date.day:02d}{serial_and_sex:04d}"
    )
    return first_ten + str(_check_digit(first_ten))
