"""Expected time to a first dose: how long a person of a cohort, in a county, who books now
waits for their visit. Pure: the inputs are measured elsewhere (common/services/expected_wait.py).

Inputs, for one cohort in one county:

    free_by_day[d]   free seats the cohort may book d days from today (d = 0 .. H-1), at the
                     county's points: what search shows (reserved seats of other groups left
                     out), a few seconds old
    rate_per_day     seats booked per day at the county's points (the last 24 h)
    waitlist         people of the county waiting for a seat: they are served first
    opens_in_days    days until the cohort may book at all (0 once open)
    lead_days        how far ahead a seat that appears now lies (points publish their
                     calendars that far ahead; cancellations and deliveries land inside)

The formula. The person is at position p = waitlist + 1 among those who still need a seat;
F = sum(free_by_day).

- F >= p: the p-th free seat in date order is theirs: days = the first d with
  free_by_day[0] + ... + free_by_day[d] >= p. Basis `free_seats`.
- F < p and rate_per_day > 0: the free seats go to the first F; the others wait for seats to
  appear. With no free seat left, every seat that appears (a new calendar, a cancellation, a
  delivery) is booked as it appears, so seats appear at about the booking rate: the
  (p - F)-th appears after (p - F) / rate_per_day days, for a visit about lead_days after
  that: days = ceil((p - F) / rate_per_day + lead_days). Basis `booking_rate`.
- F < p and nothing booked: no free seat and no bookings to learn a rate from: days = None.
  Basis `no_basis`.

Then days = max(days, opens_in_days): nobody books before the cohort opens.

Limits, said plainly: the county is one pool (travel within it is free, travel across its
border is not counted); seats are not told apart by product beyond what the caller passes in;
the booking rate counts every dose at the county's points, so where seats are plentiful it
says how fast they go, not how many people want one; the waitlist is the county's, whatever
the cohort; after a change (a cohort opening, a delivery) the estimate follows within the
measurement's period (five minutes for the rate, seconds for the free seats).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Basis = Literal["free_seats", "booking_rate", "no_basis"]


@dataclass(frozen=True)
class WaitEstimate:
    days: int | None
    basis: Basis
    position: int
    free_seats: int
    rate_per_day: float
    waitlist: int
    opens_in_days: int = 0

    def to_api(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "basis": self.basis,
            "free_seats": self.free_seats,
            "rate_per_day": round(self.rate_per_day, 2),
            "waitlist": self.waitlist,
            "opens_in_days": self.opens_in_days,
        }


def estimate_wait(
    free_by_day: Sequence[int],
    rate_per_day: float,
    waitlist: int = 0,
    *,
    opens_in_days: int = 0,
    lead_days: int = 14,
) -> WaitEstimate:
    """The expected days from today to a first-dose visit (see the module's formula)."""
    if rate_per_day < 0 or waitlist < 0 or lead_days < 0 or opens_in_days < 0:
        raise ValueError("rates, counts and days are not negative")
    free = [max(0, int(n)) for n in free_by_day]
    position = waitlist + 1
    total = sum(free)
    days: int | None
    basis: Basis
    if total >= position:
        running = 0
        for day, seats in enumerate(free):
            running += seats
            if running >= position:
                days = day
                break
        basis = "free_seats"
    elif rate_per_day > 0:
        days = math.ceil((position - total) / rate_per_day + lead_days)
        basis = "booking_rate"
    else:
        days, basis = None, "no_basis"
    if days is not None:
        days = max(days, opens_in_days)
    return WaitEstimate(
        days=days,
        basis=basis,
        position=position,
        free_seats=total,
        rate_per_day=float(rate_per_day),
        waitlist=waitlist,
        opens_in_days=opens_in_days,
    )
