"""The waiting room of each cohort opening (common/domain/waiting_room.py), for every channel.

Collections:
  openings/{opening_id}                   the opening (admin-published, audited)
  queue_entries/{opening_id}_{patient}    one place per person and opening (keyed id): when
                                          they joined and through which channel

Joining creates the person's place, or keeps it (a second join replaces the ticket, never
adds a place); a place whose turn has passed unused is replaced by a new one at the back.
The portal, the hotline (an agent joins the caller at the moment of the call) and the SMS
dialog all join the same room, so no channel jumps the queue.

A place's rank is where its sort key falls among everyone's (the draw for those who came
before the moment, arrival for the rest). Each instance keeps an opening's keys in memory
(`QueueView`), refreshed at most once a second with the places that changed since (one query,
like search's availability view), so a position check reads nothing and no document is
written by more than its own person. Admission is arithmetic on the rank and the rates
(Opening.admitted_count), so it needs no counter either.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field

from common.adapters.firestore_store import RPC
from common.domain.errors import CohortNotOpenError, ForbiddenError, ValidationFailedError
from common.domain.waiting_room import (
    Opening,
    OpeningNotFoundError,
    Position,
    QueueTicketInvalidError,
    QueueTurnRequiredError,
    RateChange,
    Ticket,
    draw,
    position_of,
    sort_key,
)
from common.services.idempotency import IdempotencyScope, StoredResponse
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner

OPENINGS = "openings"
QUEUE_ENTRIES = "queue_entries"
OPENINGS_TTL_S = 5.0
VIEW_REFRESH_S = 1.0
REFRESH_OVERLAP = timedelta(seconds=1)


def queue_secret(pesel_hash_key: bytes) -> bytes:
    """The waiting rooms' key (the draw, the tickets), derived from the server's one secret
    under its own label, so neither use can stand in for the other."""
    return hmac.new(pesel_hash_key, b"waiting-room-v1", hashlib.sha256).digest()


class OpeningRequest(BaseModel):
    """An admin's opening (PUT /v1/openings/{id})."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    born_from: int | None = Field(default=None, ge=1900, le=2100)
    born_to: int | None = Field(default=None, ge=1900, le=2100)
    product: str | None = Field(default=None, max_length=40)
    voivodeship: str | None = Field(default=None, max_length=40)
    opens_at: datetime
    window_minutes: int = Field(default=30, ge=0, le=24 * 60)
    turn_minutes: int = Field(default=10, ge=1, le=24 * 60)
    queue_hours: float = Field(default=12, gt=0, le=24 * 14)
    admit_per_minute: float = Field(gt=0, le=1_000_000)


class RateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    admit_per_minute: float = Field(gt=0, le=1_000_000)


def stored_opening(data: dict[str, Any]) -> Opening:
    """An opening as stored (with its bookkeeping fields)."""
    return Opening.model_validate({k: v for k, v in data.items() if k != "updated_at"})


def entry_id(opening_id: str, patient_key: str) -> str:
    return f"{opening_id}_{patient_key}"


@dataclass
class QueueView:
    """One opening's places (sort keys by person), in memory, refreshed with what changed."""

    client: firestore.Client
    opening_id: str
    refresh_s: float = VIEW_REFRESH_S
    monotonic: Callable[[], float] = time.monotonic
    keys: dict[str, tuple[int, float]] = field(default_factory=dict)
    ordered: list[tuple[int, float]] = field(default_factory=list)
    _watermark: datetime | None = None
    _checked_at: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh_if_due(self) -> None:
        if self.monotonic() - self._checked_at < self.refresh_s:
            return
        with self._lock:
            if self.monotonic() - self._checked_at < self.refresh_s:
                return
            query: Any = self.client.collection(QUEUE_ENTRIES).where(
                filter=firestore.FieldFilter("opening_id", "==", self.opening_id)
            )
            if self._watermark is not None:
                query = query.where(
                    filter=firestore.FieldFilter(
                        "updated_at", ">", self._watermark - REFRESH_OVERLAP
                    )
                )
            changed = list(query.stream(**RPC))
            if changed:
                keys = dict(self.keys)
                for snapshot in changed:
                    data = snapshot.to_dict() or {}
                    keys[data["patient_key"]] = (int(data["key0"]), float(data["key1"]))
                self._publish(keys)
                self._watermark = changed[0].read_time
            self._checked_at = self.monotonic()

    def remember(self, patient_key: str, key: tuple[int, float]) -> None:
        """A place this instance just wrote: known at once, before the next refresh."""
        with self._lock:
            keys = dict(self.keys)
            keys[patient_key] = key
            self._publish(keys)

    def _publish(self, keys: dict[str, tuple[int, float]]) -> None:
        self.keys = keys
        self.ordered = sorted(keys.values())

    def rank(self, key: tuple[int, float]) -> int:
        return bisect.bisect_left(self.ordered, key)

    def size(self) -> int:
        return len(self.ordered)


