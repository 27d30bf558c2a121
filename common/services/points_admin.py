"""Admins create and update vaccination points, and the search directory follows.

The point document, its empty calendar (for a new point: so that its staff can publish one),
its audit entry and the idempotency record are one commit, a unit of work
(common/services/unit_of_work.py). The directory chunks are rebuilt right after the commit
from every point (common/services/directory.py), so search sees the change within its
one-minute cache; they are a view of the points, so a rebuild that fails is logged and the
next upsert rebuilds them whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.adapters.firestore_store import AVAILABILITY, POINTS
from common.domain.calendar import is_point_id
from common.domain.errors import ForbiddenError, InvalidStateTransitionError, PointNotFoundError
from common.domain.rulebook import RuleBook
from common.services.availability import changed
from common.services.idempotency import IdempotencyScope, StoredResponse
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner

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
    def __init__(
        self,
        units: UnitOfWorkRunner,
        rule_book: RuleBook,
        rebuild_directory: Callable[[Sequence[dict[str, Any]]], None],
    ) -> None:
        self.units = units
        self.rule_book = rule_book
        # Rewrites the search directory from every point (directory.rebuild_directory).
        self.rebuild_directory = rebuild_directory

    def get(self, point_id: str) -> dict[str, Any]:
        """A point's public details (any signed-in caller): one document read."""
        if not is_point_id(point_id):
            raise PointNotFoundError()
        found = self.units.reader().get(POINTS, point_id)
        if found is None:
            raise PointNotFoundError()
        return {"point": found.data}

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
        point = {"point_id": point_id, **body.model_dump()}

        def attempt(uow: UnitOfWork) -> StoredResponse:
            found = uow.get_all([(POINTS, point_id), (AVAILABILITY, point_id)])
            existed = found[(POINTS, point_id)] is not None
            uow.set(POINTS, point_id, point)
            if found[(AVAILABILITY, point_id)] is None:
                # A create(): if the calendar appears meanwhile, the attempt runs again and
                # the point keeps that calendar.
                uow.create(AVAILABILITY, point_id, changed({"point_id": point_id, "days": {}}))
            uow.audit(actor, "point.upsert", [], now, point_id=point_id, created=not existed)
            # The point's own document is in this commit; only the directory chunks follow it.
            uow.after_commit(self._rebuild_directory)
            return uow.respond(StoredResponse(200 if existed else 201, {"point": point}))

        return self.units.run(
            attempt,
            idem=idem,
            gave_up=lambda: InvalidStateTransitionError("the point keeps changing; try again"),
        )

    def _rebuild_directory(self) -> None:
        everyone = [d.data for d in self.units.reader().query(POINTS)]
        self.rebuild_directory(everyone)
