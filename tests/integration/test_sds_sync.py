"""SDS sync against the Firestore emulator and the SDS simulator: supply caps capacity.

A delivery opens capacity, a shortfall displaces the LATEST visits of the week (with
`appointment.displaced` events), demand pushed equals the bookings, duplicate and
out-of-order deliveries change nothing twice, SDS down is a retryable 503 with nothing
half-written.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta

import pytest
import requests

from common import clock, wiring
from common.adapters.firestore_store import APPOINTMENTS, AVAILABILITY
from common.adapters.sds_client import SdsClient, SdsDelivery
from common.domain.calendar import SlotRef
from common.domain.errors import DependencyUnavailableError
from common.domain.supply import iso_week
from common.services.availability import AvailabilityFolder
from common.services.sds_sync import SUPPLY, SdsSync, supply_id
from common.services.sync_cursor import SYNC_STATE
from emulator.sds import start_sds
from tests.support.points import POINT_X, POINT_Z, check_seat_invariants, events, make_world
from tests.support.stack import today_warsaw

TOKEN = "sds-test-token"
PRODUCT = "jcovden"


@functools.cache
def _no_publisher() -> None:
    return None


@pytest.fixture(autouse=True)
def events_stay_in_outbox(project: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "publisher", _no_publisher)
    wiring.reset()


@pytest.fixture
def sds():
    with start_sds(token=TOKEN) as server:
        yield server


def _monday() -> date:
    today = today_warsaw()
    return today + timedelta(days=14 - today.weekday())


def _slots() -> list[SlotRef]:
    monday = _monday()
    return [
        SlotRef(POINT_X, monday, time(9, 0), PRODUCT),
        SlotRef(POINT_X, monday, time(10, 0), PRODUCT),
        SlotRef(POINT_X, monday + timedelta(days=1), time(9, 0), PRODUCT),
        SlotRef(POINT_X, monday + timedelta(days=1), time(10, 0), PRODUCT),
    ]


@pytest.fixture
def world(project: str):
    plan = {
        POINT_X: [(r.day, r.start, r.product, 5) for r in _slots()],
        # Near X, after the week's last slot: what displaced patients are offered.
        POINT_Z: [(_monday() + timedelta(days=2), time(12, 0), PRODUCT, 5)],
    }
    return make_world(project, patients=9, slots=plan)


def _deliver(server, delivery_id: str, doses: int, day: date | None = None) -> dict:
    response = requests.post(
        f"{server.base_url}/sds/v1/deliveries",
        json={
            "delivery_id": delivery_id,
            "point_id": POINT_X,
            "product": PRODUCT,
            "doses": doses,
            "delivery_date": (day or _monday()).isoformat(),
        },
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def _cancel(server, delivery_id: str) -> None:
    requests.post(
        f"{server.base_url}/sds/v1/deliveries/{delivery_id}:cancel",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    ).raise_for_status()


def _sync(db, server, sds_client=None) -> SdsSync:
    return SdsSync(
        wiring.units(),
        sds_client or SdsClient(server.base_url, TOKEN),
        wiring.staff_calendar_service(),
        AvailabilityFolder(db),
    )


def _caps(db) -> list[tuple[int, int]]:
    AvailabilityFolder(db).fold_all()  # the bookings' deltas, as the background folder would
    days = db.collection(AVAILABILITY).document(POINT_X).get().to_dict()["days"]
    return [
        (days[r.day_key][r.slot_key]["cap"], days[r.day_key][r.slot_key]["free"]) for r in _slots()
    ]


def _now() -> datetime:
    return clock.now()


def test_deliveries_open_capacity_up_to_the_template(world, sds):
    _deliver(sds, "D-1", 6)
    summary = _sync(world.db, sds).run(_now())
    assert summary["deliveries"] == 1 and summary["reconciled"] == 1
    assert _caps(world.db) == [(5, 5), (1, 1), (0, 0), (0, 0)]  # earliest first
    _deliver(sds, "D-2", 8)
    _sync(world.db, sds).run(_now())
    assert _caps(world.db) == [(5, 5), (5, 5), (4, 4), (0, 0)]
    _deliver(sds, "D-3", 100)  # more than the template: capacity stops at what staff published
    _sync(world.db, sds).run(_now())
    assert _caps(world.db) == [(5, 5)] * 4
    days = world.db.collection(AVAILABILITY).document(POINT_X).get().to_dict()["days"]
    assert all("tmpl" not in days[r.day_key][r.slot_key] for r in _slots())
    check_seat_invariants(world.db, POINT_X)
    # A delivery for another week does not touch this one.
    _deliver(sds, "D-4", 3, _monday() + timedelta(days=7))
    assert _sync(world.db, sds).run(_now())["lowered"] == 0


def test_a_shortfall_displaces_the_latest_visits_with_events(world, sds):
    _deliver(sds, "D-A", 6)
    _deliver(sds, "D-B", 14)
    _sync(world.db, sds).run(_now())
    assert _caps(world.db) == [(5, 5)] * 4
    slots = _slots()
    booked: dict[str, list[str]] = {}
    for patient, slot in zip(range(9), [0, 0, 0, 2, 2, 2, 3, 3, 3], strict=True):
        response = world.book(patient, slots[slot].slot_id)
        assert response.status_code == 201, response.get_json()
        booked.setdefault(slots[slot].slot_id, []).append(
            response.get_json()["appointments"][0]["appointment_id"]
        )
    assert _caps(world.db) == [(5, 2), (5, 5), (5, 2), (5, 2)]
    _cancel(sds, "D-B")  # 14 doses fewer: 6 left for 9 visits
    summary = _sync(world.db, sds).run(_now())
    assert summary["displaced"] == 3
    # The first six visits keep their seats; the latest slot's three are displaced.
    assert _caps(world.db) == [(3, 0), (0, 0), (3, 0), (0, 0)]
    for slot in (slots[0], slots[2]):
        assert all(world.appointment(a)["status"] == "booked" for a in booked[slot.slot_id])
    latest = booked[slots[3].slot_id]
    assert all(world.appointment(a)["status"] == "cancelled" for a in latest)
    displaced = events(world.db, "appointment.displaced")
    assert sorted(e["appointment_id"] for e in displaced) == sorted(latest)
    assert all(e["reason"] == "supply_shortfall" for e in displaced)
    assert any(e["alternatives"] for e in displaced)  # the notification can offer these
    check_seat_invariants(world.db, POINT_X)
    # The supply comes back: capacity returns up to the template, nobody else displaced.
    _deliver(sds, "D-C", 14)
    _sync(world.db, sds).run(_now())
    assert _caps(world.db) == [(5, 2), (5, 5), (5, 2), (5, 5)]
    check_seat_invariants(world.db, POINT_X)


def test_demand_pushed_equals_the_bookings(world, sds):
    _deliver(sds, "D-1", 20)
    _sync(world.db, sds).run(_now())
    slots = _slots()
    for patient, slot in enumerate([0, 1, 1, 3]):
        assert world.book(patient, slots[slot].slot_id).status_code == 201
    _sync(world.db, sds).run(_now())  # the round-robin sweep pushes every point's demand
    week = iso_week(_monday())
    demand = SdsClient(sds.base_url, TOKEN).get_demand(POINT_X, week)
    assert demand.doses == {PRODUCT: 4}
    other = SdsClient(sds.base_url, TOKEN).get_demand(POINT_Z, week)
    assert other.doses == {PRODUCT: 0}


class Scripted:
    """SDS pages from a script (duplicates, out of order); demand goes to the real client."""

    def __init__(self, real: SdsClient, pages) -> None:
        self.real, self.pages = real, list(pages)

    def deliveries_since(self, cursor, limit=100):
        return self.pages.pop(0) if self.pages else ([], cursor or "")

    def put_demand(self, point_id, week, doses):
        return self.real.put_demand(point_id, week, doses)


def _delivery(delivery_id: str, doses: int, sequence: int, status: str = "delivered"):
    return SdsDelivery(
        delivery_id=delivery_id,
        point_id=POINT_X,
        product=PRODUCT,
        doses=doses,
        delivery_date=_monday(),
        sequence=sequence,
        status=status,
    )


def test_duplicate_and_out_of_order_deliveries_count_once(world, sds):
    real = SdsClient(sds.base_url, TOKEN)
    d1, d2 = _delivery("D-1", 4, 1), _delivery("D-2", 3, 2)
    cancelled = _delivery("D-2", 3, 3, "cancelled")
    pages = [
        ([d1, d1, d2], "2"),
        ([d1, d2], "3"),  # the same deliveries again
        ([cancelled, d2], "4"),  # the cancellation and, out of order, the older state
        ([d2], "5"),  # the older state delivered once more, later
    ]
    summary = _sync(world.db, sds, Scripted(real, pages)).run(_now())
    assert summary["pages"] == 4
    supply = world.db.collection(SUPPLY).document(supply_id(POINT_X, PRODUCT, iso_week(_monday())))
    assert supply.get().to_dict()["deliveries"] == {"D-1": 4, "D-2": 0}
    assert sum(cap for cap, _ in _caps(world.db)) == 4
    cursor = world.db.collection(SYNC_STATE).document("sds_deliveries").get().to_dict()
    assert cursor["cursor"] == "5"


def test_sds_down_is_a_retryable_error_and_nothing_is_half_written(world, sds, project):
    from werkzeug.test import Client

    from tests.support.stack import gateway

    _deliver(sds, "D-1", 6)
    requests.put(f"{sds.base_url}/_faults", json={"down": True}, timeout=5).raise_for_status()
    with pytest.raises(DependencyUnavailableError):
        _sync(world.db, sds).run(_now())
    assert not list(world.db.collection(SUPPLY).stream())
    assert not world.db.collection(SYNC_STATE).document("sds_deliveries").get().exists
    assert _caps(world.db) == [(5, 5)] * 4
    # Through the scheduled function: a 503 with Retry-After, then success when SDS is back.
    import os

    os.environ["SDS_BASE_URL"], os.environ["SDS_TOKEN"] = sds.base_url, TOKEN
    try:
        wiring.reset()
        response = Client(gateway()).post("/_functions/sync_sds", json={})
        assert response.status_code == 503 and response.headers.get("Retry-After")
        requests.delete(f"{sds.base_url}/_faults", timeout=5).raise_for_status()
        response = Client(gateway()).post("/_functions/sync_sds", json={})
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["deliveries"] == 1
    finally:
        del os.environ["SDS_BASE_URL"], os.environ["SDS_TOKEN"]
    assert _caps(world.db) == [(5, 5), (1, 1), (0, 0), (0, 0)]
    assert world.db.collection(APPOINTMENTS).limit(1).get() == []
