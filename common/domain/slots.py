"""Pure rules of a point's calendar as staff edit it: templates and capacity changes.

A slot of capacity C is the seat documents `seats/{slot_id}_{n}`, n < C, that bookings claim
with create() after reading C outside any transaction (common/services/booking.py). A
capacity change must therefore never leave a claimable seat index at or above the new
capacity, and never drop a patient silently. The rule kept here: every index in
[capacity, highest capacity ever) holds a document, either a patient's seat that is being
displaced in this very commit, or a "blocker" seat that no booking can create over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal

from common.domain.calendar import WARSAW
from common.domain.errors import ValidationFailedError

MAX_PUBLISH_DAYS = 92
MAX_PUBLISH_SLOTS = 3000
MAX_CAPACITY = 100

SeatKind = Literal["free", "blocker", "patient"]


def parse_hhmm(text: str) -> time:
    try:
        hours, minutes = text.split(":")
        if len(hours) != 2 or len(minutes) != 2:
            raise ValueError
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValidationFailedError("times are 'HH:MM'", details={"value": text}) from None


def template_days(date_from: date, date_to: date, weekdays: frozenset[int]) -> list[date]:
    """The days of the range whose weekday (0 = Monday) is in the template."""
    days = []
    day = date_from
    while day <= date_to:
        if day.weekday() in weekdays:
            days.append(day)
        day += timedelta(days=1)
    return days


def template_starts(opens: time, closes: time, slot_minutes: int) -> list[time]:
    """Slot starts from opening time, every slot_minutes, each slot ending by closing time."""
    start = opens.hour * 60 + opens.minute
    end = closes.hour * 60 + closes.minute
    if end <= start:
        raise ValidationFailedError("'closes' must be after 'opens'")
    starts = []
    minute = start
    while minute + slot_minutes <= end:
        starts.append(time(minute // 60, minute % 60))
        minute += slot_minutes
    return starts


def check_publish_range(date_from: date, date_to: date, now: datetime) -> None:
    today = now.astimezone(WARSAW).date()
    if date_from < today:
        raise ValidationFailedError("a calendar cannot be published for past days")
    if date_to < date_from:
        raise ValidationFailedError("date_to is before date_from")
    if (date_to - date_from).days + 1 > MAX_PUBLISH_DAYS:
        raise ValidationFailedError(f"a calendar spans at most {MAX_PUBLISH_DAYS} days at once")


@dataclass(frozen=True)
class SeatHolder:
    """What occupies one seat index right now, as read."""

    kind: SeatKind
    appointment_id: str | None = None


@dataclass(frozen=True)
class CapacityPlan:
    """The seat writes that take a slot from one capacity to another."""

    old_capacity: int
    new_capacity: int
    create_blockers: tuple[int, ...] = ()
    displace: tuple[tuple[int, str], ...] = ()  # (seat index, appointment id)
    delete_blockers: tuple[int, ...] = ()
    free_delta: int = 0
    notes: list[str] = field(default_factory=list)


def plan_capacity(
    old_capacity: int, new_capacity: int, seats: dict[int, SeatHolder]
) -> CapacityPlan:
    """Plan a change of capacity from what the seats [new, old) (on a decrease) hold.

    Decrease: a free index gets a blocker (one fewer free seat); a patient's index is
    displaced (its seat becomes a blocker; it was not free, so `free` does not change).
    Increase: the indices [old, new) hold at most blockers (the rule above): delete them, and
    every one of them is a new free seat.
    """
    if new_capacity < 0 or old_capacity < 0:
        raise ValidationFailedError("capacity must not be negative")
    if new_capacity < old_capacity:
        blockers, displaced = [], []
        for index in range(new_capacity, old_capacity):
            holder = seats.get(index, SeatHolder("free"))
            if holder.kind == "free":
                blockers.append(index)
            elif holder.kind == "patient":
                assert holder.appointment_id is not None
                displaced.append((index, holder.appointment_id))
        return CapacityPlan(
            old_capacity,
            new_capacity,
            create_blockers=tuple(blockers),
            displace=tuple(displaced),
            free_delta=-len(blockers),
        )
    if new_capacity > old_capacity:
        added = tuple(range(old_capacity, new_capacity))
        return CapacityPlan(
            old_capacity, new_capacity, delete_blockers=added, free_delta=len(added)
        )
    return CapacityPlan(old_capacity, new_capacity)
