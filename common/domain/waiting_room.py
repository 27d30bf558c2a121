"""A fair opening: cohort openings as data, a waiting room per opening, signed queue tickets.

An opening is "people born in these years may book (this product, in this region) from this
moment". It is published by an admin (audited) and drives three phases:

  before the window   booking for the cohort is refused: it says when it opens
  the waiting room    (`window` before the moment, 30 minutes by default) people join the room;
                      nobody books yet, and nobody's place is known yet
  the queue           from the moment on, for `queue_for` (12 hours by default): places are
                      admitted at a rate an admin sets (and may change live); an admitted
                      place may book during its turn (10 minutes by default)

The order is fair by construction. Everyone who joined before the moment is ordered by a draw
(`draw`: a keyed hash of the opening and the person, uniform in [0, 1), unknown to anyone
without the server's secret and never shown before the moment), so arriving early or
refreshing wins nothing; later arrivals queue behind them in arrival order. The draw is the
same however often a person joins: a second ticket replaces the first and never adds a place.

Admission needs no shared counter. Places are admitted in order at the configured rate, so
whether place r is admitted at time t is arithmetic (`admitted_count`): nobody writes a "next
to admit" document that every instance would hammer.

Tickets are signed (HMAC) and bound to the keyed patient id, not to a PESEL: useless to
anyone else, and the server can check them without a read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.domain.errors import DomainError, ValidationFailedError

Phase = Literal["announced", "waiting_room", "queue", "open"]
DEFAULT_WINDOW = timedelta(minutes=30)
DEFAULT_TURN = timedelta(minutes=10)
DEFAULT_QUEUE_FOR = timedelta(hours=12)
_OPENING_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"


class QueueTicketInvalidError(DomainError):
    """This queue ticket is not valid for you: join the queue again."""

    code = "queue_ticket_invalid"
    http_status = 403


class QueueTurnRequiredError(DomainError):
    """Booking for this opening goes through its queue: join it and wait for your turn."""

    code = "queue_turn_required"
    http_status = 409


class OpeningNotFoundError(DomainError):
    """No such opening."""

    code = "opening_not_found"
    http_status = 404


class RateChange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    at: datetime
    per_minute: float = Field(gt=0, le=1_000_000)


class Opening(BaseModel):
    """One cohort opening (stored in `openings/{opening_id}`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    opening_id: str = Field(pattern=_OPENING_ID)
    born_from: int | None = Field(default=None, ge=1900, le=2100)
    born_to: int | None = Field(default=None, ge=1900, le=2100)
    product: str | None = Field(default=None, max_length=40)
    voivodeship: str | None = Field(default=None, max_length=40)
    opens_at: datetime
    window_minutes: int = Field(default=30, ge=0, le=24 * 60)
    turn_minutes: int = Field(default=10, ge=1, le=24 * 60)
    queue_hours: float = Field(default=12, gt=0, le=24 * 14)
    # Admissions per minute, from the moment on; later entries change it live.
    rates: tuple[RateChange, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _coherent(self) -> Opening:
        if self.opens_at.tzinfo is None:
            raise ValueError("opens_at must carry its time zone")
        if self.born_from and self.born_to and self.born_to < self.born_from:
            raise ValueError("born_to is before born_from")
        ats = [r.at for r in self.rates]
        if ats != sorted(ats) or ats[0] > self.opens_at:
            raise ValueError("rates must be in time order, the first one at or before opens_at")
        return self

    # -- when -------------------------------------------------------------------------------
    @property
    def window_opens_at(self) -> datetime:
        return self.opens_at - timedelta(minutes=self.window_minutes)

    @property
    def queue_ends_at(self) -> datetime:
        return self.opens_at + timedelta(hours=self.queue_hours)

    def phase(self, now: datetime) -> Phase:
        if now < self.window_opens_at:
            return "announced"
        if now < self.opens_at:
            return "waiting_room"
        if now < self.queue_ends_at:
            return "queue"
        return "open"

    # -- who --------------------------------------------------------------------------------
    def applies_to(self, birth_date: date, product: str, voivodeship: str | None) -> bool:
        year = birth_date.year
        return (
            (self.born_from is None or year >= self.born_from)
            and (self.born_to is None or year <= self.born_to)
            and (self.product is None or self.product == product)
            and (self.voivodeship is None or self.voivodeship == voivodeship)
        )

    # -- admission --------------------------------------------------------------------------
    def admitted_count(self, now: datetime) -> int:
        """How many places (counted from the front) are admitted by `now`."""
        if now < self.opens_at:
            return 0
        return math.floor(self._admitted_by(now) + 1e-9)

    def _admitted_by(self, moment: datetime) -> float:
        total = 0.0
        for index, change in enumerate(self.rates):
            start = max(change.at, self.opens_at)
            end = self.rates[index + 1].at if index + 1 < len(self.rates) else moment
            end = min(end, moment)
            if end > start:
                total += (end - start).total_seconds() / 60 * change.per_minute
        return total

    def admitted_at(self, rank: int) -> datetime:
        """When place `rank` (0 = the front) is admitted, at the rates known now."""
        needed = rank + 1
        done = 0.0
        for index, change in enumerate(self.rates):
            start = max(change.at, self.opens_at)
            following = self.rates[index + 1].at if index + 1 < len(self.rates) else None
            if following is not None and following <= start:
                continue
            per_second = change.per_minute / 60
            if following is not None:
                span = (following - start).total_seconds() * per_second
                if done + span >= needed - 1e-9:
                    return start + timedelta(seconds=(needed - done) / per_second)
                done += span
            else:
                return start + timedelta(seconds=(needed - done) / per_second)
        raise AssertionError("rates cannot be empty")

    def current_rate(self, now: datetime) -> float:
        rate = self.rates[0].per_minute
        for change in self.rates:
            if change.at <= now:
                rate = change.per_minute
        return rate

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(mode="json") | {
            "window_opens_at": self.window_opens_at.isoformat(),
            "queue_ends_at": self.queue_ends_at.isoformat(),
        }


def draw(secret: bytes, opening_id: str, patient_key: str) -> float:
    """The person's place in the draw of an opening's early arrivals: uniform in [0, 1),
    fixed for that person and opening, unpredictable without the secret."""
    digest = hmac.new(secret, f"draw\x00{opening_id}\x00{patient_key}".encode(), hashlib.sha256)
    return int.from_bytes(digest.digest()[:8], "big") / 2**64


def sort_key(entry_joined_at: datetime, opening: Opening, drawn: float) -> tuple[int, float]:
    """Early arrivals (before the moment) by the draw, then the rest by arrival."""
    if entry_joined_at < opening.opens_at:
        return (0, drawn)
    return (1, entry_joined_at.timestamp())


# -- positions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Position:
    """Where a person stands in an opening's queue at a moment."""

    phase: Phase
    waiting: int  # people in the room (before the moment) or ahead of the front
    rank: int | None  # 0 = the front; None before the draw
    ahead: int | None
    admitted: bool
    admitted_at: datetime | None
    turn_ends_at: datetime | None
    expired: bool
    estimated_wait_s: float | None

    def to_api(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "phase": self.phase,
            "in_room": self.waiting,
            "position": None if self.rank is None else self.rank + 1,
            "ahead": self.ahead,
            "admitted": self.admitted,
            "admitted_at": iso(self.admitted_at),
            "turn_ends_at": iso(self.turn_ends_at),
            "expired": self.expired,
            "estimated_wait_s": None
            if self.estimated_wait_s is None
            else round(self.estimated_wait_s),
        }


def position_of(
    opening: Opening, rank: int | None, joined_at: datetime, in_room: int, now: datetime
) -> Position:
    """A place's standing: before the moment only the room's size is known. A turn starts
    when the place is admitted, or when its holder arrives if the queue had reached it."""
    phase = opening.phase(now)
    if rank is None or now < opening.opens_at:
        wait = (opening.opens_at - now).total_seconds() if now < opening.opens_at else None
        return Position(phase, in_room, None, None, False, None, None, False, wait)
    admitted_count = opening.admitted_count(now)
    admitted_at = max(opening.admitted_at(rank), joined_at)
    turn_ends_at = admitted_at + timedelta(minutes=opening.turn_minutes)
    admitted = rank < admitted_count
    expired = admitted and now >= turn_ends_at
    ahead = max(0, rank - admitted_count)
    wait = 0.0 if admitted else (admitted_at - now).total_seconds()
    return Position(
        phase, in_room, rank, ahead, admitted and not expired, admitted_at, turn_ends_at,
        expired, wait,
    )  # fmt: skip


def rank_in(keys: Sequence[tuple[int, float]], mine: tuple[int, float]) -> int:
    """Places ahead of `mine` in a sorted sequence of sort keys."""
    import bisect

    return bisect.bisect_left(keys, mine)


# -- tickets -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ticket:
    """A place in one opening's queue, bound to one person (keyed id), signed by us."""

    opening_id: str
    patient_key: str
    joined_at: datetime

    def sign(self, secret: bytes) -> str:
        body = json.dumps(
            {"o": self.opening_id, "p": self.patient_key, "j": self.joined_at.timestamp()},
            separators=(",", ":"),
        ).encode()
        mac = hmac.new(secret, b"ticket\x00" + body, hashlib.sha256).digest()[:16]
        return f"{_b64(body)}.{_b64(mac)}"

    @classmethod
    def verify(cls, token: str, secret: bytes) -> Ticket:
        try:
            body_text, mac_text = token.split(".", 1)
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (ValueError, TypeError):
            raise QueueTicketInvalidError() from None
        expected = hmac.new(secret, b"ticket\x00" + body, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expected):
            raise QueueTicketInvalidError()
        try:
            data = json.loads(body)
            return cls(str(data["o"]), str(data["p"]), datetime.fromtimestamp(data["j"], UTC))
        except (ValueError, KeyError, TypeError, OverflowError):
            raise QueueTicketInvalidError() from None

    def check_holder(self, opening_id: str, patient_key: str) -> None:
        if not hmac.compare_digest(self.patient_key, patient_key) or self.opening_id != opening_id:
            raise QueueTicketInvalidError()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or len(text) > 400:
        raise ValueError("bad ticket")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def validate_ticket_text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 500 or not value.isascii():
        raise ValidationFailedError("the X-Queue-Ticket header is not a ticket")
    return value
