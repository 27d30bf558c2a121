"""A point's calendar of slots and free seats: the availability document, as pure data.

One document per vaccination point (`availability/{point_id}`) holds every slot of the
booking horizon with its capacity and free seats:

    {"point_id": "pt-00001", "days": {"d20261127": {"1100_comirnaty": {"cap": 4, "free": 3}}}}

Search reads one such document per point it shows, so reads per search do not grow with the
number of slots; booking reads it once and decrements `free` with a blind Increment in the
same commit that claims the seat (see common/services/booking.py for why that holds).
"""

from __future__ import annotations

import bisect
import re
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from common.domain.errors import ValidationFailedError

WARSAW = ZoneInfo("Europe/Warsaw")
_POINT_ID = re.compile(r"^[a-z0-9-]{1,40}$")
_PRODUCT = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_SLOT_ID = re.compile(r"^([a-z0-9-]{1,40})_(\d{8})_(\d{4})_([a-z][a-z0-9_]{0,39})$")


def is_point_id(value: str) -> bool:
    return bool(_POINT_ID.match(value))


def day_key(day: date) -> str:
    return f"d{day:%Y%m%d}"


def parse_day_key(key: str) -> date:
    # Slicing, not strptime: search parses thousands of these per request.
    return date(int(key[1:5]), int(key[5:7]), int(key[7:9]))


@dataclass(frozen=True, order=True)
class SlotRef:
    """Names one slot: a point, a day, a local start time and a product."""

    point_id: str
    day: date
    start: time
    product: str

    def __post_init__(self) -> None:
        if not _POINT_ID.match(self.point_id) or not _PRODUCT.match(self.product):
            raise ValidationFailedError("malformed slot")

    @property
    def slot_id(self) -> str:
        return f"{self.point_id}_{self.day:%Y%m%d}_{self.start:%H%M}_{self.product}"

    @property
    def day_key(self) -> str:
        return day_key(self.day)

    @property
    def slot_key(self) -> str:
        return f"{self.start:%H%M}_{self.product}"

    @property
    def starts_at(self) -> datetime:
        return datetime.combine(self.day, self.start, tzinfo=WARSAW)

    def seat_id(self, seat: int) -> str:
        return f"{self.slot_id}_{seat}"

    @classmethod
    def parse(cls, slot_id: str) -> SlotRef:
        match = _SLOT_ID.match(slot_id or "")
        if not match:
            raise ValidationFailedError("malformed slot_id", details={"field": "slot_id"})
        point_id, day_text, hhmm, product = match.groups()
        try:
            day = datetime.strptime(day_text, "%Y%m%d").date()
            start = time(int(hhmm[:2]), int(hhmm[2:]))
        except ValueError:
            raise ValidationFailedError("slot_id names an impossible date or time") from None
        return cls(point_id, day, start, product)

    @classmethod
    def from_keys(cls, point_id: str, day_key_: str, slot_key: str) -> SlotRef:
        hhmm, product = slot_key.split("_", 1)
        return cls(point_id, parse_day_key(day_key_), time(int(hhmm[:2]), int(hhmm[2:])), product)


@dataclass(frozen=True)
class SlotAvailability:
    ref: SlotRef
    capacity: int
    free: int

    def to_api(self) -> dict[str, Any]:
        return {
            "slot_id": self.ref.slot_id,
            "point_id": self.ref.point_id,
            "starts_at": self.ref.starts_at.isoformat(),
            "product": self.ref.product,
            "capacity": self.capacity,
            "free": self.free,
        }


