"""Slot search: nearest points first, with their earliest free slots, answered from memory.

Cost is what matters at 950 searches a second, so a warm instance reads nothing per search:
- the point directory (id, place, coordinates, products) is a handful of chunk documents,
  cached in the instance for a minute: points change a few times a day, and a point that is
  a minute stale only changes the order of results, never a booking;
- every point's calendar (every slot of the horizon with its free seats) is held in memory
  by `AvailabilityView` (common/services/availability.py), refreshed at most once a second
  with the documents that changed since; its free counts lag bookings by a few seconds,
  which only orders and filters offers: a booking always decides on the seats themselves.
A page looks at up to MAX_SCAN_FACTOR x limit points (`points_scanned`) to find `limit` with
free seats; the cursor then carries on from there.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.adapters.firestore_store import AVAILABILITY, POINT_DIRECTORY, RPC
from common.domain.calendar import (
    WARSAW,
    PointCalendar,
    SlotAvailability,
    SlotRef,
    is_point_id,
)
from common.domain.errors import NotFoundError, ValidationFailedError
from common.domain.rulebook import RuleBook
from common.geo import (
    GeoPoint,
    bounding_box,
    haversine_km,
    load_postcode_directory,
    normalize_postcode,
)
from common.services.availability import AvailabilityView

DIRECTORY_TTL_S = 60.0
MAX_SCAN_FACTOR = 4
MAX_RANGE_DAYS = 60
# Nobody books a vaccination years ahead; the cap also keeps date arithmetic far from year 9999.
MAX_DAYS_AHEAD = 366
SLOTS_PER_POINT = 3
GRID_DEG = 0.25
NEAREST_CACHE = 20_000  # places x filters remembered (a few MB)
ALTERNATIVES = 3
ALTERNATIVES_TTL_S = 1.0


class SearchQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float | None = Field(default=None, ge=49.0, le=55.0)
    lon: float | None = Field(default=None, ge=14.0, le=24.5)
    postcode: str | None = Field(default=None, max_length=10)
    radius_km: float = Field(default=50, gt=0, le=300)
    product: str | None = Field(default=None, max_length=40)
    date_from: date | None = None
    date_to: date | None = None
    accessible: bool | None = None
    limit: int = Field(default=5, ge=1, le=20)
    cursor: str | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _where(self) -> SearchQuery:
        has_coordinates = self.lat is not None and self.lon is not None
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon")
        if has_coordinates == (self.postcode is not None):
            raise ValueError("give either lat and lon, or a postcode")
        if self.date_from and self.date_to and self.date_to < self.date_from:
            raise ValueError("date_to is before date_from")
        return self


@dataclass(frozen=True)
class DirectoryEntry:
    point_id: str
    location: GeoPoint
    products: frozenset[str]
    accessible: bool
    summary: dict[str, Any]
    # What the API shows of the point, built once per directory load, not once per search.
    api_point: dict[str, Any] = field(default_factory=dict)


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded))["o"]
    except (ValueError, KeyError, TypeError):
        raise ValidationFailedError("the cursor is not valid") from None
    # Only what _encode_cursor makes: a plain, non-negative int (not a float, bool or Infinity).
    if type(offset) is not int or not 0 <= offset <= 1_000_000:
        raise ValidationFailedError("the cursor is not valid")
    return offset


def _date_range(date_from: date | None, date_to: date | None, now: datetime) -> tuple[date, date]:
    """The searched days: from today (or later) for 30 days unless given; bounded both ways."""
    today = now.astimezone(WARSAW).date()
    last_allowed = today + timedelta(days=MAX_DAYS_AHEAD)
    for given in (date_from, date_to):
        if given is not None and given > last_allowed:
            raise ValidationFailedError(f"dates may be at most {MAX_DAYS_AHEAD} days ahead")
    start = max(date_from or today, today)
    end = date_to or start + timedelta(days=30)
    if end < start:
        raise ValidationFailedError("date_to is before today")
    if (end - start).days > MAX_RANGE_DAYS:
        raise ValidationFailedError(f"the date range may span at most {MAX_RANGE_DAYS} days")
    return start, end


def _cell(lat: float, lon: float) -> tuple[int, int]:
    return math.floor(lat / GRID_DEG), math.floor(lon / GRID_DEG)


class PointDirectory:
    """The instance's cached copy of point_directory/*, refreshed at most once a minute."""

    def __init__(self, client: firestore.Client, ttl_s: float = DIRECTORY_TTL_S) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._entries: list[DirectoryEntry] = []
        self._by_id: dict[str, DirectoryEntry] = {}
        # Points by grid cell of GRID_DEG degrees: a search looks at the cells its radius
        # covers (a few hundred points), not at the whole country.
        self._grid: dict[tuple[int, int], list[DirectoryEntry]] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        self.loads = 0

    def entries(self) -> list[DirectoryEntry]:
        """Stale while revalidating: once loaded, a search never waits for a reload another
        thread is doing (at a rush, a blocking reload stalled every search for its length)."""
        if time.monotonic() - self._loaded_at <= self._ttl_s:
            return self._entries
        loaded = self.loads > 0
        if not self._lock.acquire(blocking=not loaded):
            return self._entries  # another thread is reloading: serve the copy we have
        try:
            if time.monotonic() - self._loaded_at > self._ttl_s:
                entries = self._load()
                grid: dict[tuple[int, int], list[DirectoryEntry]] = {}
                for e in entries:
                    grid.setdefault(_cell(e.location.lat, e.location.lon), []).append(e)
                # Index and grid before the list: a reader that sees the new list finds its
                # points in them (each is replaced whole, never mutated).
                self._by_id = {e.point_id: e for e in entries}
                self._grid = grid
                self._entries = entries
                self._loaded_at = time.monotonic()
                self.loads += 1
            return self._entries
        finally:
            self._lock.release()

    def entry(self, point_id: str) -> DirectoryEntry | None:
        self.entries()
        return self._by_id.get(point_id)

    def within(
        self, min_lat: float, min_lon: float, max_lat: float, max_lon: float
    ) -> list[DirectoryEntry]:
        """The points of the grid cells that overlap the box (a superset of those in it)."""
        self.entries()
        grid = self._grid
        (lat0, lon0), (lat1, lon1) = _cell(min_lat, min_lon), _cell(max_lat, max_lon)
        found: list[DirectoryEntry] = []
        for lat_cell in range(lat0, lat1 + 1):
            for lon_cell in range(lon0, lon1 + 1):
                found.extend(grid.get((lat_cell, lon_cell), ()))
        return found

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    def _load(self) -> list[DirectoryEntry]:
        entries = []
        for chunk in self._client.collection(POINT_DIRECTORY).stream(**RPC):
            for raw in chunk.to_dict().get("entries", []):
                entries.append(
                    DirectoryEntry(
                        point_id=raw["point_id"],
                        location=GeoPoint(raw["lat"], raw["lon"]),
                        products=frozenset(raw.get("products", [])),
                        accessible=bool(raw.get("accessible")),
                        summary=raw,
                        api_point={k: v for k, v in raw.items() if k != "products"}
                        | {"products": sorted(raw.get("products", []))},
                    )
                )
        return entries


class PointSlotsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    product: str | None = Field(default=None, max_length=40)
    date_from: date | None = None
    date_to: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> PointSlotsQuery:
        if self.date_from and self.date_to and self.date_to < self.date_from:
            raise ValueError("date_to is before date_from")
        return self


class SearchService:
    def __init__(
        self,
        client: firestore.Client,
        rule_book: RuleBook,
        view: AvailabilityView | None = None,
        *,
        reservations: Any = None,
        expected_wait: Any = None,
    ) -> None:
        self.db = client
        # Reserved capacity (common/services/reservations.py): at a point with reservations in
        # force, a slot shows only the seats this person could book (a bound; booking decides).
        self.reservations = reservations
        # With nothing near, the expected wait for a first dose (common/services/expected_wait.py).
        self.expected_wait = expected_wait
        self.rule_book = rule_book  # which products exist: the rules in force at `now`
        self.directory = PointDirectory(client)
        # Every point's calendar in memory, refreshed with what changed (availability.py).
        self.view = view or AvailabilityView(client)
        self._alternatives: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._nearest_cache: OrderedDict[tuple[Any, ...], list[tuple[float, DirectoryEntry]]]
        self._nearest_cache = OrderedDict()
        self._nearest_lock = threading.Lock()

    def _center(self, query: SearchQuery) -> GeoPoint:
        if query.lat is not None and query.lon is not None:
            return GeoPoint(query.lat, query.lon)
        postcode = normalize_postcode(query.postcode or "")
        info = load_postcode_directory().lookup(postcode) if postcode else None
        if info is None:
            raise ValidationFailedError(
                "unknown postcode; use the NN-NNN form", details={"field": "postcode"}
            )
        return info.point

    def search(
        self, query: SearchQuery, now: datetime, birth_date: date | None = None
    ) -> dict[str, Any]:
        """`birth_date`: the patient's own (their group's reserved seats shown); None for an
        unknown person (seats kept for any group are not shown)."""
        if query.product is not None:
            # An unknown product: a clear 400, not an empty page.
            self.rule_book.rules_at(now).catalogue.get(query.product)
        date_from, date_to = _date_range(query.date_from, query.date_to, now)
        center = self._center(query)
        candidates = self._nearest(center, query)
        offset = _decode_cursor(query.cursor)
        items: list[dict[str, Any]] = []
        scanned = 0
        max_scan = query.limit * MAX_SCAN_FACTOR
        position = offset
        self.view.refresh_if_due()
        indexes = self.view.indexes  # one consistent snapshot for this page
        while position < len(candidates) and len(items) < query.limit and scanned < max_scan:
            batch = candidates[position : position + query.limit]
            for distance, entry in batch:
                position += 1
                scanned += 1
                index = indexes.get(entry.point_id)
                if index is None:
                    continue
                reserved = self._reserved(index, birth_date, now)
                total, earliest = (reserved or index.free_in)(
                    not_before=now,
                    date_from=date_from,
                    date_to=date_to,
                    product=query.product,
                    earliest=SLOTS_PER_POINT,
                )
                if total:
                    items.append(self._item(entry, distance, total, earliest))
                if len(items) >= query.limit:
                    break
        more = position < len(candidates)
        found: dict[str, Any] = {}
        if not items and self.expected_wait is not None:
            found["expected_wait"] = self.expected_wait.for_search(query, center, birth_date, now)
        return found | {
            "items": items,
            "next_cursor": _encode_cursor(position) if more else None,
            "center": {"lat": center.lat, "lon": center.lon},
            "date_from": date_from.isoformat(),
            "date_to": date_to.isoformat(),
            "points_scanned": scanned,
        }

    def _nearest(self, center: GeoPoint, query: SearchQuery) -> list[tuple[float, DirectoryEntry]]:
        """The points in the radius, nearest first: kept per place and filters until the
        directory reloads (a minute), since the same postcodes are searched over and over."""
        self.directory.entries()  # reloads the directory (and so empties this cache) if due
        key = (
            self.directory.loads,
            round(center.lat, 5),
            round(center.lon, 5),
            query.radius_km,
            query.product,
            bool(query.accessible),
        )
        with self._nearest_lock:
            found = self._nearest_cache.get(key)
            if found is not None:
                self._nearest_cache.move_to_end(key)
                return found
        found = self._compute_nearest(center, query)
        with self._nearest_lock:
            self._nearest_cache[key] = found
            if len(self._nearest_cache) > NEAREST_CACHE:
                self._nearest_cache.popitem(last=False)
        return found

    def _compute_nearest(
        self, center: GeoPoint, query: SearchQuery
    ) -> list[tuple[float, DirectoryEntry]]:
        # A bounding box first: two float comparisons rule out most of the country before
        # any trigonometry (7,000 haversines a search were a tenth of its CPU time).
        min_lat, min_lon, max_lat, max_lon = bounding_box(center, query.radius_km)
        found = []
        for entry in self.directory.within(min_lat, min_lon, max_lat, max_lon):
            location = entry.location
            if not (min_lat <= location.lat <= max_lat and min_lon <= location.lon <= max_lon):
                continue
            if query.product is not None and query.product not in entry.products:
                continue
            if query.accessible and not entry.accessible:
                continue
            distance = haversine_km(center, location)
            if distance <= query.radius_km:
                found.append((distance, entry))
        found.sort(key=lambda pair: (pair[0], pair[1].point_id))
        return found

    @staticmethod
    def _item(
        entry: DirectoryEntry, distance: float, free_seats: int, earliest: list[SlotAvailability]
    ) -> dict[str, Any]:
        return {
            "point": entry.api_point,
            "distance_km": round(distance, 2),
            "free_seats": free_seats,
            "earliest_slots": [s.to_api() for s in earliest],
        }

    def alternatives(self, ref: SlotRef, now: datetime) -> list[dict[str, Any]]:
        """The nearest free slots of the same product from the full slot's day on, for the
        booker who found it full: from memory, and computed once a second per slot however
        many are refused (a crowd is refused many times over)."""
        tick = time.monotonic()
        cached = self._alternatives.get(ref.slot_id)
        if cached is not None and tick - cached[0] < ALTERNATIVES_TTL_S:
            return cached[1]
        entry = self.directory.entry(ref.point_id)
        found: list[dict[str, Any]] = []
        if entry is not None:
            query = SearchQuery(
                lat=entry.location.lat,
                lon=entry.location.lon,
                product=ref.product,
                date_from=max(ref.day, now.astimezone(WARSAW).date()),
                limit=ALTERNATIVES,
            )
            for item in self.search(query, now)["items"]:
                for slot in item["earliest_slots"]:
                    if slot["slot_id"] != ref.slot_id:
                        found.append(
                            {
                                "slot_id": slot["slot_id"],
                                "starts_at": slot["starts_at"],
                                "point_id": item["point"]["point_id"],
                                "point_name": item["point"].get("name"),
                                "distance_km": item["distance_km"],
                            }
                        )
                        break
        found = found[:ALTERNATIVES]
        if len(self._alternatives) > 10_000:
            self._alternatives.clear()
        self._alternatives[ref.slot_id] = (tick, found)
        return found

    def _reserved(self, index: Any, birth_date: date | None, now: datetime) -> Any:
        """FreeSeatIndex.free_in's stand-in at a point with reservations in force (the seats
        this person may book); None elsewhere (the index answers as it is)."""
        if self.reservations is None or not self.reservations.at_point(index.point_id, now):
            return None
        from functools import partial

        from common.services.reservations import reserved_free_in

        book = self.reservations
        return partial(
            reserved_free_in,
            index,
            lambda ref, cap: book.rule(ref, cap, birth_date, now),
        )

    def point_slots(
        self,
        point_id: str,
        query: PointSlotsQuery,
        now: datetime,
        birth_date: date | None = None,
    ) -> dict[str, Any]:
        """One point's free slots, read fresh: one document read."""
        if not is_point_id(point_id):
            raise NotFoundError("no such vaccination point")
        if query.product is not None:
            self.rule_book.rules_at(now).catalogue.get(query.product)
        snapshot = self.db.collection(AVAILABILITY).document(point_id).get(**RPC)
        if not snapshot.exists:
            raise NotFoundError("no such vaccination point")
        date_from, date_to = _date_range(query.date_from, query.date_to, now)
        calendar = PointCalendar.from_document(point_id, snapshot.to_dict())
        free = calendar.free_slots(
            not_before=now, date_from=date_from, date_to=date_to, product=query.product
        )
        if self.reservations is not None and self.reservations.at_point(point_id, now):
            from common.domain.reservations import outsider_free

            book = self.reservations
            bounded = (
                SlotAvailability(
                    s.ref,
                    s.capacity,
                    outsider_free(s.free, book.rule(s.ref, s.capacity, birth_date, now)),
                )
                for s in free
            )
            free = [s for s in bounded if s.free > 0]
        return {"point_id": point_id, "slots": [s.to_api() for s in free]}
