"""SDS: deliveries in (they cap what a point may book), booked demand out.

A run (scheduled every 5 minutes) does three bounded things:

1. Pull deliveries after the cursor `sync_state/sds_deliveries`, one commit per page:
     set    deliveries/{delivery_id}            only when SDS's `sequence` is newer (a
                                                duplicate or out-of-order page changes nothing)
     set    supply/{point}_{product}_{week}     merge: deliveries.{id} = doses (0 once
                                                cancelled), dirty = true
     update sync_state/sds_deliveries           cursor (precondition: the version read)
   The budget is the SUM of that map, never an increment: replays cannot count twice. The
   page is one attempt of the unit of work (common/services/unit_of_work.py): another run
   that moved the cursor first makes our commit fail whole, and the attempt runs again from
   its reads (the cursor, the page, the deliveries stored).
2. Reconcile dirty supply documents (at most ``max_reconcile`` per run): the point's pending
   free-seat deltas folded first, the week's slots of that point and product get the
   capacity ``common.domain.supply.allocate`` gives them, each through StaffCalendarService's
   safe capacity path (blocker seats; visits displaced with `appointment.displaced` events in
   the same commit as their seat's release). Then the point's demand is pushed, and only then
   is the document marked clean (precondition: unchanged since read): a crash or an SDS
   outage in between leaves it dirty, and the next run does it again (a no-op where the
   capacity already matches); a week whose calendar stays busy is left dirty too.
3. Push demand (booked doses = cap - free, per point, product and ISO week, from the current
   week on) for the points reconciled, and for the next ``demand_sweep`` points in id order
   (cursor `sync_state/sds_demand`), so every point's demand is refreshed round-robin. One
   availability read per point, never a scan of appointments; `put_demand` is an idempotent
   PUT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from google.cloud import firestore

from common import structured_log as log
from common.adapters.firestore_store import (
    APPOINTMENTS,
    AVAILABILITY,
    POINTS,
    SEATS,
    free_seats_field,
)
from common.adapters.sds_client import SdsDelivery, SdsDemand
from common.domain.calendar import SlotRef, parse_day_key
from common.domain.errors import CalendarBusyError, DependencyUnavailableError, DomainError
from common.domain.impact import (
    compaction_moves,
    delivery_doses,
    is_stale,
    newest_deliveries,
    seat_holder,
    supply_budget,
    supply_cuts,
    week_supply_slots,
)
from common.domain.supply import SupplySlot, allocate, iso_week
from common.domain.visits import local_day
from common.services.availability import changed
from common.services.booking import Actor
from common.services.sync_cursor import SYNC_STATE, cursor_behind, load_cursor, stage_cursor
from common.services.unit_of_work import Document, UnitOfWork, UnitOfWorkRunner

DELIVERIES = "deliveries"
SUPPLY = "supply"
CURSOR_NAME = "sds_deliveries"
DEMAND_CURSOR_NAME = "sds_demand"
PAGE_SIZE = 100
MAX_PAGES = 20
MAX_RECONCILE = 50
DEMAND_SWEEP = 50
SHORTFALL_REASON = "supply_shortfall"
SUPPLY_ACTOR = Actor(uid="system:sds-sync", role="admin", reason="SDS delivery plan")


class DeliverySource(Protocol):
    def deliveries_since(
        self, cursor: str | None, limit: int = 100
    ) -> tuple[list[SdsDelivery], str]: ...

    def put_demand(self, point_id: str, iso_week: str, doses: dict[str, int]) -> SdsDemand: ...


class Folder(Protocol):
    """Folds pending free-seat deltas into the availability documents (AvailabilityFolder)."""

    def fold_all(self) -> Any: ...

    def fold_point(self, point_id: str) -> Any: ...


class _Contended(Exception):
    """Another run kept committing first: this step is left for the next run."""


@dataclass(frozen=True)
class _Page:
    written: int = 0
    stale: int = 0
    # SDS offered a cursor behind ours (stored, offered): not followed.
    backwards: tuple[str | None, str] | None = None


def supply_id(point_id: str, product: str, week: str) -> str:
    return f"{point_id}_{product}_{week}"


def demand_of(document: dict[str, Any] | None, from_week: str) -> dict[str, dict[str, int]]:
    """{iso_week: {product: booked doses}} of an availability document, weeks >= from_week."""
    weeks: dict[str, dict[str, int]] = {}
    for dkey, day_slots in ((document or {}).get("days") or {}).items():
        week = iso_week(parse_day_key(dkey))
        if week < from_week:
            continue
        for skey, entry in (day_slots or {}).items():
            if not isinstance(entry, dict):
                continue
            product = skey.split("_", 1)[1]
            booked = max(int(entry.get("cap", 0)) - int(entry.get("free", 0)), 0)
            per_product = weeks.setdefault(week, {})
            per_product[product] = per_product.get(product, 0) + booked
    return weeks


class SdsSync:
    def __init__(
        self,
        units: UnitOfWorkRunner,
        sds: DeliverySource,
        calendar: Any,
        folder: Folder,
        *,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
        max_reconcile: int = MAX_RECONCILE,
        demand_sweep: int = DEMAND_SWEEP,
    ) -> None:
        self.units = units
        self.sds = sds
        self.calendar = calendar  # StaffCalendarService: the safe capacity path
        self.folder = folder
        self.page_size = page_size
        self.max_pages = max_pages
        self.max_reconcile = max_reconcile
        self.demand_sweep = demand_sweep

    # -- the run ----------------------------------------------------------------------------
    def run(self, now: datetime) -> dict[str, Any]:
        # Booked = capacity - free: the free counts must include the bookings still waiting
        # for the folder (a few seconds' worth) before supply and demand are judged on them.
        self.folder.fold_all()
        summary: dict[str, Any] = {
            "pages": 0,
            "deliveries": 0,
            "stale": 0,
            "refused_backwards": False,
            "reconciled": 0,
            "raised": 0,
            "lowered": 0,
            "displaced": 0,
            "demand_pushed": 0,
        }
        for _ in range(self.max_pages):
            if not self._one_page(now, summary):
                break
        pushed_points: set[str] = set()
        for supply in self._dirty():
            try:
                self.reconcile(supply, now, summary)
            except DependencyUnavailableError:
                raise
            except DomainError as err:
                # One week that cannot be reconciled now (calendar busy, a seat held by a
                # visit already carried out) must not block the others: it stays dirty.
                summary["deferred"] = summary.get("deferred", 0) + 1
                log.warning("supply left for the next run", supply=supply.id, code=err.code)
                continue
            point_id = supply.data.get("point_id")
            if point_id not in pushed_points:
                summary["demand_pushed"] += self.push_demand(point_id, now)
                pushed_points.add(point_id)
            self._mark_clean(supply)
            summary["reconciled"] += 1
        summary["demand_pushed"] += self._demand_sweep(now, pushed_points)
        log.info("sds sync", **summary)
        return summary

    # -- 1. deliveries ----------------------------------------------------------------------
    def _one_page(self, now: datetime, summary: dict[str, Any]) -> bool:
        def attempt(uow: UnitOfWork) -> _Page | None:
            state = load_cursor(uow, CURSOR_NAME)
            deliveries, next_cursor = self.sds.deliveries_since(state.cursor, self.page_size)
            if not deliveries:
                return None
            if cursor_behind(next_cursor, state.cursor):
                return _Page(backwards=(state.cursor, next_cursor))
            written, stale = self._stage_page(uow, deliveries, now)
            stage_cursor(uow, state, next_cursor, now, last_page_size=len(deliveries))
            return _Page(written, stale)

        try:
            page = self.units.run(attempt, gave_up=_Contended)
        except _Contended:
            log.warning("another run keeps moving the SDS cursor: paging left for the next run")
            return False
        if page is None:
            return False
        if page.backwards is not None:
            summary["refused_backwards"] = True
            log.error(
                "SDS answered with a cursor behind ours: not followed",
                stored=page.backwards[0],
                offered=page.backwards[1],
            )
            return False
        summary["pages"] += 1
        summary["deliveries"] += page.written
        summary["stale"] += page.stale
        return True

    @staticmethod
    def _stage_page(
        uow: UnitOfWork, deliveries: Sequence[SdsDelivery], now: datetime
    ) -> tuple[int, int]:
        # The decisions (newest per id, stale, the doses counted) are common/domain/impact.py's,
        # which the impact dry run of a shortfall (common/services/impact.py) applies too.
        newest = newest_deliveries(deliveries)
        found = uow.get_all([(DELIVERIES, d) for d in newest])
        written = stale = 0
        for delivery_id, delivery in newest.items():
            stored = found.get((DELIVERIES, delivery_id))
            stored_sequence = int(stored.data.get("sequence") or 0) if stored else None
            if is_stale(stored_sequence, delivery):
                stale += 1
                continue
            week = iso_week(delivery.delivery_date)
            document = delivery.model_dump(mode="json") | {"iso_week": week, "synced_at": now}
            if stored is None:
                uow.create(DELIVERIES, delivery_id, document)
            else:
                uow.update(DELIVERIES, delivery_id, document, if_version=stored.version)
            doses = delivery_doses(delivery)
            uow.set(
                SUPPLY,
                supply_id(delivery.point_id, delivery.product, week),
                {
                    "point_id": delivery.point_id,
                    "product": delivery.product,
                    "iso_week": week,
                    "deliveries": {delivery_id: doses},
                    "dirty": True,
                    "updated_at": now,
                },
                merge=True,
            )
            written += 1
        return written, stale

    # -- 2. supply -> capacity --------------------------------------------------------------
    def _dirty(self) -> list[Document]:
        return self.units.reader().query(SUPPLY, ("dirty", "==", True), limit=self.max_reconcile)

    def _mark_clean(self, supply: Document) -> None:
        def attempt(uow: UnitOfWork) -> None:
            current = uow.get(SUPPLY, supply.id)
            if current is None or current.version != supply.version:
                return  # a newer delivery landed meanwhile: stays dirty for the next run
            uow.update(SUPPLY, supply.id, {"dirty": False}, if_version=supply.version)

        try:
            self.units.run(attempt, gave_up=_Contended)
        except _Contended:
            pass  # still dirty: the next run reconciles it again (a no-op if nothing changed)

    def reconcile(self, supply: Document, now: datetime, summary: dict[str, Any]) -> None:
        point_id = supply.data["point_id"]
        product, week = supply.data["product"], supply.data["iso_week"]
        budget = supply_budget(supply.data.get("deliveries") or {})
        self.folder.fold_point(point_id)
        availability = self.units.reader().get(AVAILABILITY, point_id)
        slots = self._week_slots(
            point_id, product, week, availability.data if availability else None, now
        )
        targets = allocate(slots, budget)
        for slot, target in supply_cuts(slots, targets):
            if target > 0:
                self._compact(slot, target, now)
        for slot in slots:
            if slot.fixed or targets[slot.slot_id] == slot.capacity:
                continue
            response = self.calendar.apply_supply_capacity(
                SUPPLY_ACTOR,
                point_id,
                slot.slot_id,
                targets[slot.slot_id],
                slot.template,
                SHORTFALL_REASON,
                now,
            )
            summary["raised" if targets[slot.slot_id] > slot.capacity else "lowered"] += 1
            summary["displaced"] += len(response.body.get("displaced") or [])
        log.info(
            "supply reconciled",
            point_id=point_id,
            product=product,
            iso_week=week,
            budget=budget,
            offered=sum(targets.values()) + sum(s.capacity for s in slots if s.fixed),
        )

    def _week_slots(
        self,
        point_id: str,
        product: str,
        week: str,
        document: dict[str, Any] | None,
        now: datetime,
    ) -> list[SupplySlot]:
        return week_supply_slots(point_id, product, week, document, now)

    def _compact(self, slot: SupplySlot, target: int, now: datetime) -> None:
        """Move visits sitting on seat indices >= target onto free indices below it.

        Bookings pick seats at random, so lowering a slot of 5 with 2 visits to 2 would
        otherwise displace whoever holds indices 2..4. Each move, in one commit: the free
        low seat is created (a booker who took it meanwhile makes the commit fail: the attempt
        reads again), the appointment points to it (precondition: unchanged since read), the
        high seat becomes a blocker (one fewer free seat), and `free` goes down by one. The
        capacity change that follows then finds only blockers and free seats up there. A
        slot that stays contended past the retry bound is not lowered now (calendar busy):
        its week stays dirty, rather than displacing visits a move would have kept.
        """
        ref = SlotRef.parse(slot.slot_id)

        def attempt(uow: UnitOfWork) -> int:
            keys = [(SEATS, ref.seat_id(n)) for n in range(slot.capacity)]
            found = uow.get_all(keys)
            seats = [found.get(key) for key in keys]
            holders_by_index = {
                n: seat_holder(seat.data if seat is not None else None)
                for n, seat in enumerate(seats)
            }
            moves = [
                (seats[high], high, low)
                for high, low in compaction_moves(slot.capacity, target, holders_by_index)
            ]
            if not moves:
                return 0
            holders = uow.get_all(
                [(APPOINTMENTS, str(seat.data["appointment_id"])) for seat, _, _ in moves]
            )
            moved = 0
            for seat, high_index, low_index in moves:
                appointment_id = str(seat.data["appointment_id"])
                holder = holders.get((APPOINTMENTS, appointment_id))
                if holder is None:
                    continue
                moved += 1
                uow.create(
                    SEATS,
                    ref.seat_id(low_index),
                    {**seat.data, "index": low_index, "moved_at": now},
                )
                uow.update(
                    APPOINTMENTS,
                    appointment_id,
                    {"seat_id": ref.seat_id(low_index), "updated_at": now},
                    if_version=holder.version,
                )
                uow.set(
                    SEATS,
                    ref.seat_id(high_index),
                    {
                        "blocker": True,
                        "slot_id": ref.slot_id,
                        # Below the capacity until the cut that follows: a taken seat, counted.
                        "index": high_index,
                        "point_id": ref.point_id,
                        "day": ref.day.isoformat(),
                        "reason": "supply_compaction",
                        "claimed_at": now,
                    },
                )
            if moved:
                uow.update(
                    AVAILABILITY,
                    ref.point_id,
                    changed(
                        {free_seats_field(ref.day_key, ref.slot_key): firestore.Increment(-moved)}
                    ),
                )
            return moved

        self.units.run(attempt, gave_up=CalendarBusyError)

    # -- 3. demand ----------------------------------------------------------------------------
    def push_demand(self, point_id: str, now: datetime) -> int:
        found = self.units.reader().get(AVAILABILITY, point_id)
        weeks = demand_of(found.data if found else None, iso_week(local_day(now)))
        for week, doses in sorted(weeks.items()):
            self.sds.put_demand(point_id, week, doses)
        return len(weeks)

    def _demand_sweep(self, now: datetime, done: set[str]) -> int:
        if self.demand_sweep <= 0:
            return 0
        reader = self.units.reader()
        state = load_cursor(reader, DEMAND_CURSOR_NAME)
        after = [("point_id", ">", state.cursor)] if state.cursor else []
        points = reader.query(POINTS, *after, order_by="point_id", limit=self.demand_sweep)
        point_ids = [d.id for d in points]
        pushed = 0
        for point_id in point_ids:
            if point_id not in done:
                pushed += self.push_demand(point_id, now)
        # Past the last point: start over next run.
        next_cursor = point_ids[-1] if len(point_ids) == self.demand_sweep else ""

        def attempt(uow: UnitOfWork) -> None:
            uow.set(SYNC_STATE, DEMAND_CURSOR_NAME, {"cursor": next_cursor, "updated_at": now})

        try:
            self.units.run(attempt, gave_up=_Contended)
        except _Contended:
            pass  # the sweep starts from the same points next run
        return pushed
