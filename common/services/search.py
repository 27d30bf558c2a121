"""Slot search: nearest points first, with their earliest free slots.

Cost is what matters at 950 searches a second, so the reads per search do not depend on how
many points or slots the country has:
- the point directory (id, place, coordinates, products) is a handful of chunk documents,
  cached in the instance for a minute: points change a few times a day, and a point that is
  a minute stale only changes the order of results, never a booking;
- for the points it shows, search reads each point's one availability document (every slot
  of the horizon with its free seats), in one BatchGetDocuments per page.
So a page of 5 costs 5 reads when the nearest points have free seats, and at most
MAX_SCAN_FACTOR x limit reads when they do not; the cursor then carries on from there.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.adapters.firestore_store import AVAILABILITY, POINT_DIRECTORY, RPC, read_only_data
from common.domain.calendar import (
    WARSAW,
    PointCalendar,
    SlotAvailability,
    day_key,
    days_between,
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

DIRECTORY_TTL_S = 60.0
MAX_SCAN_FACTOR = 4
MAX_RANGE_DAYS = 60
# Nobody books a vaccination years ahead; the cap also keeps date arithmetic far from year 9999.
MAX_DAYS_AHEAD = 366
SLOTS_PER_POINT = 3


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


class PointDirectory:
    """The instance's cached copy of point_directory/*, refreshed at most once a minute."""

    def __init__(self, client: firestore.Client, ttl_s: float = DIRECTORY_TTL_S) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._entries: list[DirectoryEntry] = []
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        self.loads = 0

    def entries(self) -> list[DirectoryEntry]:
        with self._lock:
            if time.monotonic() - self._loaded_at > self._ttl_s:
                self._entries = self._load()
                self._loaded_at = time.monotonic()
                self.loads += 1
            return self._entries

    def invalidate(self) -> None:
        with self._lock:
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
    def __init__(self, client: firestore.Client, rule_book: RuleBook) -> None:
        self.db = client
        self.rule_book = rule_book  # which products exist: the rules in force at `now`
        self.directory = PointDirectory(client)

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

    def search(self, query: SearchQuery, now: datetime) -> dict[str, Any]:
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
        # A field mask: only the searched days of each calendar travel and get decoded.
        day_fields = [f"days.{day_key(d)}" for d in days_between(date_from, date_to)]
        while position < len(candidates) and len(items) < query.limit and scanned < max_scan:
            batch = candidates[position : position + query.limit]
            refs = [self.db.collection(AVAILABILITY).document(e.point_id) for _, e in batch]
            snapshots = self.db.get_all(refs, field_paths=day_fields, **RPC)
            documents = {s.id: read_only_data(s) for s in snapshots}
            for distance, entry in batch:
                position += 1
                scanned += 1
                total, earliest = PointCalendar.free_in_document(
                    entry.point_id,
                    documents.get(entry.point_id),
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
        return {
            "items": items,
            "next_cursor": _encode_cursor(position) if more else None,
            "center": {"lat": center.lat, "lon": center.lon},
            "date_from": date_from.isoformat(),
            "date_to": date_to.isoformat(),
            "documents_read": scanned,
        }

    def _nearest(self, center: GeoPoint, query: SearchQuery) -> list[tuple[float, DirectoryEntry]]:
        # A bounding box first: two float comparisons rule out most of the country before
        # any trigonometry (7,000 haversines a search were a tenth of its CPU time).
        min_lat, min_lon, max_lat, max_lon = bounding_box(center, query.radius_km)
        found = []
        for entry in self.directory.entries():
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
            "point": {k: v for k, v in entry.summary.items() if k != "products"}
            | {"products": sorted(entry.products)},
            "distance_km": round(distance, 2),
            "free_seats": free_seats,
            "earliest_slots": [s.to_api() for s in earliest],
        }

    def point_slots(self, point_id: str, query: PointSlotsQuery, now: datetime) -> dict[str, Any]:
        """One point's free slots: one document read."""
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
        return {"point_id": point_id, "slots": [s.to_api() for s in free]}
