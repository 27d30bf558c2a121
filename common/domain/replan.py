"""Consented re-planning (issue 15, item 2): the decisions, pure (no clock, no I/O).

A re-plan job takes the cases of a finished impact dry run (``AffectedCase``: one per series)
and, for each, offers one alternative at a time, holding its seats until the patient answers:

- **Where and when** (``window``): never before tomorrow; a case unseated by a capacity cut
  keeps away from the slots cut, one unseated by a supply shortfall from its point for that
  week (the doses are not coming there); a case refused by its cohort under the new rules is
  offered a day on or after the day its cohort opens under them (the April-2021 mistake: people
  who booked April dates meant for late May). A case whose product itself is refused (product,
  age) has no alternative of that product: it goes to the hotline at once.
- **Which** (``rank``): the nearest point first, then the day nearest the one booked; a series
  keeps both doses at one point, dose 2 inside the product's window from the new dose 1.
- **After an answer** (``after_no``): a NIE or silence releases the seats and the next
  alternative is offered, up to ``max_offers``; then the case goes to the hotline's list.

An offer document moves through ``offered`` -> ``accepted`` | ``next`` (a NIE or silence:
the next alternative is being found) -> ``offered`` (attempt + 1) | ``escalated``; ``gone``
when the booking changed or ended meanwhile (the patient moved or cancelled it themselves).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from common.domain.supply import iso_week

OFFERED, ACCEPTED, NEXT, ESCALATED, GONE = "offered", "accepted", "next", "escalated", "gone"
OFFER_STATUSES = (OFFERED, ACCEPTED, NEXT, ESCALATED, GONE)
DEFAULT_OFFER_HOURS = 24
DEFAULT_MAX_OFFERS = 3
# The product itself is what the change refuses: no date or place of it can help.
NO_ALTERNATIVE_REASONS = frozenset({"product", "age"})


def offer_id(job_id: str, series_id: str) -> str:
    """One offer document per case and job: a worker that runs a case twice finds it."""
    return hashlib.sha256(f"{job_id}:{series_id}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Window:
    """Where and when a case's new dose 1 (or lone dose) may go."""

    date_from: date
    date_to: date | None
    avoid_slots: frozenset[str]
    avoid_point_weeks: frozenset[tuple[str, str]]  # (point_id, ISO week) without doses

    def allows(self, point_id: str, slot_id: str, day: date) -> bool:
        if day < self.date_from or (self.date_to is not None and day > self.date_to):
            return False
        if slot_id in self.avoid_slots:
            return False
        return (point_id, iso_week(day)) not in self.avoid_point_weeks


def has_alternative(reasons: Iterable[str]) -> bool:
    return not (set(reasons) & NO_ALTERNATIVE_REASONS)


def window(
    *,
    reasons: Iterable[str],
    today: date,
    original_slots: Sequence[tuple[str, str, date]],  # (point_id, slot_id, day) of the case
    offered_before: Iterable[str] = (),
    cohort_opens: date | None = None,
    dose_window: tuple[date, date] | None = None,
) -> Window:
    """The constraints of a case's next offer. ``dose_window``: a lone dose 2's interval from
    its dose 1; ``cohort_opens``: the day the patient's cohort opens under the new rules."""
    reasons = set(reasons)
    date_from = today + timedelta(days=1)
    date_to: date | None = None
    if "cohort" in reasons and cohort_opens is not None:
        date_from = max(date_from, cohort_opens)
    if dose_window is not None:
        date_from, date_to = max(date_from, dose_window[0]), dose_window[1]
    avoid = {slot_id for _, slot_id, _ in original_slots} | set(offered_before)
    weeks = (
        {(point_id, iso_week(day)) for point_id, _, day in original_slots}
        if "supply" in reasons
        else set()
    )
    return Window(date_from, date_to, frozenset(avoid), frozenset(weeks))


@dataclass(frozen=True)
class Candidate:
    point_id: str
    slot_id: str
    day: date
    distance_km: float


def rank(candidates: Iterable[Candidate], booked_day: date) -> list[Candidate]:
    """The nearest point first (to the kilometre: two points a few hundred metres apart are
    as near), then the day nearest the one booked, then the earlier."""
    return sorted(
        candidates,
        key=lambda c: (round(c.distance_km), abs((c.day - booked_day).days), c.day, c.slot_id),
    )


def after_no(attempt: int, max_offers: int) -> Literal["offer", "escalate"]:
    """A NIE or silence on offer number ``attempt`` (1-based): another, or the hotline."""
    return "offer" if attempt < max_offers else "escalate"
