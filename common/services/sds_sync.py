"""SDS: deliveries in (they cap what a point may book), booked demand out.

A run (scheduled every 5 minutes) does three bounded things:

1. Pull deliveries after the cursor `sync_state/sds_deliveries`, one commit per page:
     set    deliveries/{delivery_id}            only when SDS's `sequence` is newer (a
                                                duplicate or out-of-order page changes nothing)
     set    supply/{point}_{product}_{week}     merge: deliveries.{id} = doses (0 once
                                                cancelled), dirty = true
     update sync_state/sds_deliveries           cursor (precondition: the version read)
   The budget is the SUM of that map, never an increment: replays cannot count twice.
2. Reconcile dirty supply documents (at most ``max_reconcile`` per run): the week's slots of
   that point and product get the capacity ``common.domain.supply.allocate`` gives them,
   each through StaffCalendarService's safe capacity path (blocker seats; visits displaced
   with `appointment.displaced` events in the same commit as their seat's release). Then
   the point's demand is pushed, and only then is the document marked clean: a crash or an
   SDS outage in between leaves it dirty, and the next run does it again (a no-op where the
   capacity already matches).
3. Push demand (booked doses = cap - free, per point, product and ISO week, from the current
   week on) for the points reconciled, and for the next ``demand_sweep`` points in id order
   (cursor `sync_state/sds_demand`), so every point's demand is refreshed round-robin. One
   availability read per point, never a scan of appointments; `put_demand` is an idempotent
   PUT.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from common import structured_log as log
from common.adapters.firestore_store import (
    APPOINTMENTS,
    AVAILABILITY,
    POINTS,
    RPC,
    SEATS,
    free_seats_field,
    get_many,
)
from common.adapters.sds_client import SdsDelivery, SdsDemand
from common.domain.calendar import SlotRef, parse_day_key
from common.domain.errors import DependencyUnavailableError, DomainError
from common.domain.supply import SupplySlot, allocate, iso_week, week_days
from common.domain.visits import local_day
from common.services.availability import AvailabilityFolder, changed
from common.services.booking import Actor
from common.services.sync_cursor import SYNC_STATE, cursor_behind, load_cursor, write_cursor

DELIVERIES = "deliveries"
SUPPLY = "supply"
CURSOR_NAME = "sds_deliveries"
DEMAND_CURSOR_NAME = "sds_demand"
PAGE_SIZE = 100
MAX_PAGES = 20
MAX_RECONCILE = 50
DEMAND_SWEEP = 50
MAX_COMMIT_ATTEMPTS = 5
SHORTFALL_REASON = "supply_shortfall"
SUPPLY_ACTOR = Actor(uid="system:sds-sync", role="admin", reason="SDS delivery plan")


class DeliverySource(Protocol):
    def deliveries_since(
        self, cursor: str | None, limit: int = 100
    ) -> tuple[list[SdsDelivery], str]: ...

    def put_demand(self, point_id: str, iso_week: str, doses: dict[str, int]) -> SdsDemand: ...


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
        client: firestore.Client,
        sds: DeliverySource,
        calendar: Any,
        *,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
        max_reconcile: int = MAX_RECONCILE,
        demand_sweep: int = DEMAND_SWEEP,
    ) -> None:
        self.db = client
        self.sds = sds
        self.calendar = calendar
        self.page_size = page_size
        self.max_pages = max_pages
        self.max_reconcile = max_reconcile
        self.demand_sweep = demand_sweep
        self.folder = AvailabilityFolder(client)

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
        for snapshot in self._dirty():
            try:
                self.reconcile(snapshot, now, summary)
            except DependencyUnavailableError:
                raise
            except DomainError as err:
                # One week that cannot be reconciled now (calendar busy, a seat held by a
                # visit already carried out) must not block the others: it stays dirty.
                summary["deferred"] = summary.get("deferred", 0) + 1
                log.warning("supply left for the next run", supply=snapshot.id, code=err.code)
                continue
            point_id = snapshot.get("point_id")
            if point_id not in pushed_points:
                summary["demand_pushed"] += self.push_demand(point_id, now)
                pushed_points.add(point_id)
            self._mark_clean(snapshot)
            summary["reconciled"] += 1
        summary["demand_pushed"] += self._demand_sweep(now, pushed_points)
        log.info("sds sync", **summary)
        return summary

    # -- 1. deliveries ----------------------------------------------------------------------
    def _one_page(self, now: datetime, summary: dict[str, Any]) -> bool:
        for _ in range(MAX_COMMIT_ATTEMPTS):
            state = load_cursor(self.db, CURSOR_NAME)
            deliveries, next_cursor = self.sds.deliveries_since(state.cursor, self.page_size)
            if not deliveries:
                return False
            if cursor_behind(next_cursor, state.cursor):
                summary["refused_backwards"] = True
                log.error(
                    "SDS answered with a cursor behind ours: not followed",
                    stored=state.cursor,
                    offered=next_cursor,
                )
                return False
            batch = self.db.batch()
            written, stale = self._write_page(batch, deliveries, now)
            write_cursor(batch, self.db, state, next_cursor, now, last_page_size=len(deliveries))
            try:
                batch.commit(**RPC)
            except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound):
                continue
            summary["pages"] += 1
            summary["deliveries"] += written
            summary["stale"] += stale
            return True
        return False

    def _write_page(
        self, batch: firestore.WriteBatch, deliveries: Sequence[SdsDelivery], now: datetime
    ) -> tuple[int, int]:
        newest: dict[str, SdsDelivery] = {}
        for delivery in deliveries:
            known = newest.get(delivery.delivery_id)
            if known is None or delivery.sequence > known.sequence:
                newest[delivery.delivery_id] = delivery
        refs = {d: self.db.collection(DELIVERIES).document(d) for d in newest}
        snapshots = {s.reference.id: s for s in self.db.get_all(list(refs.values()), **RPC)}
        written = stale = 0
        for delivery_id, delivery in newest.items():
            snapshot = snapshots.get(delivery_id)
            stored = snapshot.to_dict() if snapshot is not None and snapshot.exists else None
            if stored is not None and int(stored.get("sequence") or 0) >= delivery.sequence:
                stale += 1
                continue
            week = iso_week(delivery.delivery_date)
            document = delivery.model_dump(mode="json") | {"iso_week": week, "synced_at": now}
            if stored is None:
                batch.create(refs[delivery_id], document)
            else:
                batch.update(
                    refs[delivery_id],
                    document,
                    option=self.db.write_option(last_update_time=snapshot.update_time),
                )
            doses = delivery.doses if delivery.status == "delivered" else 0
            batch.set(
                self.db.collection(SUPPLY).document(
                    supply_id(delivery.point_id, delivery.product, week)
                ),
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
    def _dirty(self) -> list[firestore.DocumentSnapshot]:
        query = (
            self.db.collection(SUPPLY)
            .where(filter=firestore.FieldFilter("dirty", "==", True))
            .limit(self.max_reconcile)
        )
        return list(query.stream(**RPC))

    def _mark_clean(self, snapshot: firestore.DocumentSnapshot) -> None:
        try:
            snapshot.reference.update(
                {"dirty": False},
                option=self.db.write_option(last_update_time=snapshot.update_time),
                **RPC,
            )
        except (gexc.FailedPrecondition, gexc.NotFound):
            pass  # a newer delivery landed meanwhile: stays dirty for the next run

    def reconcile(
        self, snapshot: firestore.DocumentSnapshot, now: datetime, summary: dict[str, Any]
    ) -> None:
        supply = snapshot.to_dict() or {}
        point_id, product, week = supply["point_id"], supply["product"], supply["iso_week"]
        budget = sum(int(v) for v in (supply.get("deliveries") or {}).values())
        availability = self.db.collection(AVAILABILITY).document(point_id).get(**RPC)
        slots = self._week_slots(
            point_id, product, week, availability.to_dict() if availability.exists else None, now
        )
        targets = allocate(slots, budget)
        for slot in slots:
            target = targets.get(slot.slot_id, slot.capacity)
            if not slot.fixed and 0 < target < slot.capacity:
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
        monday, sunday = week_days(week)
        slots = []
        for dkey, day_slots in ((document or {}).get("days") or {}).items():
            day = parse_day_key(dkey)
            if not monday <= day <= sunday:
                continue
            for skey, entry in (day_slots or {}).items():
                if not isinstance(entry, dict) or entry.get("removed"):
                    continue
                ref = SlotRef.from_keys(point_id, dkey, skey)
                if ref.product != product:
                    continue
                capacity = int(entry.get("cap", 0))
                slots.append(
                    SupplySlot(
                        slot_id=ref.slot_id,
                        starts_at=ref.starts_at,
                        capacity=capacity,
                        booked=max(capacity - int(entry.get("free", 0)), 0),
                        template=int(entry.get("tmpl", capacity)),
                        fixed=ref.starts_at <= now or bool(entry.get("blocked")),
                    )
                )
        return slots

    def _compact(self, slot: SupplySlot, target: int, now: datetime) -> None:
        """Move visits sitting on seat indices >= target onto free indices below it.

        Bookings pick seats at random, so lowering a slot of 5 with 2 visits to 2 would
        otherwise displace whoever holds indices 2..4. Each move, in one commit: the free
        low seat is created (a booker who took it meanwhile makes the commit fail: we read
        again), the appointment points to it (precondition: unchanged since read), the high
        seat becomes a blocker (one fewer free seat), and `free` goes down by one. The
        capacity change that follows then finds only blockers and free seats up there.
        """
        ref = SlotRef.parse(slot.slot_id)
        for _ in range(MAX_COMMIT_ATTEMPTS):
            seat_refs = [
                self.db.collection(SEATS).document(ref.seat_id(n)) for n in range(slot.capacity)
            ]
            found = get_many(self.db, seat_refs)
            seats = [found[r.path] for r in seat_refs]
            high = [
                n for n in range(target, slot.capacity) if seats[n] and not seats[n].get("blocker")
            ]
            low = [n for n in range(target) if seats[n] is None]
            moves = list(zip(high, low, strict=False))
            if not moves:
                return
            appointment_refs = [
                self.db.collection(APPOINTMENTS).document(str(seats[h]["appointment_id"]))
                for h, _ in moves
            ]
            versions = {s.reference.path: s for s in self.db.get_all(appointment_refs, **RPC)}
            batch = self.db.batch()
            moved = 0
            for (h, low_index), appointment_ref in zip(moves, appointment_refs, strict=True):
                snapshot = versions.get(appointment_ref.path)
                if snapshot is None or not snapshot.exists:
                    continue
                moved += 1
                batch.create(seat_refs[low_index], {**seats[h], "moved_at": now})
                batch.update(
                    appointment_ref,
                    {"seat_id": ref.seat_id(low_index), "updated_at": now},
                    option=self.db.write_option(last_update_time=snapshot.update_time),
                )
                batch.set(
                    seat_refs[h],
                    {
                        "blocker": True,
                        "slot_id": ref.slot_id,
                        "point_id": ref.point_id,
                        "day": ref.day.isoformat(),
                        "reason": "supply_compaction",
                        "claimed_at": now,
                    },
                )
            batch.update(
                self.db.collection(AVAILABILITY).document(ref.point_id),
                changed({free_seats_field(ref.day_key, ref.slot_key): firestore.Increment(-moved)}),
            )
            try:
                batch.commit(**RPC)
                return
            except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound):
                continue

    # -- 3. demand ----------------------------------------------------------------------------
    def push_demand(self, point_id: str, now: datetime) -> int:
        snapshot = self.db.collection(AVAILABILITY).document(point_id).get(**RPC)
        weeks = demand_of(snapshot.to_dict() if snapshot.exists else None, iso_week(local_day(now)))
        for week, doses in sorted(weeks.items()):
            self.sds.put_demand(point_id, week, doses)
        return len(weeks)

    def _demand_sweep(self, now: datetime, done: set[str]) -> int:
        if self.demand_sweep <= 0:
            return 0
        state = load_cursor(self.db, DEMAND_CURSOR_NAME)
        query = (
            self.db.collection(POINTS).order_by(FieldPath.document_id()).limit(self.demand_sweep)
        )
        if state.cursor:
            query = query.start_after({FieldPath.document_id(): state.cursor})
        point_ids = [s.id for s in query.stream(**RPC)]
        pushed = 0
        for point_id in point_ids:
            if point_id not in done:
                pushed += self.push_demand(point_id, now)
        # Past the last point: start over next run.
        next_cursor = point_ids[-1] if len(point_ids) == self.demand_sweep else ""
        self.db.collection(SYNC_STATE).document(DEMAND_CURSOR_NAME).set(
            {"cursor": next_cursor, "updated_at": now}, **RPC
        )
        return pushed
