"""Quotas per identity, as data: how many of each kind of request, over which windows.

Pure: the policy (loaded from common/domain/quotas.yaml or from the admin's override), the
fixed windows a moment falls in, and the refusal. Counting lives in common/services/quotas.py.

Windows are fixed (aligned to the epoch), not sliding: a person who used up a minute's quota
can try again at the next minute, and the refusal says exactly when.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.domain.errors import DomainError

DEFAULT_POLICY_PATH = Path(__file__).parent / "quotas.yaml"
KINDS = ("search", "booking_write", "lookup", "callback", "queue_join", "write_attempt")
# Counted per phone by common/services/phone_limits.py, in its hour and day windows.
PHONE_KINDS = {"sms_inbound": "inbound", "sms_start": "start", "sms_code": "code",
               "phone_code_request": "code_request"}  # fmt: skip
PHONE_WINDOWS = (3600, 86400)
MAX_WINDOWS = 6


class RateLimitedError(DomainError):
    """Too many requests of this kind for now."""

    code = "rate_limited"
    http_status = 429

    def __init__(
        self, message: str | None = None, *, retry_after_s: int = 60, details: Any = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class Window(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seconds: int = Field(ge=1, le=31 * 86400)
    max: int = Field(ge=0, le=1_000_000)

    def index(self, now: datetime) -> int:
        return int(now.timestamp()) // self.seconds

    def ends_at(self, now: datetime) -> datetime:
        return datetime.fromtimestamp((self.index(now) + 1) * self.seconds, UTC)


class QuotaPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1, max_length=40)
    limits: dict[str, tuple[Window, ...]]

    def windows(self, kind: str) -> tuple[Window, ...]:
        return self.limits.get(kind, ())

    @model_validator(mode="after")
    def _known_kinds_with_few_windows(self) -> QuotaPolicy:
        unknown = sorted(set(self.limits) - set(KINDS) - set(PHONE_KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown}: known are {[*KINDS, *PHONE_KINDS]}")
        if any(len(windows) > MAX_WINDOWS for windows in self.limits.values()):
            raise ValueError(f"at most {MAX_WINDOWS} windows a kind")
        return self

    @model_validator(mode="after")
    def _phone_kinds_count_hours_and_days(self) -> QuotaPolicy:
        for kind in PHONE_KINDS:
            seconds = sorted(w.seconds for w in self.limits.get(kind, ()))
            if kind in self.limits and seconds != list(PHONE_WINDOWS):
                raise ValueError(f"{kind}: give exactly an hour (3600) and a day (86400) window")
        return self

    def phone_limits(self) -> dict[str, tuple[int, int]]:
        """(per hour, per day) of each per-phone kind given, by its phone_limits name."""
        found = {}
        for kind, name in PHONE_KINDS.items():
            windows = {w.seconds: w.max for w in self.limits.get(kind, ())}
            if windows:
                found[name] = (windows[3600], windows[86400])
        return found


def load_policy(path: Path = DEFAULT_POLICY_PATH) -> QuotaPolicy:
    return QuotaPolicy.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def refusal(kind: str, window: Window, now: datetime) -> RateLimitedError:
    """429, saying when the person may try again (the end of the full window)."""
    until = window.ends_at(now)
    seconds = max(1, int((until - now).total_seconds() + 0.999))
    words = {
        "search": "searches",
        "booking_write": "bookings, cancellations and moves",
        "lookup": "patient look-ups",
        "callback": "callback requests",
        "queue_join": "queue joins",
        "write_attempt": "booking requests",
    }.get(kind, "requests")
    span = _span(window.seconds)
    return RateLimitedError(
        f"too many {words}: at most {window.max} {span}; you can try again at "
        f"{until.isoformat(timespec='seconds')} (in {seconds} s)",
        retry_after_s=seconds,
        details={"kind": kind, "limit": window.max, "window_s": window.seconds,
                 "retry_at": until.isoformat(timespec="seconds")},
    )  # fmt: skip


def _span(seconds: int) -> str:
    if seconds % 86400 == 0:
        days = seconds // 86400
        return "a day" if days == 1 else f"in {days} days"
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "an hour" if hours == 1 else f"in {hours} hours"
    if seconds % 60 == 0:
        minutes = seconds // 60
        return "a minute" if minutes == 1 else f"in {minutes} minutes"
    return f"in {seconds} seconds"


def counter_id(kind: str, identity: str, window: Window, now: datetime) -> str:
    return f"{kind}_{identity}_{window.seconds}_{window.index(now)}"


def counter_expiry(window: Window, now: datetime) -> datetime:
    """Counters are kept one window past their end (TTL), then Firestore deletes them."""
    return window.ends_at(now) + timedelta(seconds=window.seconds)
