"""Free seats as search shows them: written in the background, read from memory.

The truth of a slot is its seats (`seats/{slot}_{n}`, created only when claimed): a booking
reads them, never a counter. What search shows (`availability/{point}`: every slot's capacity
and free seats) is a view of that truth, allowed to lag by a few seconds, and kept so that no
document is ever a hot spot:

- A booking, cancellation or move does not touch the point's availability document. It
  `create()`s one small delta document (`availability_deltas/{random id}`: the slots and the
  change of their free seats) in its own commit. Many bookers of one point write many
  different documents, never the same one.
- The folder (`fold_availability`, fired every minute by Cloud Scheduler, folding every
  second for most of that minute) sums the pending deltas per point and applies them in one
  commit: one blind Increment update per point with pending changes, and the deltas deleted
  with an exists-precondition, so that each delta is folded exactly once even if two folders
  run at once. So a point's document is written at most once a fold round, about once a
  second at the busiest point of a rush, whatever the number of bookers.
- Search instances hold every point's calendar in memory (`AvailabilityView`): loaded once,
  then refreshed by a query for the documents whose `changed_at` moved since the last one, at
  most once a second. A warm instance answers a search without reading Firestore; what it
  reads is proportional to what changed, not to the number of searches.
- Booking instances keep the calendars of the points they book at (`CalendarCache`): a slot's
  capacity, fresh within a second. A capacity cut is enforced at once by blocker seats
  (staff_calendar.py), so a stale capacity can only hide, for that second, seats just added.

Staleness, end to end: a booking becomes visible in search after the folder's round (about a
second) plus the view's refresh (about a second); `docs/booking.md` gives the bounds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from common.adapters.firestore_store import (
    AVAILABILITY,
    AVAILABILITY_DELTAS,
    RPC,
    read_only_data,
)
from common.domain.calendar import FreeSeatIndex, PointCalendar, SlotRef

CHANGED_AT = "changed_at"
FOLD_BATCH = 400  # deltas per commit, with their points' updates: under Firestore's 500 writes
# A little over a second: a round's commit lands when the emulator or Firestore answers, so
# rounds started 1.0 s apart were seen 0.85 s apart, 11 writes of a point's document in some
# 10 s (bench, 5,000 on one point). At 1.25 s a document stays under one write a second over
# any 10 s; search's counts lag the truth by that much more, which only orders offers.
FOLD_INTERVAL_S = 1.25
DELTA_KEEP = timedelta(days=1)
VIEW_REFRESH_S = 1.0
CALENDAR_TTL_S = 1.0
# A refresh asks for documents changed since the read time of the last one, minus this much:
# a server timestamp is kept to the millisecond, so a commit just after that read could carry
# a stamp a hair before it; the overlap re-reads what changed in the last second instead.
REFRESH_OVERLAP = timedelta(seconds=1)
LOAD_PAGE = 500


def changed(fields: dict[str, Any]) -> dict[str, Any]:
    """Every write to an availability document stamps it, so that views find the change."""
    return {**fields, CHANGED_AT: firestore.SERVER_TIMESTAMP}


def delta_document(changes: Iterable[tuple[str, int]], now: datetime) -> dict[str, Any] | None:
    """(slot_id, change of its free seats) as one delta document; None if nothing changes."""
    summed: dict[str, int] = {}
    for slot_id, delta in changes:
        summed[slot_id] = summed.get(slot_id, 0) + delta
    entries = [
        {"point_id": ref.point_id, "day": ref.day_key, "slot": ref.slot_key, "delta": delta}
        for ref, delta in ((SlotRef.parse(s), d) for s, d in sorted(summed.items()))
        if delta
    ]
    points = sorted({e["point_id"] for e in entries})
    if not entries:
        return None
    # Folded within seconds; the TTL is only a safety net against a folder stuck for a day
    # (the seats are the truth: a lost delta only skews search's free-seat counts).
    return {"changes": entries, "point_ids": points, "at": now, "expires_at": now + DELTA_KEEP}


class _Staging:
    """What stage_free_changes needs of a unit of work."""

    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> None: ...


def stage_free_changes(uow: Any, changes: Iterable[tuple[str, int]], now: datetime) -> None:
    """Record, in the caller's commit, how the free seats of some slots change."""
    document = delta_document(changes, now)
    if document is not None:
        uow.create(AVAILABILITY_DELTAS, uuid.uuid4().hex, document)