class WaitingRoom:
    def __init__(
        self,
        units: UnitOfWorkRunner,
        client: firestore.Client,
        secret: bytes,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.units = units
        self.client = client
        self.secret = secret
        self.monotonic = monotonic
        self._openings: tuple[float, list[Opening]] | None = None
        self._views: dict[str, QueueView] = {}
        self._lock = threading.Lock()

    # -- openings (admin) ------------------------------------------------------------------
    def publish(
        self,
        actor: Any,
        opening_id: str,
        body: OpeningRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        def attempt(uow: UnitOfWork) -> StoredResponse:
            found = uow.get(OPENINGS, opening_id)
            earlier = stored_opening(found.data) if found is not None else None
            if earlier is not None and earlier.phase(now) not in ("announced",):
                # The room is open or the moment has passed: its rules may not change under
                # the people in it (the rate may: POST .../rate).
                if _rules_of(earlier) != _rules_of_request(body):
                    raise ValidationFailedError(
                        "this opening's room is open: only its admission rate may change"
                    )
            rates = (
                earlier.rates
                if earlier is not None and earlier.phase(now) != "announced"
                else (RateChange(at=body.opens_at, per_minute=body.admit_per_minute),)
            )
            opening = _opening(opening_id, body, rates)
            uow.set(OPENINGS, opening_id, opening.model_dump(mode="json") | {"updated_at": now})
            uow.audit(
                actor, "opening.publish", [], now, opening_id=opening_id, created=found is None
            )
            uow.after_commit(self.forget_openings)
            return uow.respond(
                StoredResponse(201 if found is None else 200, {"opening": opening.to_api()})
            )

        return self.units.run(attempt, idem=idem, gave_up=_busy)

    def set_rate(
        self,
        actor: Any,
        opening_id: str,
        body: RateRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        """Admit faster or slower from now on (the places admitted so far stay admitted)."""

        def attempt(uow: UnitOfWork) -> StoredResponse:
            found = uow.get(OPENINGS, opening_id)
            if found is None:
                raise OpeningNotFoundError()
            opening = stored_opening(found.data)
            moment = max(now, opening.opens_at)
            kept = tuple(r for r in opening.rates if r.at < moment)
            rates = (*kept, RateChange(at=moment, per_minute=body.admit_per_minute))
            updated = opening.model_copy(update={"rates": rates})
            uow.update(
                OPENINGS,
                opening_id,
                {"rates": [r.model_dump(mode="json") for r in rates], "updated_at": now},
                if_version=found.version,
            )
            uow.audit(
                actor, "opening.rate", [], now, opening_id=opening_id,
                per_minute=body.admit_per_minute,
            )  # fmt: skip
            uow.after_commit(self.forget_openings)
            return uow.respond(StoredResponse(200, {"opening": updated.to_api()}))

        return self.units.run(attempt, idem=idem, gave_up=_busy)

    def openings(self, now: datetime) -> list[Opening]:
        """The openings not yet over, cached for a few seconds per instance."""
        tick = self.monotonic()
        cached = self._openings
        if cached is None or tick - cached[0] > OPENINGS_TTL_S:
            found = self.units.reader().query(OPENINGS)
            parsed = [stored_opening(d.data) for d in found]
            cached = (tick, parsed)
            self._openings = cached
        return [o for o in cached[1] if o.phase(now) != "open"]

    def forget_openings(self) -> None:
        self._openings = None

    def opening(self, opening_id: str, now: datetime) -> Opening:
        for opening in self.openings(now):
            if opening.opening_id == opening_id:
                return opening
        found = self.units.reader().get(OPENINGS, opening_id)
        if found is None:
            raise OpeningNotFoundError()
        return stored_opening(found.data)

    def listing(self, now: datetime) -> dict[str, Any]:
        return {
            "openings": [
                o.to_api() | {"phase": o.phase(now)}
                for o in sorted(self.openings(now), key=lambda o: o.opens_at)
            ]
        }

    # -- places ----------------------------------------------------------------------------
    def _view(self, opening_id: str) -> QueueView:
        with self._lock:
            view = self._views.get(opening_id)
            if view is None:
                view = QueueView(self.client, opening_id, monotonic=self.monotonic)
                self._views[opening_id] = view
            return view

    def join(
        self,
        opening_id: str,
        patient_key: str,
        birth_date: date,
        channel: str,
        now: datetime,
    ) -> dict[str, Any]:
        """Take a place (or keep the one held): the signed ticket and where it stands."""
        opening = self.opening(opening_id, now)
        phase = opening.phase(now)
        if phase == "announced":
            raise CohortNotOpenError(
                f"the waiting room opens at {opening.window_opens_at.isoformat()}",
                details={"window_opens_at": opening.window_opens_at.isoformat()},
            )
        if phase == "open":
            return {"opening_id": opening_id, "phase": "open", "ticket": None, "position": None}
        if not (
            (opening.born_from is None or birth_date.year >= opening.born_from)
            and (opening.born_to is None or birth_date.year <= opening.born_to)
        ):
            raise ForbiddenError("this opening is for another age group")
        drawn = draw(self.secret, opening_id, patient_key)
        view = self._view(opening_id)

        def attempt(uow: UnitOfWork) -> tuple[datetime, tuple[int, float]]:
            found = uow.get(QUEUE_ENTRIES, entry_id(opening_id, patient_key))
            if found is not None:
                joined_at = found.data["joined_at"]
                key = (int(found.data["key0"]), float(found.data["key1"]))
                view.remember(patient_key, key)
                view.refresh_if_due()
                held = position_of(opening, _rank(view, key, now, opening), joined_at,
                                   view.size(), now)  # fmt: skip
                if not held.expired:
                    return joined_at, key  # a second ticket for the same place
            joined_at = now
            key = sort_key(joined_at, opening, drawn)
            uow.set(
                QUEUE_ENTRIES,
                entry_id(opening_id, patient_key),
                {
                    "opening_id": opening_id,
                    "patient_key": patient_key,
                    "joined_at": joined_at,
                    "channel": channel,
                    "key0": key[0],
                    "key1": key[1],
                    "updated_at": firestore.SERVER_TIMESTAMP,
                    "expires_at": opening.queue_ends_at + timedelta(days=1),
                },
            )
            return joined_at, key

        joined_at, key = self.units.run(attempt, gave_up=_busy)
        view.remember(patient_key, key)
        ticket = Ticket(opening_id, patient_key, joined_at).sign(self.secret)
        return {
            "opening_id": opening_id,
            "phase": opening.phase(now),
            "ticket": ticket,
            "position": self._position(opening, view, key, joined_at, now).to_api(),
        }

    def position(
        self, opening_id: str, patient_key: str, ticket_text: str | None, now: datetime
    ) -> dict[str, Any]:
        opening = self.opening(opening_id, now)
        ticket = self._ticket(ticket_text, opening_id, patient_key)
        key = sort_key(ticket.joined_at, opening, draw(self.secret, opening_id, patient_key))
        view = self._view(opening_id)
        position = self._position(opening, view, key, ticket.joined_at, now)
        return {"opening_id": opening_id, "position": position.to_api()}

    def _ticket(self, text: str | None, opening_id: str, patient_key: str) -> Ticket:
        if not text:
            raise QueueTicketInvalidError("a queue ticket is required (X-Queue-Ticket)")
        ticket = Ticket.verify(text, self.secret)
        ticket.check_holder(opening_id, patient_key)
        return ticket

    def _position(
        self,
        opening: Opening,
        view: QueueView,
        key: tuple[int, float],
        joined_at: datetime,
        now: datetime,
    ) -> Position:
        view.refresh_if_due()
        return position_of(opening, _rank(view, key, now, opening), joined_at, view.size(), now)

    def governing(self, birth_date: date, products: Sequence[str], now: datetime) -> Opening | None:
        """The opening a person of this birth date, booking one of `products` somewhere,
        would meet (not yet open to all): for a channel that asks before it knows the point
        (the SMS dialog). An opening of one region counts too: joining a room one turns out
        not to need delays nobody, skipping one that was needed refuses the booking."""
        pending = [
            o
            for o in self.openings(now)
            if o.phase(now) != "open"
            and any(o.applies_to(birth_date, p, o.voivodeship) for p in products)
        ]
        return min(pending, key=lambda o: o.opens_at, default=None)

    # -- the gate of a booking -------------------------------------------------------------
    def require_turn(
        self,
        patient_key: str,
        birth_date: date,
        product: str,
        voivodeship: Callable[[], str | None],
        ticket_text: str | None,
        now: datetime,
    ) -> None:
        """Refuse a booking that an opening governs, unless its holder's turn has come
        (`voivodeship`: the slot's region, asked for only if an opening names one)."""
        for opening in self.openings(now):
            region = voivodeship() if opening.voivodeship is not None else None
            if not opening.applies_to(birth_date, product, region):
                continue
            phase = opening.phase(now)
            if phase in ("announced", "waiting_room"):
                raise CohortNotOpenError(
                    f"booking for your group opens at {opening.opens_at.isoformat()}"
                    + (
                        "; its waiting room is open now"
                        if phase == "waiting_room"
                        else f"; its waiting room opens at {opening.window_opens_at.isoformat()}"
                    ),
                    details={
                        "opening_id": opening.opening_id,
                        "opens_at": opening.opens_at.isoformat(),
                        "window_opens_at": opening.window_opens_at.isoformat(),
                    },
                )
            # The queue phase: a ticket for this opening, of this person, whose turn it is.
            try:
                ticket = self._ticket(ticket_text, opening.opening_id, patient_key)
            except QueueTicketInvalidError as err:
                raise QueueTurnRequiredError(
                    err.message,
                    details={
                        "opening_id": opening.opening_id,
                        "reason": "ticket_invalid" if ticket_text else "ticket_missing",
                    },
                ) from None
            key = sort_key(ticket.joined_at, opening, draw(self.secret, opening.opening_id,
                                                           patient_key))  # fmt: skip
            position = self._position(
                opening, self._view(opening.opening_id), key, ticket.joined_at, now
            )
            if not position.admitted:
                raise QueueTurnRequiredError(
                    "your turn has passed: join the queue again"
                    if position.expired
                    else "your turn has not come yet",
                    details={"opening_id": opening.opening_id} | position.to_api(),
                )


def _rank(view: QueueView, key: tuple[int, float], now: datetime, opening: Opening) -> int | None:
    """Nobody's place is known before the moment (the draw is kept until then)."""
    if now < opening.opens_at:
        return None
    return view.rank(key)


def _opening(opening_id: str, body: OpeningRequest, rates: tuple[RateChange, ...]) -> Opening:
    return Opening(
        opening_id=opening_id,
        born_from=body.born_from,
        born_to=body.born_to,
        product=body.product,
        voivodeship=body.voivodeship,
        opens_at=body.opens_at,
        window_minutes=body.window_minutes,
        turn_minutes=body.turn_minutes,
        queue_hours=body.queue_hours,
        rates=rates,
    )


def _rules_of(opening: Opening) -> tuple[Any, ...]:
    return (
        opening.born_from, opening.born_to, opening.product, opening.voivodeship,
        opening.opens_at, opening.window_minutes, opening.turn_minutes, opening.queue_hours,
    )  # fmt: skip


def _rules_of_request(body: OpeningRequest) -> tuple[Any, ...]:
    return (
        body.born_from, body.born_to, body.product, body.voivodeship,
        body.opens_at, body.window_minutes, body.turn_minutes, body.queue_hours,
    )  # fmt: skip


def _busy() -> Exception:
    from common.domain.errors import OverloadedError

    return OverloadedError("the waiting room is very busy right now; try again shortly")


class QueueAccess:
    """The waiting room as the channels use it: who joins, their quota, the agent's audit."""

    def __init__(self, room: WaitingRoom, units: UnitOfWorkRunner, quotas: Any, secret: bytes):
        self.room = room
        self.units = units
        self.quotas = quotas
        self.secret = secret  # the PESEL hash key: a place belongs to a keyed patient id

    def join(
        self, actor: Any, opening_id: str, pesel: str, channel: str, now: datetime
    ) -> dict[str, Any]:
        from common.domain.calendar import WARSAW
        from common.domain.pesel import parse_pesel, pesel_key
        from common.services.actions import Subject

        parsed = parse_pesel(pesel, now.astimezone(WARSAW).date())
        key = pesel_key(parsed, self.secret)
        if self.quotas is not None:
            self.quotas.enforce(self.units, self.units.reader(), actor, "queue_join", key, now)
        result = self.room.join(opening_id, key, parsed.birth_date, channel, now)

        def record(uow: UnitOfWork) -> None:
            if self.quotas is not None:
                self.quotas.count(uow, "queue_join", key, now)
            uow.audit(actor, "queue.join", [Subject("", key)], now, opening_id=opening_id)

        self.units.run(record, gave_up=_busy)
        return result

    def position(
        self,
        role: str,
        own_patient_key: str | None,
        opening_id: str,
        ticket_text: str | None,
        now: datetime,
    ) -> dict[str, Any]:
        """A patient asks about their own place; an agent about the caller's (whose ticket it
        holds, signed by us: the ticket names the place)."""
        if role == "patient":
            if own_patient_key is None:
                raise QueueTicketInvalidError()
            return self.room.position(opening_id, own_patient_key, ticket_text, now)
        if not ticket_text:
            raise QueueTicketInvalidError("a queue ticket is required (X-Queue-Ticket)")
        holder = Ticket.verify(ticket_text, self.room.secret).patient_key
        return self.room.position(opening_id, holder, ticket_text, now)
