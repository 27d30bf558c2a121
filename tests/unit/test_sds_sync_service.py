"""SDS sync's decisions, against the in-memory unit of work (no emulator, no simulator).

A delivery opens capacity earliest first up to the template; a shortfall displaces the latest
visits of the week after moving the kept ones onto the lowest seats; demand pushed is what is
booked, every point in turn; the delivery cursor moves in the commit of its page, never
backwards, and a run that loses the cursor to another reads its page again; SDS or Firestore
down leaves nothing written.
"""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest
from google.api_core import exceptions as gexc

from common.adapters.firestore_store import APPOINTMENTS, AUDIT_LOG, SEATS
from common.adapters.sds_client import SdsDelivery, SdsDemand
from common.domain.calendar import SlotRef
from common.domain.errors import DependencyUnavailableError
from common.domain.supply import iso_week
from common.services.sds_sync import DELIVERIES, SUPPLY, SdsSync, supply_id
from common.services.staff_calendar import StaffCalendarService
from common.services.sync_cursor import SYNC_STATE
from tests.support.fake_calendar import (
    MONDAY,
    NOW,
    OTHER_POINT,
    POINT,
    RULES,
    FakeFolder,
    FakeSearch,
    RacingUnits,
    add_patient,
    add_point,
    add_slots,
    book,
    everything,
    published,
    slot_entry,
)
from tests.support.fake_store import FakeUnitsOfWork

PRODUCT = "jcovden"
SLOTS = [
    SlotRef(POINT, MONDAY, time(9, 0), PRODUCT),
    SlotRef(POINT, MONDAY, time(10, 0), PRODUCT),
    SlotRef(POINT, MONDAY + timedelta(days=1), time(9, 0), PRODUCT),
    SlotRef(POINT, MONDAY + timedelta(days=1), time(10, 0), PRODUCT),
]
WEEK = iso_week(MONDAY)


class FakeSds:
    """SDS's delivery feed (sequence numbers as cursors) and its demand endpoint."""

    def __init__(self) -> None:
        self.feed: list[SdsDelivery] = []
        self.script: list[tuple[list[SdsDelivery], str]] | None = None
        self.asked: list[str | None] = []
        self.demand: dict[tuple[str, str], dict[str, int]] = {}
        self.down = False

    def deliver(self, delivery_id: str, doses: int, day: date = MONDAY, status="delivered"):
        self.feed.append(delivery(delivery_id, doses, len(self.feed) + 1, day, status))

    def cancel(self, delivery_id: str) -> None:
        last = [d for d in self.feed if d.delivery_id == delivery_id][-1]
        self.deliver(delivery_id, last.doses, last.delivery_date, "cancelled")

    def deliveries_since(self, cursor: str | None, limit: int = 100):
        self.asked.append(cursor)
        if self.down:
            raise DependencyUnavailableError("SDS is down")
        if self.script is not None:
            return self.script.pop(0) if self.script else ([], cursor or "")
        page = [d for d in self.feed if d.sequence > int(cursor or 0)][:limit]
        return page, (str(page[-1].sequence) if page else cursor or "")

    def put_demand(self, point_id: str, week: str, doses: dict[str, int]) -> SdsDemand:
        self.demand[(point_id, week)] = doses
        return SdsDemand(point_id=point_id, iso_week=week, doses=doses, updated_at=NOW)


def delivery(delivery_id, doses, sequence, day=MONDAY, status="delivered") -> SdsDelivery:
    return SdsDelivery(
        delivery_id=delivery_id,
        point_id=POINT,
        product=PRODUCT,
        doses=doses,
        delivery_date=day,
        sequence=sequence,
        status=status,
    )


class World:
    def __init__(self, demand_sweep: int = 50) -> None:
        self.units = RacingUnits(now=lambda: NOW)
        self.store = self.units.store
        self.folder = FakeFolder(self.store)
        self.sds = FakeSds()
        calendar = StaffCalendarService(self.units, RULES, FakeSearch(), self.folder)
        self.sync = SdsSync(self.units, self.sds, calendar, self.folder, demand_sweep=demand_sweep)
        add_point(self.store)
        add_point(self.store, OTHER_POINT)
        add_slots(self.store, [(ref, 5) for ref in SLOTS])

    def caps(self) -> list[tuple[int, int]]:
        return [
            (slot_entry(self.store, r)["cap"], slot_entry(self.store, r)["free"]) for r in SLOTS
        ]

    def cursor(self, name: str = "sds_deliveries") -> str | None:
        found = self.store.data(SYNC_STATE, name)
        return found["cursor"] if found else None


