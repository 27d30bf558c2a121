"""Supply-driven capacity, as pure rules: deliveries set a weekly dose budget per point and
product, and the budget caps the capacity the point's slots offer.

Why a week. SDS plans and ships doses per point and week (the demand we push back is per
ISO week too), a delivery arrives once or twice a week and its vials are used over the
following days: a per-day budget would strand Monday's doses for Tuesday's visits, or force
SDS to know our calendar. So the doses delivered for ISO week W (by `delivery_date`) are
what the point may book in W. Unused doses do not carry over (a simplification: SDS's next
delivery is planned from the demand we push).

How the budget is spread (``allocate``), slots in time order:
1. slots that started, or that staff blocked, are left alone; their bookings use budget;
2. every other slot keeps its bookings while the budget lasts, earliest first, so a
   shortfall displaces the LATEST visits of the week;
3. what is left opens seats, earliest first, each slot up to its template (the capacity staff
   published). A slot's bookings are cap - free; before a slot is lowered its visits are
   moved onto the lowest seat indices (common/services/sds_sync.py), so lowering it to its
   bookings displaces nobody.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_days(week: str) -> tuple[date, date]:
    """Monday and Sunday of an ISO week written ``2021-W14``."""
    year, _, number = week.partition("-W")
    monday = date.fromisocalendar(int(year), int(number), 1)
    return monday, monday + timedelta(days=6)


@dataclass(frozen=True)
class SupplySlot:
    slot_id: str
    starts_at: datetime
    capacity: int
    booked: int
    template: int
    fixed: bool = False  # started or blocked: never changed by supply


def allocate(slots: Sequence[SupplySlot], budget: int) -> dict[str, int]:
    """The capacity each changeable slot should have under ``budget`` (see the module doc)."""
    remaining = max(budget, 0)
    ordered = sorted(slots, key=lambda s: (s.starts_at, s.slot_id))
    for slot in ordered:
        if slot.fixed:
            remaining -= min(slot.booked, remaining)
    keep: dict[str, int] = {}
    for slot in ordered:
        if slot.fixed:
            continue
        keep[slot.slot_id] = min(slot.booked, remaining)
        remaining -= keep[slot.slot_id]
    targets: dict[str, int] = {}
    for slot in ordered:
        if slot.fixed:
            continue
        kept = keep[slot.slot_id]
        extra = min(max(slot.template - kept, 0), remaining)
        remaining -= extra
        targets[slot.slot_id] = kept + extra
    return targets
