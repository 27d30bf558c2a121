"""Pure statistics of a benchmark run: percentiles and a summary of one measured phase."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks.

    The same definition as numpy's default ("linear"): p50 of [1, 2, 3, 4] is 2.5. An empty
    input has no percentile (None), never a made-up zero.
    """
    if not 0 <= q <= 100:
        raise ValueError("q must be between 0 and 100")
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


@dataclass
class PhaseResult:
    """What one measured phase did: latencies (seconds) of its operations and their outcomes."""

    name: str
    concurrency: int
    elapsed_s: float
    latencies_s: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # a few samples, not all
    window_counts: Any = None  # documents counted while the window was open (if metered)

    @property
    def operations(self) -> int:
        return len(self.latencies_s)

    def summary(self, succeeded: Iterable[str] = ("ok",)) -> dict[str, Any]:
        ok = sum(self.outcomes[o] for o in succeeded)
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "elapsed_s": round(self.elapsed_s, 3),
            "operations": self.operations,
            "ops_per_s": round(rate(self.operations, self.elapsed_s), 2),
            "succeeded_per_s": round(rate(ok, self.elapsed_s), 2),
            "p50_ms": _ms(percentile(self.latencies_s, 50)),
            "p90_ms": _ms(percentile(self.latencies_s, 90)),
            "p99_ms": _ms(percentile(self.latencies_s, 99)),
            "max_ms": _ms(max(self.latencies_s) if self.latencies_s else None),
            "outcomes": dict(sorted(self.outcomes.items())),
            "error_samples": self.errors[:5],
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def per_operation(total: int, operations: int) -> float | None:
    """Documents per operation, rounded for display; None when nothing was done."""
    return round(total / operations, 3) if operations else None
