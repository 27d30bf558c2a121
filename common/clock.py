"""The one clock of every process: functions, services' callers, the local stack, the tests.

Services never read the time: they take `now` as a parameter (the domain is pure). Whoever
calls them (an entry point, a simulator, the Cloud Tasks emulator, the scheduler, a test)
asks this module. In production it is the system clock, unchanged.

Locally the whole stack can be made to believe it is another time of day, so that the suites
that care ("today", "tomorrow", the reminder at 18:00 the day before) are shown to pass at any
hour, evening and midnight included:

    CLOCK_OFFSET_S=<seconds>   added to the system clock (may be negative)
    CLOCK_AT=23:50             the Warsaw time of day it is now, today (or an ISO datetime)

    CLOCK_FILE=<path>          the offset lives in this JSON file ({"offset_s": N}); every
                               process re-reads it when it changes, so a test can move the
                               time of the whole running stack (the day before a visit, then
                               the visit's morning) without restarting anything

`CLOCK_AT` is turned into `CLOCK_OFFSET_S` once, by the first process that reads it
(`resolve_offset`), and written back to the environment, so that every child process (the
gateway, the simulators, the Cloud Tasks emulator) shares exactly the same offset and the
clock keeps running from there. A shifted clock is refused outside the emulators
(common/config.py): production time is never anything but the real time.

Credentials are the one exception: ID tokens and OIDC tokens are minted and checked against
the real time, because the libraries and servers that verify them (firebase-admin, the Auth
emulator, Google) do so whatever our clock says.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time as _time
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

WARSAW = ZoneInfo("Europe/Warsaw")
OFFSET_VARIABLE = "CLOCK_OFFSET_S"
AT_VARIABLE = "CLOCK_AT"
FILE_VARIABLE = "CLOCK_FILE"
CLOCK_VARIABLES = (OFFSET_VARIABLE, AT_VARIABLE, FILE_VARIABLE)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current moment, timezone-aware (UTC)."""
        ...

    def time(self) -> float:
        """The current moment as epoch seconds (what `time.time()` would say)."""
        ...


@dataclass(frozen=True)
class ShiftedClock:
    """The system clock plus a fixed offset (zero in production)."""

    offset_s: float = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_s)

    def time(self) -> float:
        return _time.time() + self.offset_s

    @property
    def shifted(self) -> bool:
        return self.offset_s != 0.0


class FileClock:
    """The system clock plus an offset read from a file that someone else may move.

    The file is checked at most every `check_every_s` (a stat), and re-read only when it
    changed: cheap enough for every `now()` of a request.
    """

    def __init__(self, path: Path, check_every_s: float = 0.1) -> None:
        self.path = path
        self._check_every_s = check_every_s
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._stamp: tuple[int, int] | None = None
        self._offset_s = 0.0

    @property
    def offset_s(self) -> float:
        with self._lock:
            tick = _time.monotonic()
            if tick - self._checked_at >= self._check_every_s:
                self._checked_at = tick
                self._reload()
            return self._offset_s

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._offset_s = None, 0.0
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            self._offset_s = float(json.loads(self.path.read_text())["offset_s"])
            self._stamp = stamp
        except (ValueError, KeyError, TypeError, OSError):
            pass  # a half-written file: keep the last offset, read it again next time

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_s)

    def time(self) -> float:
        return _time.time() + self.offset_s

    def set_offset(self, offset_s: float) -> None:
        write_clock_file(self.path, offset_s)
        with self._lock:
            self._checked_at = float("-inf")

    def move_to(self, moment: datetime) -> None:
        """Make it `moment` now, for every process that reads this file."""
        self.set_offset((moment - datetime.now(UTC)).total_seconds())


def write_clock_file(path: Path, offset_s: float) -> None:
    # Written aside and renamed: a reader never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps({"offset_s": offset_s}))
    os.replace(partial, path)


class SettableClock:
    """A clock a test moves by hand (time passing without waiting for it)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a clock's time must be timezone-aware")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def time(self) -> float:
        return self._now.timestamp()

    def set(self, moment: datetime) -> None:
        self._now = moment.astimezone(UTC)

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now


def parse_clock_at(value: str, real_now: datetime) -> datetime:
    """'HH:MM' (Warsaw time today) or an ISO datetime (naive means Warsaw time)."""
    text = value.strip()
    try:
        if len(text) <= 5 and ":" in text:
            hours, minutes = (int(part) for part in text.split(":"))
            local_day = real_now.astimezone(WARSAW).date()
            return datetime.combine(local_day, time(hours, minutes), tzinfo=WARSAW)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{AT_VARIABLE}={value!r}: give HH:MM (Warsaw time today) or an ISO datetime"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=WARSAW)


def resolve_offset(env: MutableMapping[str, str]) -> float:
    """The offset the environment asks for; CLOCK_AT is converted once and written back."""
    raw = env.get(OFFSET_VARIABLE)
    if raw:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{OFFSET_VARIABLE}={raw!r} is not a number of seconds") from None
    at = env.get(AT_VARIABLE)
    if not at:
        return 0.0
    real_now = datetime.now(UTC)
    offset = (parse_clock_at(at, real_now) - real_now).total_seconds()
    env[OFFSET_VARIABLE] = f"{offset:.3f}"
    return offset


@functools.cache
def process_clock() -> ShiftedClock | FileClock:
    """This process's clock, from the environment, decided once (`cache_clear()` forgets it)."""
    offset = resolve_offset(os.environ)
    path = os.environ.get(FILE_VARIABLE)
    if not path:
        return ShiftedClock(offset)
    file_clock = FileClock(Path(path))
    if not file_clock.path.exists():
        file_clock.set_offset(offset)
    return file_clock


def now() -> datetime:
    return process_clock().now()


def epoch_seconds() -> float:
    return process_clock().time()


def today_warsaw() -> date:
    return now().astimezone(WARSAW).date()
