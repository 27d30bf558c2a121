"""The SDS simulator: dose deliveries out (by a change cursor), booked demand in (upsert).

State is in memory, optionally snapshotted to a JSON file. See README.md for the API.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

from flask import Flask, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, RootModel

from common import clock as common_clock
from common.domain.vaccines import VaccineCatalogue, load_catalogue
from emulator.faults import (
    ApiError,
    StateFile,
    install_simulator,
    parse_body,
    parse_cursor,
    parse_limit,
    simulation_only,
)

DEFAULT_TOKEN = "local-sds-token"  # noqa: S105 (documented local default, not a secret)
API = "/sds/v1"
DEFAULT_PAGE = 100
MAX_PAGE = 1000
_ISO_WEEK_LENGTH = 8  # "2021-W14"

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return common_clock.now()  # the one clock, shifted with the rest of the stack


class NewDelivery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Optional: SDS assigns one when the simulation does not care; given, it dedupes.
    delivery_id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$"
    )
    point_id: str = Field(min_length=1, max_length=128)
    product: str = Field(min_length=1, max_length=64)
    doses: int = Field(gt=0, le=1_000_000)
    delivery_date: date


class Demand(RootModel[dict[str, Annotated[int, Field(strict=True, ge=0, le=10_000_000)]]]):
    """``{product: doses}``, the booked doses of one point in one ISO week."""


def parse_iso_week(raw: str) -> str:
    """Accept ``YYYY-Www`` naming a week that exists (W53 only in long years)."""
    year, sep, week = raw.partition("-W")
    if len(raw) != _ISO_WEEK_LENGTH or not sep or not (year + week).isdigit():
        raise ApiError(400, "invalid_iso_week", "iso_week must look like 2021-W14.")
    try:
        date.fromisocalendar(int(year), int(week), 1)
    except ValueError:
        raise ApiError(400, "invalid_iso_week", "That ISO week does not exist.") from None
    return raw


class SdsState:
    def __init__(self, clock: Clock, catalogue: VaccineCatalogue, state_file: StateFile) -> None:
        self.clock = clock
        self.catalogue = catalogue
        self._file = state_file
        self._lock = threading.Lock()
        self.sequence = 0
        self.deliveries: dict[str, dict[str, Any]] = {}
        # Keyed "point_id|iso_week" because a JSON state file needs string keys.
        self.demand: dict[str, dict[str, Any]] = {}
        data = state_file.load()
        if data:
            self.sequence = int(data["sequence"])
            self.deliveries = dict(data["deliveries"])
            self.demand = dict(data["demand"])

    def _save(self) -> None:
        self._file.save(
            {"sequence": self.sequence, "deliveries": self.deliveries, "demand": self.demand}
        )

    def _check_product(self, product: str) -> None:
        if product not in self.catalogue:
            raise ApiError(400, "unknown_product", "Unknown vaccine product.")

    def add_delivery(self, new: NewDelivery) -> tuple[dict[str, Any], bool]:
        self._check_product(new.product)
        with self._lock:
            delivery_id = new.delivery_id or f"SDS-DEL-{self.sequence + 1:08d}"
            submitted = new.model_dump(mode="json") | {"delivery_id": delivery_id}
            known = self.deliveries.get(delivery_id)
            if known is not None:
                if {k: known[k] for k in submitted} != submitted:
                    raise ApiError(
                        409, "delivery_conflict", "This delivery_id exists with other data."
                    )
                return dict(known), False
            self.sequence += 1
            delivery = submitted | {
                "status": "delivered",
                "sequence": self.sequence,
                "created_at": self.clock().astimezone(UTC).isoformat(),
            }
            self.deliveries[delivery_id] = delivery
            self._save()
            return dict(delivery), True

    def cancel_delivery(self, delivery_id: str) -> dict[str, Any]:
        """A delivery called off (or lost): a new change with `status: cancelled`, so a
        cursor follower sees the supply go down."""
        with self._lock:
            known = self.deliveries.get(delivery_id)
            if known is None:
                raise ApiError(404, "delivery_not_found", "No such delivery.")
            if known.get("status") != "cancelled":
                self.sequence += 1
                known["status"] = "cancelled"
                known["sequence"] = self.sequence
                self._save()
            return dict(known)

    def deliveries_since(self, since: int, limit: int) -> tuple[list[dict[str, Any]], int, bool]:
        with self._lock:
            if since > self.sequence:
                raise ApiError(
                    400,
                    "cursor_ahead",
                    "The cursor is ahead of this server's history; restart from an empty cursor.",
                )
            newer = sorted(
                (d for d in self.deliveries.values() if d["sequence"] > since),
                key=lambda d: d["sequence"],
            )
        page = [dict(d) for d in newer[:limit]]
        return page, page[-1]["sequence"] if page else since, len(newer) > limit

    def put_demand(
        self, point_id: str, iso_week: str, doses: dict[str, int]
    ) -> tuple[dict[str, Any], bool]:
        for product in doses:
            self._check_product(product)
        key = f"{point_id}|{iso_week}"
        with self._lock:
            known = self.demand.get(key)
            if known is not None and known["doses"] == doses:
                # Same body again: nothing changes, not even updated_at (idempotent upsert).
                return dict(known), False
            record = {
                "point_id": point_id,
                "iso_week": iso_week,
                "doses": dict(sorted(doses.items())),
                "updated_at": self.clock().astimezone(UTC).isoformat(),
            }
            self.demand[key] = record
            self._save()
            return dict(record), known is None

    def get_demand(self, point_id: str, iso_week: str) -> dict[str, Any]:
        with self._lock:
            known = self.demand.get(f"{point_id}|{iso_week}")
        if known is None:
            raise ApiError(404, "demand_not_found", "No demand for that point and week.")
        return dict(known)


def make_app(
    *,
    token: str = DEFAULT_TOKEN,
    state_path: Path | None = None,
    seed: int = 0,
    clock: Clock = _utc_now,
    catalogue: VaccineCatalogue | None = None,
) -> Flask:
    """The SDS simulator as a WSGI app; its state is ``app.extensions["sds"]``."""
    app = Flask("sds-simulator")
    state = SdsState(clock, catalogue or load_catalogue(), StateFile(state_path))
    app.extensions["sds"] = state
    install_simulator(app, name="sds", api_prefix=f"{API}/", token=token, seed=seed)

    @app.get(f"{API}/deliveries")
    def list_deliveries() -> Response:
        since = parse_cursor(request.args.get("since"))
        limit = parse_limit(request.args.get("limit"), DEFAULT_PAGE, MAX_PAGE)
        page, next_cursor, has_more = state.deliveries_since(since, limit)
        return jsonify({"deliveries": page, "next_cursor": str(next_cursor), "has_more": has_more})

    @app.post(f"{API}/deliveries")
    @simulation_only
    def create_delivery() -> tuple[Response, int]:
        delivery, created = state.add_delivery(parse_body(NewDelivery))
        return jsonify(delivery), 201 if created else 200

    @app.post(f"{API}/deliveries/<delivery_id>:cancel")
    @simulation_only
    def cancel_delivery(delivery_id: str) -> Response:
        return jsonify(state.cancel_delivery(delivery_id))

    @app.put(f"{API}/demand/<point_id>/<iso_week>")
    def put_demand(point_id: str, iso_week: str) -> tuple[Response, int]:
        doses = parse_body(Demand).root
        record, created = state.put_demand(point_id, parse_iso_week(iso_week), doses)
        return jsonify(record), 201 if created else 200

    @app.get(f"{API}/demand/<point_id>/<iso_week>")
    def get_demand(point_id: str, iso_week: str) -> Response:
        return jsonify(state.get_demand(point_id, parse_iso_week(iso_week)))

    return app
