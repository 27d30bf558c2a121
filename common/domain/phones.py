"""Phone numbers: one canonical form to compare and key them, a mask to show them.

A phone number is personal data: never logged, never in an event or a document id (keyed
hashes), shown to agents and patients only masked (`+48******201`) once it is stored.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[^0-9+]")
_E164 = re.compile(r"^\+[1-9][0-9]{8,14}$")
_POLISH_MOBILE = re.compile(r"^\+48[4-8][0-9]{8}$")


def canonical_phone(raw: str | None) -> str | None:
    """E.164 (`+48600100200`): spaces and dashes dropped; nine digits are a Polish number
    (`600 100 200`), and `0048...` / `48...` (eleven digits) too. None if it cannot be one."""
    if not raw:
        return None
    phone = _DIGITS.sub("", str(raw))
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if re.fullmatch(r"[0-9]{9}", phone):
        phone = "+48" + phone
    elif re.fullmatch(r"48[0-9]{9}", phone):
        phone = "+" + phone
    return phone if _E164.match(phone) else None


def polish_mobile(raw: str | None) -> str | None:
    """A number we may text for a patient: a Polish mobile in E.164, else None."""
    phone = canonical_phone(raw)
    return phone if phone is not None and _POLISH_MOBILE.match(phone) else None


def same_phone(a: str | None, b: str | None) -> bool:
    first, second = canonical_phone(a), canonical_phone(b)
    return first is not None and first == second


def masked_phone(phone: str | None) -> str | None:
    """`+48******201`: enough for a person to recognise their own number."""
    canonical = canonical_phone(phone)
    if canonical is None:
        return None
    return canonical[:3] + "*" * (len(canonical) - 6) + canonical[-3:]
