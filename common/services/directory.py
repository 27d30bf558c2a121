"""Publishing vaccination points: their documents, the search directory and calendars.

The directory is a few chunk documents of compact entries, so that a search instance loads
the whole country in a handful of reads (about 7,000 points fit in 4 chunks of 2,000 entries,
well under Firestore's 1 MiB document limit).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, time, timedelta
from typing import Any

from google.cloud import firestore

from common.adapters.firestore_store import AVAILABILITY, POINT_DIRECTORY, POINTS, RPC
from common.domain.calendar import SlotRef, day_key, slot_entry
from common.services.availability import changed

DIRECTORY_CHUNK = 2000
DIRECTORY_FIELDS = (
    "point_id", "name", "kind", "street", "postcode", "place", "county", "voivodeship",
    "lat", "lon", "products", "accessible", "phone",
)  # fmt: skip


def directory_entry(point: dict[str, Any]) -> dict[str, Any]:
    return {k: point[k] for k in DIRECTORY_FIELDS if k in point}


def write_points(client: firestore.Client, points: Sequence[dict[str, Any]]) -> None:
    """Write point documents and rebuild the directory chunks (admin operation, seldom)."""
    for start in range(0, len(points), 400):
        batch = client.batch()
        for point in points[start : start + 400]:
            batch.set(client.collection(POINTS).document(point["point_id"]), point)
        batch.commit(**RPC)
    rebuild_directory(client, points)


def rebuild_directory(client: firestore.Client, points: Sequence[dict[str, Any]]) -> None:
    """Rewrite the directory chunks from `points` (all of them): a few writes, not one a point."""
    ordered = sorted(points, key=lambda p: p["point_id"])
    batch = client.batch()
    chunks = 0
    for chunks, start in enumerate(range(0, len(ordered), DIRECTORY_CHUNK), start=1):
        entries = [directory_entry(p) for p in ordered[start : start + DIRECTORY_CHUNK]]
        batch.set(
            client.collection(POINT_DIRECTORY).document(f"chunk-{chunks:03d}"), {"entries": entries}
        )
    # Chunks left over from a larger directory must go, or deleted points would linger.
    for snapshot in client.collection(POINT_DIRECTORY).stream(**RPC):
        if int(snapshot.id.rsplit("-", 1)[-1]) > chunks:
            batch.delete(snapshot.reference)
    batch.commit(**RPC)


def calendar_document(
    point_id: str,
    slots: Iterable[tuple[date, time, str, int]],
) -> dict[str, Any]:
    """An availability document for (day, start, product, capacity) slots, all seats free."""
    days: dict[str, dict[str, dict[str, int]]] = {}
    for day, start, product, capacity in slots:
        ref = SlotRef(point_id, day, start, product)
        days.setdefault(day_key(day), {})[ref.slot_key] = slot_entry(capacity)
    return {"point_id": point_id, "days": days}


def regular_calendar(
    point_id: str,
    products: Sequence[str],
    first_day: date,
    days: int,
    *,
    opens: time = time(9, 0),
    slots_per_day: int = 16,
    slot_minutes: int = 15,
    capacity: int = 3,
    weekends: bool = False,
) -> dict[str, Any]:
    """A template calendar: every (week)day, slots every `slot_minutes`, products in turn."""
    entries = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        if not weekends and day.weekday() >= 5:
            continue
        for index in range(slots_per_day):
            minutes = opens.hour * 60 + opens.minute + index * slot_minutes
            start = time(minutes // 60, minutes % 60)
            product = products[(index + offset) % len(products)]
            entries.append((day, start, product, capacity))
    return calendar_document(point_id, entries)


def write_calendars(client: firestore.Client, calendars: Sequence[dict[str, Any]]) -> None:
    """Seed calendars (the demo, tests, benchmarks): batches of 100 committed a few at once,
    since one commit mostly waits on the store (7,000 points: 56 s one by one)."""

    def commit(start: int) -> None:
        batch = client.batch()
        for document in calendars[start : start + 100]:
            batch.set(
                client.collection(AVAILABILITY).document(document["point_id"]), changed(document)
            )
        batch.commit(**RPC)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(commit, range(0, len(calendars), 100)))
