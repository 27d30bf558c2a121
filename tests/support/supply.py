"""SDS as the supply tests see it: its delivery feed in memory, and a sync on the wiring's
Firestore (the impact dry run's and the re-plan's tests)."""

from __future__ import annotations

from common import clock, wiring
from common.adapters.sds_client import SdsDelivery, SdsDemand
from common.services.sds_sync import SdsSync
from tests.support.points import POINT_X


class FakeSds:
    """SDS's delivery feed (cursor = sequence) and its demand endpoint, in memory."""

    def __init__(self) -> None:
        self.feed: list[SdsDelivery] = []

    def deliveries_since(self, cursor: str | None, limit: int = 100):
        page = [d for d in self.feed if d.sequence > int(cursor or 0)][:limit]
        return page, (str(page[-1].sequence) if page else cursor or "")

    def put_demand(self, point_id: str, week: str, doses: dict[str, int]) -> SdsDemand:
        return SdsDemand(point_id=point_id, iso_week=week, doses=doses, updated_at=clock.now())


def delivery(delivery_id, product, doses, day, sequence, status="delivered") -> SdsDelivery:
    return SdsDelivery(
        delivery_id=delivery_id,
        point_id=POINT_X,
        product=product,
        doses=doses,
        delivery_date=day,
        sequence=sequence,
        status=status,
    )


def sync(sds: FakeSds) -> SdsSync:
    return SdsSync(
        wiring.units(), sds, wiring.staff_calendar_service(), wiring.availability_folder()
    )