@pytest.fixture
def world() -> World:
    return World()


def test_deliveries_open_capacity_earliest_first_up_to_the_template(world) -> None:
    world.sds.deliver("D-1", 6)
    summary = world.sync.run(NOW)
    assert (summary["deliveries"], summary["reconciled"], summary["lowered"]) == (1, 1, 3)
    assert world.caps() == [(5, 5), (1, 1), (0, 0), (0, 0)]
    # What staff published is kept while supply holds the capacity below it.
    assert slot_entry(world.store, SLOTS[1])["tmpl"] == 5
    assert world.store.data(SUPPLY, supply_id(POINT, PRODUCT, WEEK))["dirty"] is False
    world.sds.deliver("D-2", 8)
    summary = world.sync.run(NOW)
    assert summary["raised"] == 2 and summary["displaced"] == 0
    assert world.caps() == [(5, 5), (5, 5), (4, 4), (0, 0)]
    # Raised: the blockers of the reopened seats are gone, the rest stay.
    assert [world.store.data(SEATS, SLOTS[2].seat_id(n)) is None for n in range(5)] == [
        True,
        True,
        True,
        True,
        False,
    ]
    world.sds.deliver("D-3", 100)
    world.sync.run(NOW)
    assert world.caps() == [(5, 5)] * 4
    assert all("tmpl" not in slot_entry(world.store, r) for r in SLOTS)
    actions = {(a["actor_uid"], a["action"]) for a in world.store.collection(AUDIT_LOG).values()}
    assert actions == {("system:sds-sync", "slot.supply")}


def test_a_shortfall_displaces_the_latest_visits_and_moves_the_kept_ones_down(world) -> None:
    world.sds.deliver("D-A", 6)
    world.sds.deliver("D-B", 14)
    world.sync.run(NOW)
    assert world.caps() == [(5, 5)] * 4
    booked: dict[int, list] = {}
    serial = 0
    for slot, indices in ((0, [2, 3, 4]), (2, [0, 1, 2]), (3, [0, 1, 2])):
        for index in indices:
            serial += 1
            patient = add_patient(world.store, serial)
            booked.setdefault(slot, []).append(book(world.store, SLOTS[slot], index, patient))
    assert world.caps() == [(5, 2), (5, 5), (5, 2), (5, 2)]
    world.sds.cancel("D-B")  # 6 doses left for 9 visits
    summary = world.sync.run(NOW)
    assert summary["displaced"] == 3
    assert world.caps() == [(3, 0), (0, 0), (3, 0), (0, 0)]
    for slot in (0, 2):
        for appointment in booked[slot]:
            stored = world.store.data(APPOINTMENTS, appointment.appointment_id)
            assert stored["status"] == "booked"
            # The kept visits sit below the new capacity, on seats that name them.
            index = int(stored["seat_id"].rsplit("_", 1)[1])
            assert index < 3
            seat = world.store.data(SEATS, stored["seat_id"])
            assert seat["appointment_id"] == appointment.appointment_id
            assert seat["index"] == index
    latest = {a.appointment_id for a in booked[3]}
    displaced = published(world.store, "appointment.displaced")
    assert {e.appointment_id for e in displaced} == latest
    assert {e.reason for e in displaced} == {"supply_shortfall"}
    assert all(world.store.data(APPOINTMENTS, a)["status"] == "cancelled" for a in latest)
    # Supply comes back: capacity up to the template again, nobody else displaced.
    world.sds.deliver("D-C", 14)
    world.sync.run(NOW)
    assert world.caps() == [(5, 2), (5, 5), (5, 2), (5, 5)]
    assert len(published(world.store, "appointment.displaced")) == 3


