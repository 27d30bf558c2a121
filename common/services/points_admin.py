"""Admins create and update vaccination points, and the search directory follows.

The point document, its audit entry and the idempotency record are one commit; the
directory chunks are rebuilt right after it from every point (common/services/directory.py),
so search sees the change within its one-minute cache. A point created here gets an empty
calendar, so that its staff can publish one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from google.api_core import exceptions as gexc
from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.adapters.firestore_store import AVAILABILITY, POINTS, RPC
from common.domain.calendar import is_point_id
from common.domain.errors import ForbiddenError, PointNotFoundError
from common.domain.rulebook import RuleBook
from common.services.actions import audit_action
from common.services.availability import changed
from common.services.directory import rebuild_directory
from common.services.idempotency import IdempotencyScope, StoredResponse

# Poland's bounding box, a little generous at the edges.
LAT_RANGE = (49.0, 54.9)
LON_RANGE = (14.1, 24.2)


class PointRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(min_length=3, max_length=120)
    kind: Literal["clinic", "hospital", "pharmacy", "mass_center", "mobile"] = "clinic"
    street: str = Field(min_length=1, max_length=120)
    postcode: str = Field(pattern=r"^\d{2}-\d{3}$")
    place: str = Field(min_length=1, max_length=80)
    county: str = Field(default="", max_length=80)
    voivodeship: str = Field(default="", max_length=40)
    lat: float = Field(ge=LAT_RANGE[0], le=LAT_RANGE[1])
    lon: float = Field(ge=LON_RANGE[0], le=LON_RANGE[1])
    products: list[str] = Field(min_length=1, max_length=10)
    accessible: bool = False
    phone: str = Field(default="", max_length=30)

    @field_validator("products")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("products are listed once each")
        return value


class PointsAdminService:
    def __init__(self, client: firestore.Client, rule_book: RuleBook) -> None:
        self.db = client
        self.rule_book = rule_book

    def get(self, point_id: str) -> dict[str, Any]:
        """A point's public details (any signed-in caller): one document read."""
        if not is_point_id(point_id):
            raise PointNotFoundError()
        snapshot = self.db.collection(POINTS).document(point_id).get(**RPC)
        if not snapshot.exists:
            raise PointNotFoundError()
        return {"point": snapshot.to_dict()}

    def upsert(
        self,
        actor: Any,
        point_id: str,
        body: PointRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        if actor.role != "admin":
            raise ForbiddenError("only an administrator manages vaccination points")
        if not is_point_id(point_id):
            raise PointNotFoundError("a point id is 1-40 of a-z, 0-9 and '-'")
        catalogue = self.rule_book.rules_at(now).catalogue
        for product in body.products:
            catalogue.get(product)
        ref = self.db.collection(POINTS).document(point_id)
        existed = ref.get(**RPC).exists
        point = {"point_id": point_id, **body.model_dump()}
        response = StoredResponse(200 if existed else 201, {"point": point})
        batch = self.db.batch()
        batch.set(ref, point)
        audit_action(
            batch, self.db, actor, "point.upsert", [], now, point_id=point_id, created=not existed
        )
        if idem is not None:
            idem.complete(batch, response)
        batch.commit(**RPC)
        try:
            self.db.collection(AVAILABILITY).document(point_id).create(
                changed({"point_id": point_id, "days": {}}), **RPC
            )
        except gexc.Conflict:
            pass  # the point keeps its calendar
        # The point's own document was written above; only the directory chunks follow it.
        everyone = [s.to_dict() for s in self.db.collection(POINTS).stream(**RPC)]
        rebuild_directory(self.db, everyone)
        return response
