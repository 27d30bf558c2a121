"""Client of SDS, the vaccine distribution system: deliveries in, booked demand out.

Configured by ``SDS_BASE_URL`` and ``SDS_TOKEN``. Errors follow
``common.adapters.http_errors``. No retries in here: the Cloud Task or Pub/Sub redelivery
that runs the use case retries it; ``put_demand`` is a full replace (PUT), so repeating it is
harmless, and ``deliveries_since`` only reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from common.adapters.http_errors import (
    PeerClient,
    parse_json,
    send,
)

PEER = "SDS"


class SdsDelivery(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    delivery_id: str = Field(min_length=1)
    point_id: str = Field(min_length=1)
    product: str = Field(min_length=1)
    doses: int = Field(gt=0)
    delivery_date: date
    sequence: int = Field(ge=1)
    # A cancelled delivery comes again with a newer sequence: its doses no longer count.
    status: Literal["delivered", "cancelled"] = "delivered"


class SdsDemand(BaseModel):
    """Booked doses of one point in one ISO week (``2021-W14``), per product."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    point_id: str
    iso_week: str
    doses: dict[str, int]
    updated_at: datetime


class _DeliveryPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    deliveries: list[SdsDelivery]
    next_cursor: str
    has_more: bool = False


class SdsClient(PeerClient):
    API_PREFIX = "/sds/v1"
    URL_ENV = "SDS_BASE_URL"
    TOKEN_ENV = "SDS_TOKEN"  # noqa: S105 (the variable's name, not a secret)

    def deliveries_since(
        self, cursor: str | None, limit: int = 100
    ) -> tuple[list[SdsDelivery], str]:
        """Deliveries recorded after ``cursor`` (None or "" = from the start), oldest first,
        and the cursor to store once the page is processed. Empty list = caught up."""
        response = send(
            self._session,
            PEER,
            "GET",
            f"{self._base}/deliveries",
            params={"since": cursor or "", "limit": str(limit)},
            timeout=self._timeout,
        )
        page = parse_json(PEER, response, _DeliveryPage)
        return page.deliveries, page.next_cursor

    def put_demand(self, point_id: str, iso_week: str, doses: Mapping[str, int]) -> SdsDemand:
        """Replace the booked demand of ``point_id`` in ``iso_week`` (idempotent upsert)."""
        response = send(
            self._session,
            PEER,
            "PUT",
            self._demand_url(point_id, iso_week),
            json_body=dict(doses),
            timeout=self._timeout,
        )
        return parse_json(PEER, response, SdsDemand)

    def get_demand(self, point_id: str, iso_week: str) -> SdsDemand:
        response = send(
            self._session, PEER, "GET", self._demand_url(point_id, iso_week), timeout=self._timeout
        )
        return parse_json(PEER, response, SdsDemand)

    def _demand_url(self, point_id: str, iso_week: str) -> str:
        return f"{self._base}/demand/{quote(point_id, safe='')}/{quote(iso_week, safe='')}"
