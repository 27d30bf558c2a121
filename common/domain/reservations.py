"""Reserved capacity, as pure rules: which seats of a slot a reservation keeps, and for whom.

A reservation keeps `percent` % of the seats of every slot in its scope (one point; optionally
a range of days and one product) for a group (birth years, or an age band on the visit day)
until `until`; then the seats are anyone's, by the clock alone (`in_force`), no job needed.

**The seats it keeps are seat indices, not a count.** A slot of capacity C has seats 0..C-1
(`seats/{slot}_{n}`, created only when claimed: common/services/seats.py). A reservation's
*band* in a slot is a fixed set of indices:

- by default the indices [ceil(lo*C/100), ceil((lo+percent)*C/100)), where [lo, lo+percent)
  is the reservation's *layer*: a share interval of [0, 100) chosen when it is made so that
  the layers of reservations whose scopes overlap never overlap (`first_fit_layer`). So the
  bands of two reservations on one slot are disjoint, and the bands sit at the bottom of the
  slot, which a capacity cut (blockers from the top: staff_calendar.py) never reaches first;
- where, when it is made, the default band already holds taken seats or another group's
  seats, the band is written down explicitly (`explicit_band`): the default's free indices
  plus the lowest other free ones, as many as the default holds (`bands`).

**The rule of a claim** (`seat_rule`): a person may not take an index in the band of a
reservation in force whose group does not include them (`kept`); a member takes a free seat
of their own group's band first (`preferred`), and any other free seat after that.

Why this is exact, and the formula it realises: outsiders only ever claim indices outside the
band, and a seat is claimed only by creating its document (precondition: does not exist) or
by taking over an expired hold (precondition: that version), so no interleaving of claims can
give an outsider a band seat: there is no count to race on, only documents. Members fill the
band first, so with k = |band|, m seats taken by members and o by outsiders since the
reservation was made, outsiders can take a seat exactly while
    o + max(0, m - k) < C - k,   i.e.   taken < C - (k - min(m, k)),
"outsiders may leave k seats free for the group, less what the group has taken". Seats taken
before the reservation was made are counted as taken (the band is chosen among free seats).

Search cannot see which indices are free (it has counts): an outsider is shown
`free - |kept|` seats of a slot (`outsider_free`), never more than they could book; it shows
fewer while group members hold band seats. Booking decides, on the seat documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.domain.calendar import SlotRef
from common.domain.eligibility import age_on
from common.domain.errors import (
    InvalidStateTransitionError,
    NotFoundError,
    SlotUnavailableError,
)

PERCENT = 100
State = Literal["active", "expired", "cancelled"]


class ReservationNotFoundError(NotFoundError):
    """No such reservation at this point."""

    code = "reservation_not_found"


class ReservationConflictError(InvalidStateTransitionError):
    """The seats of this scope are already reserved for other groups (at most 100 % in all)."""

    code = "reservation_conflict"


class SeatsReservedError(SlotUnavailableError):
    """The free seats of this slot are reserved for a group until a given time."""


def share_bound(percent: int, capacity: int) -> int:
    """ceil(percent * capacity / 100) in integers (no float rounding at the boundaries)."""
    return (percent * capacity + PERCENT - 1) // PERCENT


class ReservationGroup(BaseModel):
    """Who the seats are kept for: birth years (inclusive), or an age on the visit day
    (inclusive). A missing bound is open; one kind only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    born_from: int | None = Field(default=None, ge=1900, le=2100)
    born_to: int | None = Field(default=None, ge=1900, le=2100)
    age_min: int | None = Field(default=None, ge=0, le=150)
    age_max: int | None = Field(default=None, ge=0, le=150)

    @model_validator(mode="after")
    def _one_kind(self) -> ReservationGroup:
        years = self.born_from is not None or self.born_to is not None
        ages = self.age_min is not None or self.age_max is not None
        if years == ages:
            raise ValueError("give birth years (born_from, born_to) or ages (age_min, age_max)")
        if years and None not in (self.born_from, self.born_to):
            if self.born_from > self.born_to:  # type: ignore[operator]
                raise ValueError("born_from is after born_to")
        if ages and None not in (self.age_min, self.age_max):
            if self.age_min > self.age_max:  # type: ignore[operator]
                raise ValueError("age_min is above age_max")
        return self

    @property
    def kind(self) -> Literal["birth_years", "age"]:
        return "age" if self.age_min is not None or self.age_max is not None else "birth_years"

    def includes(self, birth_date: date | None, visit_day: date) -> bool:
        """Whether a person born on `birth_date` belongs to the group for a visit that day
        (an unknown person belongs to no group)."""
        if birth_date is None:
            return False
        if self.kind == "birth_years":
            year = birth_date.year
            return (self.born_from is None or year >= self.born_from) and (
                self.born_to is None or year <= self.born_to
            )
        if visit_day < birth_date:
            return False
        age = age_on(birth_date, visit_day)
        return (self.age_min is None or age >= self.age_min) and (
            self.age_max is None or age <= self.age_max
        )

    def includes_all(self, born_from: int | None, born_to: int | None, on: date) -> bool:
        """Whether everyone born in the years born_from..born_to (None: open) belongs to the
        group on day `on` (a cohort wholly inside it; partly inside counts as outside)."""
        if self.kind == "birth_years":
            return (
                self.born_from is None or (born_from is not None and born_from >= self.born_from)
            ) and (self.born_to is None or (born_to is not None and born_to <= self.born_to))
        # Ages on `on` of people born in those years: on.year - born_to - 1 .. on.year - born_from
        youngest = None if born_to is None else max(0, on.year - born_to - 1)
        oldest = None if born_from is None else on.year - born_from
        return (self.age_min is None or (youngest is not None and youngest >= self.age_min)) and (
            self.age_max is None or (oldest is not None and oldest <= self.age_max)
        )

    def to_api(self) -> dict[str, Any]:
        return {"kind": self.kind} | self.model_dump(exclude_none=True)


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    point_id: str
    group: ReservationGroup
    percent: int
    layer: int  # the share interval [layer, layer + percent) of each slot's seats
    until: datetime
    date_from: date | None = None
    date_to: date | None = None
    product: str | None = None
    status: Literal["active", "cancelled"] = "active"
    # Explicit bands (slot id -> seat indices), for the slots that had taken seats (or other
    # groups' seats) where the default band lies when the reservation was made.
    bands: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    created_at: datetime | None = None
    created_by: str | None = None
    batch_id: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.percent <= PERCENT or not 0 <= self.layer <= PERCENT - self.percent:
            raise ValueError("a reservation's layer lies within 0..100 %")

    # -- scope and time -------------------------------------------------------------------
    def covers(self, ref: SlotRef) -> bool:
        return (
            ref.point_id == self.point_id
            and (self.date_from is None or ref.day >= self.date_from)
            and (self.date_to is None or ref.day <= self.date_to)
            and (self.product is None or ref.product == self.product)
        )

    def in_force(self, now: datetime) -> bool:
        return self.status == "active" and now < self.until

    def state(self, now: datetime) -> State:
        if self.status == "cancelled":
            return "cancelled"
        return "active" if now < self.until else "expired"

    def overlaps(self, other: Reservation) -> bool:
        """Whether some slot could be in both scopes (then their layers must not overlap)."""
        return overlapping_scopes(
            (self.point_id, self.date_from, self.date_to, self.product),
            (other.point_id, other.date_from, other.date_to, other.product),
        )

    @property
    def layer_interval(self) -> tuple[int, int]:
        return self.layer, self.layer + self.percent

    # -- seats ----------------------------------------------------------------------------
    def default_band(self, capacity: int) -> frozenset[int]:
        lo, hi = self.layer_interval
        return frozenset(range(share_bound(lo, capacity), share_bound(hi, capacity)))

    def band(self, ref: SlotRef, capacity: int) -> frozenset[int]:
        """The indices this reservation keeps in the slot (none beyond the capacity)."""
        explicit = self.bands.get(ref.slot_id)
        if explicit is not None:
            return frozenset(i for i in explicit if i < capacity)
        return self.default_band(capacity)

    # -- storage --------------------------------------------------------------------------
    def to_document(self) -> dict[str, Any]:
        return {
            "reservation_id": self.reservation_id,
            "point_id": self.point_id,
            "group": self.group.model_dump(exclude_none=True),
            "percent": self.percent,
            "layer": self.layer,
            "until": self.until,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "product": self.product,
            "status": self.status,
            "bands": {k: list(v) for k, v in self.bands.items()},
            "created_at": self.created_at,
            "created_by": self.created_by,
            "batch_id": self.batch_id,
        }

    @classmethod
    def from_document(cls, data: Mapping[str, Any]) -> Reservation:
        def day(value: Any) -> date | None:
            return date.fromisoformat(value) if value else None

        return cls(
            reservation_id=data["reservation_id"],
            point_id=data["point_id"],
            group=ReservationGroup.model_validate(data["group"]),
            percent=int(data["percent"]),
            layer=int(data["layer"]),
            until=data["until"],
            date_from=day(data.get("date_from")),
            date_to=day(data.get("date_to")),
            product=data.get("product"),
            status=data.get("status", "active"),
            bands={k: tuple(int(i) for i in v) for k, v in (data.get("bands") or {}).items()},
            created_at=data.get("created_at"),
            created_by=data.get("created_by"),
            batch_id=data.get("batch_id"),
        )

    def to_api(self, now: datetime) -> dict[str, Any]:
        def iso(value: Any) -> Any:
            return value.isoformat() if value is not None else None

        return {
            "reservation_id": self.reservation_id,
            "point_id": self.point_id,
            "group": self.group.to_api(),
            "percent": self.percent,
            "until": iso(self.until),
            "date_from": iso(self.date_from),
            "date_to": iso(self.date_to),
            "product": self.product,
            "state": self.state(now),
            "created_at": iso(self.created_at),
        }

    def with_bands(self, bands: Mapping[str, tuple[int, ...]]) -> Reservation:
        return replace(self, bands=dict(bands))