def test_demand_is_the_bookings_and_every_point_is_pushed_in_turn() -> None:
    world = World(demand_sweep=1)
    add_slots(world.store, [(SlotRef(OTHER_POINT, MONDAY, time(12, 0), PRODUCT), 5)])
    world.sds.deliver("D-1", 20)
    world.sync.run(NOW)  # reconciles (and pushes) the first point; the sweep passes it
    assert world.sds.demand == {(POINT, WEEK): {PRODUCT: 0}}
    assert world.cursor("sds_demand") == POINT
    book(world.store, SLOTS[0], 0, add_patient(world.store, 1))
    book(world.store, SLOTS[3], 4, add_patient(world.store, 2))
    world.sync.run(NOW)  # the sweep's next point
    assert world.sds.demand[(OTHER_POINT, WEEK)] == {PRODUCT: 0}
    assert world.sds.demand[(POINT, WEEK)] == {PRODUCT: 0}  # not yet its turn again
    assert world.cursor("sds_demand") == OTHER_POINT
    world.sync.run(NOW)  # past the last point: from the start next time
    assert world.cursor("sds_demand") == ""
    world.sync.run(NOW)
    assert world.sds.demand[(POINT, WEEK)] == {PRODUCT: 2}  # booked = capacity - free
    assert world.cursor("sds_demand") == POINT


def test_the_cursor_moves_with_its_page_and_duplicates_count_once(world) -> None:
    d1, d2 = delivery("D-1", 4, 1), delivery("D-2", 3, 2)
    cancelled = delivery("D-2", 3, 3, status="cancelled")
    world.sds.script = [
        ([d1, d1, d2], "2"),
        ([d1, d2], "3"),  # the same deliveries again
        ([cancelled, d2], "4"),  # the cancellation and, out of order, the older state
        ([d2], "5"),  # the older state once more, later
    ]
    summary = world.sync.run(NOW)
    assert (summary["pages"], summary["deliveries"], summary["stale"]) == (4, 3, 3)
    assert world.sds.asked == [None, "2", "3", "4", "5"]
    supply = world.store.data(SUPPLY, supply_id(POINT, PRODUCT, WEEK))
    assert supply["deliveries"] == {"D-1": 4, "D-2": 0}
    assert world.store.data(DELIVERIES, "D-2")["status"] == "cancelled"
    assert world.store.data(SYNC_STATE, "sds_deliveries")["last_page_size"] == 1
    assert world.cursor() == "5"
    assert sum(cap for cap, _ in world.caps()) == 4


def test_a_cursor_behind_ours_is_refused_and_nothing_of_its_page_is_written(world) -> None:
    world.store.put(SYNC_STATE, "sds_deliveries", {"cursor": "9"})
    world.sds.script = [([delivery("D-1", 4, 5)], "5")]
    summary = world.sync.run(NOW)
    assert summary["refused_backwards"] is True and summary["pages"] == 0
    assert world.cursor() == "9"
    assert world.store.collection(DELIVERIES) == {} and world.store.collection(SUPPLY) == {}


def test_a_run_that_loses_the_cursor_to_another_reads_its_page_again(world) -> None:
    world.sds.deliver("D-1", 4)
    world.sds.deliver("D-2", 3)
    # Another run, at the same time, on the same store, with pages of one delivery.
    other = SdsSync(
        FakeUnitsOfWork(world.store, now=lambda: NOW),
        world.sds,
        None,
        world.folder,
        page_size=1,
        max_pages=1,
    )
    world.units.races.append(
        lambda: other._one_page(NOW, {"pages": 0, "deliveries": 0, "stale": 0})
    )
    world.sync.page_size = 1
    world.sync.max_pages = 1
    summary = world.sync.run(NOW)
    # Ours read the page after None, lost the commit to the other run, read again after "1".
    assert world.sds.asked == [None, None, "1"]
    assert (summary["pages"], summary["deliveries"]) == (1, 1)
    assert world.cursor() == "2"
    supply = world.store.data(SUPPLY, supply_id(POINT, PRODUCT, WEEK))
    assert supply["deliveries"] == {"D-1": 4, "D-2": 3}


def test_sds_down_is_raised_and_nothing_is_written(world) -> None:
    world.sds.deliver("D-1", 6)
    world.sds.down = True
    before = everything(world.store)
    with pytest.raises(DependencyUnavailableError):
        world.sync.run(NOW)
    assert everything(world.store) == before and world.store.commits == 0


def test_a_firestore_outage_leaves_the_page_and_its_cursor_unwritten(world) -> None:
    world.sds.deliver("D-1", 6)
    before = everything(world.store)
    world.store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        world.sync.run(NOW)
    assert everything(world.store) == before
    # Back: the same page is read from the same cursor and applied once.
    summary = world.sync.run(NOW)
    assert summary["deliveries"] == 1 and world.cursor() == "1"
    assert world.caps() == [(5, 5), (1, 1), (0, 0), (0, 0)]
