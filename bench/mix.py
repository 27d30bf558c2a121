"""The national-peak mix: which operation each virtual user does next.

A smooth weighted round-robin (the nginx algorithm): over every cycle of sum(weights) picks each
kind appears exactly `weight` times, spread evenly rather than in bursts, and the sequence is
deterministic, so two runs issue the same mix. When a kind cannot run now (a cancellation with
no booking to cancel yet), the caller's `possible` check refuses it and the pick falls back
along `fallbacks` (cancel -> book -> search); every substitution is counted, so the report says
how far the real mix strayed from the intended one.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping

# Searches to bookings 3:1 as in the issue; one booking in four is later cancelled or moved.
PEAK_WEIGHTS: dict[str, int] = {"search": 12, "book": 4, "reschedule": 1, "cancel": 1}
PEAK_FALLBACKS: dict[str, str] = {"cancel": "book", "reschedule": "book", "book": "search"}


class MixScheduler:
    def __init__(
        self,
        weights: Mapping[str, int],
        fallbacks: Mapping[str, str] | None = None,
    ) -> None:
        if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("weights must be non-negative and not all zero")
        self.weights = {k: int(w) for k, w in weights.items() if w > 0}
        self.fallbacks = dict(fallbacks or {})
        self._current = dict.fromkeys(self.weights, 0)
        self._total = sum(self.weights.values())
        self._lock = threading.Lock()
        self.planned: Counter[str] = Counter()
        self.issued: Counter[str] = Counter()
        self.substituted: Counter[tuple[str, str]] = Counter()

    def _planned_next(self) -> str:
        for kind, weight in self.weights.items():
            self._current[kind] += weight
        best = max(self._current, key=lambda k: self._current[k])  # first wins ties: stable
        self._current[best] -= self._total
        return best

    def next(self, possible: Callable[[str], bool] = lambda _: True) -> str:
        with self._lock:
            planned = self._planned_next()
            self.planned[planned] += 1
        kind = planned
        seen = {kind}
        while not possible(kind):
            fallback = self.fallbacks.get(kind)
            if fallback is None or fallback in seen:
                break  # nothing better: issue it anyway, the operation reports its own outcome
            seen.add(fallback)
            kind = fallback
        with self._lock:
            self.issued[kind] += 1
            if kind != planned:
                self.substituted[(planned, kind)] += 1
        return kind

    def report(self) -> dict[str, object]:
        with self._lock:
            return {
                "weights": dict(self.weights),
                "planned": dict(self.planned),
                "issued": dict(self.issued),
                "substituted": {f"{a}->{b}": n for (a, b), n in self.substituted.items()},
            }