def overlapping_scopes(
    a: tuple[str, date | None, date | None, str | None],
    b: tuple[str, date | None, date | None, str | None],
) -> bool:
    """(point, date_from, date_to, product) scopes that share at least one possible slot."""
    point_a, from_a, to_a, product_a = a
    point_b, from_b, to_b, product_b = b
    if point_a != point_b:
        return False
    if product_a is not None and product_b is not None and product_a != product_b:
        return False
    starts = [d for d in (from_a, from_b) if d is not None]
    ends = [d for d in (to_a, to_b) if d is not None]
    return not (starts and ends and max(starts) > min(ends))


def first_fit_layer(taken: Iterable[tuple[int, int]], percent: int) -> int | None:
    """The lowest share interval of `percent` that overlaps none of `taken`; None if none."""
    start = 0
    for lo, hi in sorted(taken):
        if start + percent <= lo:
            return start
        start = max(start, hi)
    return start if start + percent <= PERCENT else None


def explicit_band(
    default: frozenset[int], unavailable: Iterable[int], capacity: int
) -> tuple[int, ...] | None:
    """A slot's band when its default band is not wholly free: the default's free indices,
    then the lowest other free ones, as many as the default holds (fewer when the slot has no
    more free); None when the default band is wholly free (it is then used as it is)."""
    blocked = set(unavailable)
    if not default & blocked:
        return None
    chosen = sorted(default - blocked)
    for index in range(capacity):
        if len(chosen) >= len(default):
            break
        if index not in blocked and index not in default:
            chosen.append(index)
    return tuple(sorted(chosen))


