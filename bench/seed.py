"""Benchmark data, written in batches of up to 500 writes with a progress line.

Points are the demo generator's (real towns, deterministic); calendars are the directory's
regular template; patients are generated adults with an active e-referral, written the way
the demo seeds them. Slots live as map entries in one availability document per point, so a
country of 7,000 points x 9 days x 16 slots (about a million slots) is 7,000 documents.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, time, timedelta
from typing import Any

from google.cloud import firestore

from bench.progress import Progress, counter_text
from common.adapters.firestore_store import (
    AVAILABILITY,
    PATIENTS,
    POINT_DIRECTORY,
    POINTS,
    REFERRALS,
    RPC,
)
from common.domain.pesel import make_pesel, parse_pesel, pesel_key
from common.services.directory import DIRECTORY_CHUNK, directory_entry, regular_calendar
from emulator.seed.points import generate_points

BATCH = 500
MAX_BATCH_BYTES = 3_000_000  # a Commit request must stay under gRPC's 4 MiB message limit
WRITERS = 4  # commits in flight at once while seeding


class BatchWriter:
    """set() documents in commits of BATCH writes, reporting progress."""

    def __init__(self, client: firestore.Client, progress: Progress, label: str, total: int):
        self.client = client
        self.progress = progress
        self.label = label
        self.total = total
        self.done = 0
        self._batch = client.batch()
        self._pending = 0
        self._bytes = 0
        self._pool = ThreadPoolExecutor(max_workers=WRITERS)
        self._inflight: list[Future[Any]] = []
        self._lock = threading.Lock()

    def set(
        self, collection: str, document_id: str, data: dict[str, Any], size: int = 1_000
    ) -> None:
        """`size`: an upper estimate of the document's encoded bytes."""
        if self._pending and self._bytes + size > MAX_BATCH_BYTES:
            self.flush()
        self._batch.set(self.client.collection(collection).document(document_id), data)
        self._pending += 1
        self._bytes += size
        if self._pending >= BATCH:
            self.flush()

    def flush(self, wait: bool = False) -> None:
        if self._pending:
            batch, size = self._batch, self._pending
            self._inflight.append(self._pool.submit(self._commit, batch, size))
            self._batch = self.client.batch()
            self._pending = 0
            self._bytes = 0
        while self._inflight and (wait or len(self._inflight) >= 2 * WRITERS):
            self._inflight.pop(0).result()
        if wait:
            self._pool.shutdown()

    def _commit(self, batch: Any, size: int) -> None:
        batch.commit(**RPC)
        with self._lock:
            self.done += size
        self.progress.update(counter_text(f"seeding {self.label}", self.done, self.total))


def bench_points(count: int, products: Sequence[str] | None = None) -> list[dict[str, Any]]:
    points = [p.to_dict() for p in generate_points(count, seed=2021)]
    if products is not None:
        for point in points:
            point["products"] = list(products)
    return points


def seed_points(
    client: firestore.Client,
    points: Sequence[dict[str, Any]],
    first_day: date,
    days: int,
    progress: Progress,
    *,
    slots_per_day: int = 16,
    capacity: int = 3,
    label: str = "points",
    directory: bool = True,
) -> list[dict[str, Any]]:
    """Point documents, directory chunks and one availability document per point. With
    `directory=False` the chunks are left alone (`seed_directory` writes them for points
    seeded in several calls: each call's chunks would replace the others')."""
    chunks = -(-len(points) // DIRECTORY_CHUNK) if directory else 0
    writer = BatchWriter(client, progress, label, 2 * len(points) + chunks)
    calendars = []
    for point in points:
        writer.set(POINTS, point["point_id"], point)
        template = _template(tuple(point["products"]), first_day, days, slots_per_day, capacity)
        calendar = {"point_id": point["point_id"], "days": template}
        calendars.append(calendar)
        writer.set(AVAILABILITY, point["point_id"], calendar, size=_encoded_size(template))
    if directory:
        _directory_chunks(writer, points)
    writer.flush(wait=True)
    progress.done(counter_text(f"seeded {label}", writer.done, writer.total))
    return calendars


def _directory_chunks(writer: BatchWriter, points: Sequence[dict[str, Any]]) -> None:
    ordered = sorted(points, key=lambda p: p["point_id"])
    for number, start in enumerate(range(0, len(ordered), DIRECTORY_CHUNK), start=1):
        entries = [directory_entry(p) for p in ordered[start : start + DIRECTORY_CHUNK]]
        writer.set(
            POINT_DIRECTORY, f"chunk-{number:03d}", {"entries": entries}, size=400 * len(entries)
        )


def seed_directory(
    client: firestore.Client, points: Sequence[dict[str, Any]], progress: Progress
) -> None:
    """The directory chunks of all `points` (search's list of the country)."""
    writer = BatchWriter(client, progress, "directory", -(-len(points) // DIRECTORY_CHUNK))
    _directory_chunks(writer, points)
    writer.flush(wait=True)


@functools.lru_cache(maxsize=256)
def _template(
    products: tuple[str, ...], first_day: date, days: int, slots_per_day: int, capacity: int
) -> dict[str, Any]:
    """The `days` map of the directory's regular calendar: it does not name the point, so
    every point with the same products shares it (a million slots are built in a blink)."""
    return regular_calendar(
        "pt-00000",
        products,
        first_day,
        days,
        opens=time(8, 0),
        slots_per_day=slots_per_day,
        capacity=capacity,
        weekends=True,
    )["days"]


def _encoded_size(template: dict[str, Any]) -> int:
    """Twice the JSON size: a safe upper bound of the protobuf encoding of these maps."""
    return 2 * len(json.dumps(template)) + 200


def slot_ids(calendar: dict[str, Any], product: str | None = None) -> list[str]:
    """Slot ids of a calendar document: {point}_{YYYYMMDD}_{HHMM}_{product}."""
    point_id = calendar["point_id"]
    return sorted(
        f"{point_id}_{day[1:]}_{key}"
        for day, slots in calendar["days"].items()
        for key in slots
        if product is None or key.split("_", 1)[1] == product
    )


def patient_pesels(count: int, offset: int = 0) -> list[str]:
    """Distinct adult PESELs (born 1935-2004, eligible for every adult product)."""
    pesels = []
    for index in range(offset, offset + count):
        born = date(1935 + index % 70, 1 + index % 12, 1 + index % 28)
        pesels.append(make_pesel(born, "F" if index % 2 else "M", index % 5000))
    return pesels


def seed_patients(
    client: firestore.Client,
    pesels: Sequence[str],
    secret: bytes,
    today: date,
    progress: Progress,
) -> None:
    writer = BatchWriter(client, progress, "patients", 2 * len(pesels))
    for index, raw in enumerate(pesels):
        pesel = parse_pesel(raw, today)
        key = pesel_key(pesel, secret)
        writer.set(
            PATIENTS,
            key,
            {"patient_key": key, "pesel": pesel.value, "birth_date": pesel.birth_date.isoformat()},
        )
        referral_id = f"ref-bench-{key[:12]}-{index}"
        writer.set(
            REFERRALS,
            referral_id,
            {
                "patient_key": key,
                "referral": {
                    "referral_id": referral_id,
                    "kind": "primary",
                    "valid_from": (today - timedelta(days=10)).isoformat(),
                    "valid_to": (today + timedelta(days=120)).isoformat(),
                    "status": "active",
                    "booster_number": 0,
                },
            },
        )
    writer.flush(wait=True)
    progress.done(counter_text("seeded patients", writer.done, writer.total))