@dataclass(frozen=True)
class PointCalendar:
    point_id: str
    slots: dict[SlotRef, SlotAvailability]

    @classmethod
    def from_document(cls, point_id: str, document: dict[str, Any] | None) -> PointCalendar:
        slots: dict[SlotRef, SlotAvailability] = {}
        for dkey, day_slots in ((document or {}).get("days") or {}).items():
            for skey, entry in (day_slots or {}).items():
                ref = SlotRef.from_keys(point_id, dkey, skey)
                slots[ref] = SlotAvailability(
                    ref, int(entry.get("cap", 0)), int(entry.get("free", 0))
                )
        return cls(point_id, slots)

    def get(self, ref: SlotRef) -> SlotAvailability | None:
        return self.slots.get(ref)

    def free_slots(
        self,
        *,
        not_before: datetime,
        date_from: date | None = None,
        date_to: date | None = None,
        product: str | None = None,
    ) -> list[SlotAvailability]:
        """Slots with a free seat that start after `not_before`, earliest first."""
        found = [
            s
            for s in self.slots.values()
            if s.free > 0
            and s.ref.starts_at > not_before
            and (product is None or s.ref.product == product)
            and (date_from is None or s.ref.day >= date_from)
            and (date_to is None or s.ref.day <= date_to)
        ]
        return sorted(found, key=lambda s: (s.ref.starts_at, s.ref.product))

    @staticmethod
    def free_in_document(
        point_id: str,
        document: dict[str, Any] | None,
        *,
        not_before: datetime,
        date_from: date,
        date_to: date,
        product: str | None = None,
        earliest: int = 3,
    ) -> tuple[int, list[SlotAvailability]]:
        """(free seats in the range, the `earliest` free slots) straight from the raw map.

        Search's hot path: it filters on the document's own keys (day keys and "HHMM_product"
        keys sort as their dates and times do) and builds objects only for the slots it shows,
        instead of one SlotRef per slot of the whole horizon.
        """
        days = (document or {}).get("days") or {}
        first_key, last_key = day_key(date_from), day_key(date_to)
        local_now = not_before.astimezone(WARSAW)
        today_key, now_hhmm = day_key(local_now.date()), f"{local_now:%H%M}"
        total = 0
        found: list[tuple[str, str, int, int]] = []
        for dkey, slots in days.items():
            if not first_key <= dkey <= last_key or dkey < today_key:
                continue
            for skey, entry in (slots or {}).items():
                free = entry.get("free", 0)
                if free <= 0 or (product is not None and skey[5:] != product):
                    continue
                if dkey == today_key and skey[:4] <= now_hhmm:
                    continue
                total += free
                found.append((dkey, skey, int(entry.get("cap", 0)), int(free)))
        found.sort()
        shown = [
            SlotAvailability(SlotRef.from_keys(point_id, dkey, skey), cap, free)
            for dkey, skey, cap, free in found[:earliest]
        ]
        return total, shown

    def second_dose_candidates(
        self, product: str, earliest: date, latest: date, planned: date
    ) -> list[SlotAvailability]:
        """Free slots inside the interval window, the planned day first, then the nearest."""
        found = [
            s
            for s in self.slots.values()
            if s.free > 0 and s.ref.product == product and earliest <= s.ref.day <= latest
        ]
        return sorted(found, key=lambda s: (abs((s.ref.day - planned).days), s.ref.starts_at))


@dataclass(frozen=True)
class FreeSeatIndex:
    """A calendar's free seats arranged for search: per product (and for all products, under
    None), the days in order, each with its free seats in all and its free slots in order.

    Built once per version of an availability document (search's view keeps it until the
    document changes), so a search looks at the days of its range, not at every slot of the
    horizon. `free_in` answers exactly what `PointCalendar.free_in_document` answers.
    """

    point_id: str
    days: dict[str | None, tuple[list[str], list[int], list[list[tuple[str, int, int]]]]]

    @classmethod
    def build(cls, point_id: str, document: dict[str, Any] | None) -> FreeSeatIndex:
        per: dict[str | None, dict[str, list[tuple[str, int, int]]]] = {None: {}}
        for dkey, slots in ((document or {}).get("days") or {}).items():
            for skey, entry in (slots or {}).items():
                free = entry.get("free", 0)
                if free <= 0:
                    continue
                # Interned: the same day and slot keys recur at every point of the country.
                dkey, skey = sys.intern(dkey), sys.intern(skey)
                row = (skey, int(entry.get("cap", 0)), int(free))
                per[None].setdefault(dkey, []).append(row)
                per.setdefault(sys.intern(skey[5:]), {}).setdefault(dkey, []).append(row)
        days: dict[str | None, tuple[list[str], list[int], list[list[tuple[str, int, int]]]]] = {}
        for product, by_day in per.items():
            keys = sorted(by_day)
            rows = [sorted(by_day[k]) for k in keys]
            days[product] = (keys, [sum(r[2] for r in day) for day in rows], rows)
        return cls(point_id, days)

    def free_in(
        self,
        *,
        not_before: datetime,
        date_from: date,
        date_to: date,
        product: str | None = None,
        earliest: int = 3,
    ) -> tuple[int, list[SlotAvailability]]:
        found = self.days.get(product)
        if found is None:
            return 0, []
        keys, totals, rows = found
        local_now = not_before.astimezone(WARSAW)
        today_key, now_hhmm = day_key(local_now.date()), f"{local_now:%H%M}"
        first_key = max(day_key(date_from), today_key)
        last_key = day_key(date_to)
        total = 0
        shown: list[tuple[str, str, int, int]] = []
        for position in range(bisect.bisect_left(keys, first_key), len(keys)):
            dkey = keys[position]
            if dkey > last_key:
                break
            if dkey == today_key:
                later = [r for r in rows[position] if r[0][:4] > now_hhmm]
                total += sum(r[2] for r in later)
            else:
                later = rows[position]
                total += totals[position]
            for skey, cap, free in later:
                if len(shown) >= earliest:
                    break
                shown.append((dkey, skey, cap, free))
        return total, [
            SlotAvailability(SlotRef.from_keys(self.point_id, dkey, skey), cap, free)
            for dkey, skey, cap, free in shown
        ]


def slot_entry(capacity: int, free: int | None = None) -> dict[str, int]:
    if capacity < 0:
        raise ValidationFailedError("capacity must not be negative")
    return {"cap": capacity, "free": capacity if free is None else free}


def to_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
