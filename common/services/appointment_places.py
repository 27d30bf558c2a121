"""Where each appointment is: the point's name, address and map position, added to every
appointment (and vaccination) the API returns.

A patient told "pt-00006" cannot find the way, and an agent cannot read it out on the phone:
the apps show the point's name and address, link to a map and make calendar entries from
what is added here. It is added when the answer leaves the function (the entry point calls
`add_places` on the body), so a replayed answer of an Idempotency-Key gets it too and the
stored answers stay as the services made them.

Points change a few times a day: an instance keeps what it read for a minute (`ttl_s`), so a
warm instance reads nothing, and a cold one reads the few points its answer names, in one
batched read through the unit of work's reader.

`confirmation` renders the SMS a booking or a move sends to the patient, with the same pure
functions (common/domain/sms_texts.py) and the same point document the notifier uses, so a
confirmation page shows the message the patient is about to get.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from common.adapters.firestore_store import POINTS
from common.domain import sms_texts
from common.domain.calendar import is_point_id
from common.domain.rulebook import RuleBook
from common.services.unit_of_work import UnitOfWorkRunner

PLACE_FIELDS = (
    "point_id", "name", "kind", "street", "postcode", "place", "lat", "lon", "accessible", "phone",
)  # fmt: skip
PLACES_TTL_S = 60.0
_MAX_CACHED = 20_000


def place_of(point: dict[str, Any]) -> dict[str, Any]:
    """What an appointment shows of its point (no product list, no internal fields)."""
    return {k: point[k] for k in PLACE_FIELDS if k in point}


class AppointmentPlaces:
    def __init__(
        self,
        units: UnitOfWorkRunner,
        rule_book: RuleBook,
        ttl_s: float = PLACES_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.units = units
        self.rule_book = rule_book
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()
        self.reads = 0  # documents read (tests measure the cache with it)

    # -- the points ----------------------------------------------------------------------
    def points(self, point_ids: Iterable[str | None]) -> dict[str, dict[str, Any] | None]:
        """The point documents (None for an unknown point), from the cache or one read."""
        wanted = sorted({p for p in point_ids if p and is_point_id(p)})
        tick = self.clock()
        found: dict[str, dict[str, Any] | None] = {}
        missing = []
        with self._lock:
            for point_id in wanted:
                cached = self._cache.get(point_id)
                if cached is not None and tick - cached[0] < self.ttl_s:
                    found[point_id] = cached[1]
                else:
                    missing.append(point_id)
        if missing:
            read = self.units.reader().get_all([(POINTS, p) for p in missing])
            self.reads += len(missing)
            with self._lock:
                if len(self._cache) > _MAX_CACHED:
                    self._cache.clear()
                for point_id in missing:
                    document = read.get((POINTS, point_id))
                    data = document.data if document is not None else None
                    self._cache[point_id] = (tick, data)
                    found[point_id] = data
        return found

    # -- the answers -----------------------------------------------------------------------
    def add_places(self, body: dict[str, Any]) -> dict[str, Any]:
        """A copy of an API answer whose appointments and vaccinations carry `point`: the
        point's name, address, coordinates, accessibility and phone (absent if the point is
        gone). Understands the shapes the API returns: `appointments`, `appointment`,
        `vaccinations` and `dependents[].appointments`."""
        if not isinstance(body, dict):
            return body
        records = _records(body)
        points = self.points(r.get("point_id") for r in records)
        out = dict(body)
        for key in ("appointments", "vaccinations"):
            if isinstance(body.get(key), list):
                out[key] = [_with_place(r, points) for r in body[key]]
        if isinstance(body.get("appointment"), dict):
            out["appointment"] = _with_place(body["appointment"], points)
        if isinstance(body.get("dependents"), list):
            out["dependents"] = [
                d | {"appointments": [_with_place(a, points) for a in d.get("appointments", [])]}
                if isinstance(d, dict)
                else d
                for d in body["dependents"]
            ]
        return out

    def confirmation(
        self, appointments: list[dict[str, Any]], now: datetime, kind: str
    ) -> dict[str, Any]:
        """The SMS the patient gets for a booking (`kind` "booked": one message naming both
        doses) or a move ("rescheduled": one per moved dose), as the notifier renders it."""
        points = self.points(a.get("point_id") for a in appointments)
        catalogue = self.rule_book.rules_at(now).catalogue
        texts: list[str] = []
        booked = [a for a in appointments if a.get("status") == "booked"]
        for a in booked:
            product = (
                catalogue.get(a["product"]).name if a["product"] in catalogue else a["product"]
            )
            starts_at = datetime.fromisoformat(a["starts_at"])
            point = points.get(a["point_id"])
            if kind == "rescheduled":
                texts.append(sms_texts.rescheduled(product, a["dose_number"], starts_at, point))
            elif a.get("dose_number") == 1 or not a.get("linked_appointment_id"):
                second = next(
                    (
                        datetime.fromisoformat(b["starts_at"])
                        for b in booked
                        if b["appointment_id"] == a.get("linked_appointment_id")
                    ),
                    None,
                )
                texts.append(sms_texts.booked(product, a["dose_number"], starts_at, point, second))
        return {"channel": "sms", "messages": texts}


def _records(body: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for key in ("appointments", "vaccinations"):
        found += [r for r in body.get(key) or [] if isinstance(r, dict)]
    if isinstance(body.get("appointment"), dict):
        found.append(body["appointment"])
    for dependent in body.get("dependents") or []:
        if isinstance(dependent, dict):
            found += [a for a in dependent.get("appointments") or [] if isinstance(a, dict)]
    return found


def _with_place(record: Any, points: dict[str, dict[str, Any] | None]) -> Any:
    if not isinstance(record, dict):
        return record
    point = points.get(record.get("point_id") or "")
    return record | {"point": place_of(point)} if point else dict(record)