@dataclass(frozen=True)
class FoldResult:
    deltas: int
    points: int

    def __add__(self, other: FoldResult) -> FoldResult:
        return FoldResult(self.deltas + other.deltas, self.points + other.points)


class AvailabilityFolder:
    """Applies pending deltas to the availability documents, each delta exactly once."""

    def __init__(self, client: firestore.Client, batch_size: int = FOLD_BATCH) -> None:
        self.db = client
        self.batch_size = batch_size

    def fold_once(self, point_id: str | None = None) -> FoldResult:
        """One round: up to `batch_size` deltas (of one point, if given), one commit; (0, 0)
        when nothing is pending."""
        # No order: increments commute, and an unordered query needs no index on a field that
        # only ever grows (Firestore's hotspot for ordered writes).
        query: Any = self.db.collection(AVAILABILITY_DELTAS)
        if point_id is not None:
            query = query.where(
                filter=firestore.FieldFilter("point_ids", "array_contains", point_id)
            )
        return self.apply(list(query.limit(self.batch_size).stream(**RPC)))

    def apply(self, snapshots: list[Any]) -> FoldResult:
        """Apply these pending deltas in one commit; nothing if another folder took any."""
        if not snapshots:
            return FoldResult(0, 0)
        per_point: dict[str, dict[tuple[str, str], int]] = {}
        for snapshot in snapshots:
            for change in (snapshot.to_dict() or {}).get("changes", []):
                slots = per_point.setdefault(change["point_id"], {})
                key = (change["day"], change["slot"])
                slots[key] = slots.get(key, 0) + int(change["delta"])
        batch = self.db.batch()
        for point_id, slots in per_point.items():
            days: dict[str, dict[str, Any]] = {}
            for (day, slot), delta in slots.items():
                if delta:
                    days.setdefault(day, {})[slot] = {"free": firestore.Increment(delta)}
            if not days:
                continue  # booked and cancelled within the round: nothing to apply (and an
                # empty map in a merge would replace the calendar with nothing)
            # A merge, not an update: it cannot fail on a point whose document is gone.
            batch.set(
                self.db.collection(AVAILABILITY).document(point_id),
                changed({"days": days}),
                merge=True,
            )
        exists = self.db.write_option(exists=True)
        for snapshot in snapshots:
            batch.delete(snapshot.reference, option=exists)
        try:
            batch.commit(**RPC)
        except (gexc.NotFound, gexc.FailedPrecondition):
            # Another folder took some of these first (their delete found nothing): nothing of
            # this round was applied; the next round reads what is still pending.
            return FoldResult(0, 0)
        return FoldResult(len(snapshots), len(per_point))

    def fold_point(self, point_id: str) -> FoldResult:
        """Bring one point's document up to date now (before staff or supply decide on it)."""
        return self.fold_all(point_id=point_id)

    def fold_all(self, max_rounds: int = 100, point_id: str | None = None) -> FoldResult:
        """Fold until nothing is pending (tests, and the end of a scheduled run)."""
        total = FoldResult(0, 0)
        for _ in range(max_rounds):
            result = self.fold_once(point_id)
            total += result
            if result.deltas == 0:
                break
        return total

    def run_for(
        self,
        seconds: float,
        interval_s: float = FOLD_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> FoldResult:
        """One fold round every `interval_s` for `seconds` (a scheduled run covers its minute).

        One round, not "fold until nothing is pending": that writes each point's document at
        most once an interval, whatever the backlog (a backlog of thousands of deltas is folded
        `batch_size` a second, well above the peak of bookings and cancellations)."""
        total = FoldResult(0, 0)
        deadline = monotonic() + seconds
        while True:
            started = monotonic()
            result = self.fold_once()
            total += result
            if started + interval_s >= deadline:
                return total
            sleep(max(0.0, interval_s - (monotonic() - started)))


@dataclass
class _Entry:
    calendar: PointCalendar  # parsed once per read, not once per booking
    loaded_at: float


@dataclass
class AvailabilityView:
    """Every point's free seats in memory (a FreeSeatIndex per calendar, not the documents:
    about a third of the memory), refreshed with what changed at most once a second.

    Readers never wait for a refresh another thread is doing: they use the view as it is.
    """

    client: firestore.Client
    refresh_s: float = VIEW_REFRESH_S
    monotonic: Callable[[], float] = time.monotonic
    overlap: timedelta = REFRESH_OVERLAP
    indexes: dict[str, FreeSeatIndex] = field(default_factory=dict)
    reads: int = 0
    _watermark: datetime | None = None
    _checked_at: float = float("-inf")
    _loaded: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh_if_due(self) -> None:
        if self.monotonic() - self._checked_at < self.refresh_s and self._loaded:
            return
        if not self._lock.acquire(blocking=not self._loaded):
            return  # another thread is refreshing: serve what we have
        try:
            if self.monotonic() - self._checked_at < self.refresh_s and self._loaded:
                return
            self._refresh()
            self._checked_at = self.monotonic()
        finally:
            self._lock.release()

    def invalidate(self) -> None:
        self._checked_at = float("-inf")

    def _refresh(self) -> None:
        if self._loaded:
            self._load_changed()
        else:
            self._load_all()
        self._loaded = True

    def _load_all(self) -> None:
        """Every calendar, in pages (a country is too much for one response)."""
        indexes: dict[str, FreeSeatIndex] = {}
        collection = self.client.collection(AVAILABILITY)
        last: Any = None
        watermark: datetime | None = None
        while True:
            query = collection.order_by("__name__").limit(LOAD_PAGE)
            if last is not None:
                query = query.start_after(last)
            page = list(query.stream(**RPC))
            for snapshot in page:
                indexes[snapshot.id] = FreeSeatIndex.build(snapshot.id, read_only_data(snapshot))
                # Changes during the load are caught by the next refresh: it starts from the
                # first page's read time.
                watermark = watermark or snapshot.read_time
            self.reads += len(page)
            if len(page) < LOAD_PAGE:
                break
            last = page[-1]
        self.indexes = indexes
        self._watermark = watermark

    def _load_changed(self) -> None:
        if self._watermark is None:
            self._load_all()
            return
        query = self.client.collection(AVAILABILITY).where(
            filter=firestore.FieldFilter(CHANGED_AT, ">", self._watermark - self.overlap)
        )
        changed_now = list(query.stream(**RPC))
        if not changed_now:
            return
        # Replaced whole, never mutated: a reader holding the old dict sees a consistent one.
        indexes = dict(self.indexes)
        for snapshot in changed_now:
            indexes[snapshot.id] = FreeSeatIndex.build(snapshot.id, read_only_data(snapshot))
        self.reads += len(changed_now)
        self.indexes = indexes
        self._watermark = changed_now[0].read_time


@dataclass
class CalendarCache:
    """The calendars of the points this instance books at, each fresh within `ttl_s`."""

    client: firestore.Client
    ttl_s: float = CALENDAR_TTL_S
    monotonic: Callable[[], float] = time.monotonic
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def invalidate(self, point_id: str) -> None:
        with self._lock:
            self._entries.pop(point_id, None)

    def calendar(self, point_id: str, fresh: bool = False) -> PointCalendar:
        now = self.monotonic()
        with self._lock:
            entry = self._entries.get(point_id)
        if entry is None or fresh or now - entry.loaded_at > self.ttl_s:
            snapshot = self.client.collection(AVAILABILITY).document(point_id).get(**RPC)
            entry = _Entry(PointCalendar.from_document(point_id, read_only_data(snapshot)), now)
            with self._lock:
                self._entries[point_id] = entry
        return entry.calendar