@dataclass(frozen=True)
class SeatRule:
    """What one person may take in one slot: not `kept` (other groups' bands, in force), and
    `preferred` (their own groups' bands) first. `until`: when the kept seats open to all."""

    kept: frozenset[int]
    preferred: frozenset[int]
    until: datetime | None = None

    def kept_prefix(self) -> int | None:
        """n when the kept seats are exactly 0..n-1 (then one count tells whether any other
        seat is free); None otherwise."""
        n = len(self.kept)
        return n if self.kept == frozenset(range(n)) else None


def seat_rule_for(
    reservations: Iterable[Reservation],
    ref: SlotRef,
    capacity: int,
    member: Callable[[Reservation], bool],
    now: datetime,
) -> SeatRule | None:
    """The rule of the slot for someone whose membership `member` tells; None: no rule."""
    kept: set[int] = set()
    preferred: set[int] = set()
    untils: list[datetime] = []
    for reservation in reservations:
        if not reservation.in_force(now) or not reservation.covers(ref):
            continue
        band = reservation.band(ref, capacity)
        if not band:
            continue
        if member(reservation):
            preferred |= band
        else:
            kept |= band
            untils.append(reservation.until)
    if not kept and not preferred:
        return None
    # Bands are disjoint by construction; were two ever to meet, the seat stays kept.
    return SeatRule(frozenset(kept), frozenset(preferred - kept), min(untils, default=None))


def seat_rule(
    reservations: Iterable[Reservation],
    ref: SlotRef,
    capacity: int,
    birth_date: date | None,
    now: datetime,
) -> SeatRule | None:
    """The rule of the slot for a person born on `birth_date` (None: unknown, an outsider)."""
    return seat_rule_for(
        reservations, ref, capacity, lambda r: r.group.includes(birth_date, ref.day), now
    )


def outsider_free(free: int, rule: SeatRule | None) -> int:
    """Free seats of a slot a person may book, as far as a free count tells: at most `free`,
    and never more than they could book (the kept band might all be free)."""
    if rule is None or not rule.kept:
        return free
    return max(0, free - len(rule.kept))
