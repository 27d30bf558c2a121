"""The hottest document: the most writes any one document took in any window of 10 seconds.

Production Firestore sustains about one write a second per document; a design where some
document takes more than that under a rush has a hot spot. The writes come from several
processes, each counted exactly by the shared meter (common/adapters/firestore_metering.py):
every gateway worker appends `monotonic_ns document_name` lines to `<meter>.writes.<pid>`
(emulator/serve.py), and the bench process's availability folder keeps its own in memory
(`DocumentMeter.written()`). CLOCK_MONOTONIC is system-wide, so the times compare; this module
reads the logs, merges the series and slides the window (pure functions, unit-tested).
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

WINDOW_S = 10.0


@dataclass(frozen=True)
class Hot:
    """A document's highest number of writes inside any `window_s` seconds."""

    name: str
    writes: int
    window_s: float
    total: int  # its writes in the whole range looked at
    min_gap_s: float | None = None  # the shortest time between two of its writes

    @property
    def per_second(self) -> float:
        return self.writes / self.window_s

    def as_dict(self) -> dict[str, object]:
        return {
            "document": self.name,
            "writes_in_window": self.writes,
            "window_s": self.window_s,
            "writes_per_s": round(self.per_second, 2),
            "writes_in_run": self.total,
            "min_gap_s": None if self.min_gap_s is None else round(self.min_gap_s, 3),
        }


def peak_in_window(times: Sequence[float], window_s: float = WINDOW_S) -> int:
    """The most `times` inside any window of `window_s` seconds, wherever it starts (each
    window ending at a write, (t - window_s, t], is checked: no other holds more)."""
    ordered = sorted(times)
    best = 0
    first = 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - window_s:
            first += 1
        best = max(best, last - first + 1)
    return best


def min_gap(times: Sequence[float]) -> float | None:
    """The shortest time between two consecutive writes (None for fewer than two): a
    document written once a second has gaps of about a second."""
    ordered = sorted(times)
    gaps = [b - a for a, b in pairwise(ordered)]
    return min(gaps) if gaps else None


def merge(*series: Mapping[str, Iterable[float]]) -> dict[str, list[float]]:
    merged: dict[str, list[float]] = {}
    for one in series:
        for name, times in one.items():
            merged.setdefault(name, []).extend(times)
    return merged


def within(
    series: Mapping[str, Iterable[float]], start: float | None = None, end: float | None = None
) -> dict[str, list[float]]:
    """Only the writes in [start, end] (either bound may be open)."""
    kept = {}
    for name, times in series.items():
        chosen = [t for t in times if (start is None or t >= start) and (end is None or t <= end)]
        if chosen:
            kept[name] = chosen
    return kept


def hottest(
    series: Mapping[str, Sequence[float]], window_s: float = WINDOW_S, top: int = 3
) -> list[Hot]:
    """The `top` documents by their highest writes in any window, hottest first (ties: by
    total writes, then by name, so that the answer is deterministic)."""
    ranked = [
        Hot(name, peak_in_window(times, window_s), window_s, len(times), min_gap(times))
        for name, times in series.items()
        if times
    ]
    ranked.sort(key=lambda h: (-h.writes, -h.total, h.name))
    return ranked[:top]


def parse_log(lines: Iterable[str]) -> dict[str, list[float]]:
    """`monotonic_ns document_name` lines as {name: [seconds]}; a torn last line (a worker
    killed mid-write) is skipped."""
    series: dict[str, list[float]] = {}
    for line in lines:
        moment, _, name = line.rstrip("\n").partition(" ")
        if not name or not moment.isdigit():
            continue
        series.setdefault(name, []).append(int(moment) / 1e9)
    return series


def read_logs(meter_path: Path | str) -> dict[str, list[float]]:
    """Every `<meter_path>.writes.<pid>` file, merged."""
    logs = []
    for path in sorted(glob.glob(f"{glob.escape(str(meter_path))}.writes.*")):
        with open(path, encoding="utf-8", errors="replace") as handle:
            logs.append(parse_log(handle))
    return merge(*logs)


def summary(
    series: Mapping[str, Sequence[float]], window_s: float = WINDOW_S, top: int = 3
) -> dict[str, object]:
    """What a report needs: the hottest document, its writes/s, and the runners-up."""
    ranked = hottest(series, window_s, top)
    return {
        "window_s": window_s,
        "documents_written": len(series),
        "writes": sum(len(t) for t in series.values()),
        "hottest": ranked[0].as_dict() if ranked else None,
        "next": [h.as_dict() for h in ranked[1:]],
    }
