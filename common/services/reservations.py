"""Reserved capacity: staff or an admin keep a share of a point's (or some days') seats for a
group until a given time; search and booking respect it (the rules: common/domain/reservations.py).

Collections:
- `seat_reservations/{id}` (a random id, or one derived from the request when an admin makes
  them across a voivodeship): one reservation: scope, group, percent, layer, until, status,
  explicit bands. Written on creation and cancellation; loaded by every instance's book.
- `reservation_layers/{point_id}`: the point's reservations in force in brief (layer, scope,
  until). Every creation and cancellation at the point rewrites it with a version
  precondition, so two made at once can never take the same layer (the loser reads again).

**Exact under a rush, without a hot document.** A reservation is seat indices (its band in
each slot), and a claim is a seat document created with a precondition (common/services/seats.py):
an outsider never tries a band index, so no interleaving of claims gives one to an outsider
(the argument: common/domain/reservations.py). Booking reads no reservation document: every
instance keeps the reservations in force in memory (`ReservationBook`), reloaded by one query
at most every RESERVATION_CACHE_S (15 s). **The cache bound**: a new reservation binds every
booking and search instance within 15 s of its creation (the instance that made it, at once);
seats booked in its band by others in those seconds stay theirs, like seats booked before it.
A cancellation frees its seats within 15 s (until then the seats stay kept: never an
overbooking). `until` needs no cache and no job: every decision compares it with `now`.

**Making one** reads the point, its calendar and the seats already taken in the scope (one
query: a few thousand documents at most for a busy point over the whole horizon; nothing for
days not yet booked), chooses the layer, writes the bands of slots whose default band is not
free, and commits the reservation, the layers document and the audit entry at once.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from common.adapters.firestore_store import AVAILABILITY, POINTS, SEATS
from common.domain.calendar import WARSAW, PointCalendar, SlotRef
from common.domain.errors import (
    ForbiddenError,
    NotFoundError,
    OverloadedError,
    ValidationFailedError,
)
from common.domain.reservations import (
    Reservation,
    ReservationConflictError,
    ReservationGroup,
    ReservationNotFoundError,
    SeatRule,
    explicit_band,
    first_fit_layer,
    overlapping_scopes,
    seat_rule,
    seat_rule_for,
)
from common.domain.rulebook import RuleBook
from common.services.idempotency import IdempotencyScope, StoredResponse
from common.services.point_access import authorize_point, read_point
from common.services.seats import expired_hold, seat_index
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner

RESERVATIONS = "seat_reservations"
RESERVATION_LAYERS = "reservation_layers"
RESERVATION_CACHE_S = 15.0
MAX_IN_FORCE_PER_POINT = 8
MAX_UNTIL = timedelta(days=180)
MAX_DAYS_AHEAD = 366  # as search and the staff calendar
# Firestore's TTL deletes a reservation's record this long after it ended (docs/retention.md).
KEEP_AFTER_END = timedelta(days=90)
LIST_LIMIT = 200


class ReservationRequest(BaseModel):
    """POST /v1/points/{point_id}/reservations: keep `percent` % of the seats of every slot
    in the scope (the point; optionally days date_from..date_to and one product) for a group
    (born_from..born_to, or age_min..age_max on the visit day) until `until`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    percent: int = Field(ge=1, le=100)
    until: AwareDatetime
    date_from: date | None = None
    date_to: date | None = None
    product: str | None = Field(default=None, max_length=40)
    born_from: int | None = Field(default=None, ge=1900, le=2100)
    born_to: int | None = Field(default=None, ge=1900, le=2100)
    age_min: int | None = Field(default=None, ge=0, le=150)
    age_max: int | None = Field(default=None, ge=0, le=150)
    reason: str | None = Field(default=None, min_length=3, max_length=500)

    @model_validator(mode="after")
    def _valid(self) -> ReservationRequest:
        if self.date_from and self.date_to and self.date_to < self.date_from:
            raise ValueError("date_to is before date_from")
        self.group  # noqa: B018 (validates: one kind of group, bounds in order)
        return self

    @property
    def group(self) -> ReservationGroup:
        return ReservationGroup(
            born_from=self.born_from,
            born_to=self.born_to,
            age_min=self.age_min,
            age_max=self.age_max,
        )

    def for_point(self) -> ReservationRequest:
        return self


class VoivodeshipReservationRequest(ReservationRequest):
    """POST /v1/admin/reservations: the same reservation at every point of a voivodeship."""

    voivodeship: str = Field(min_length=1, max_length=40)

    def for_point(self) -> ReservationRequest:
        return ReservationRequest.model_validate(self.model_dump(exclude={"voivodeship"}))


class CancelReservationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str | None = Field(default=None, min_length=3, max_length=500)


def _busy() -> Exception:
    return OverloadedError("the point's reservations are being changed; try again shortly")


# -- the instance's copy: what booking and search consult ------------------------------------
class ReservationBook:
    """The reservations in force, in memory, reloaded by one query at most every `ttl_s`.

    Readers never wait for a reload another thread is doing (they use the copy they have);
    only the first load of an instance is waited for."""

    def __init__(
        self,
        units: UnitOfWorkRunner,
        ttl_s: float = RESERVATION_CACHE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.units = units
        self.ttl_s = ttl_s
        self.monotonic = monotonic
        self._by_point: dict[str, tuple[Reservation, ...]] = {}
        self._loaded_at = float("-inf")
        self._loaded = False
        self._lock = threading.Lock()
        self.loads = 0

    def _current(self, now: datetime) -> dict[str, tuple[Reservation, ...]]:
        if self._loaded and self.monotonic() - self._loaded_at <= self.ttl_s:
            return self._by_point
        if not self._lock.acquire(blocking=not self._loaded):
            return self._by_point  # another thread is reloading
        try:
            if not self._loaded or self.monotonic() - self._loaded_at > self.ttl_s:
                found = self.units.reader().query(RESERVATIONS, ("until", ">", now))
                by_point: dict[str, list[Reservation]] = {}
                for document in found:
                    reservation = Reservation.from_document(document.data)
                    if reservation.status == "active":
                        by_point.setdefault(reservation.point_id, []).append(reservation)
                self._by_point = {p: tuple(rs) for p, rs in by_point.items()}
                self._loaded_at = self.monotonic()
                self._loaded = True
                self.loads += 1
            return self._by_point
        finally:
            self._lock.release()

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    def at_point(self, point_id: str, now: datetime) -> tuple[Reservation, ...]:
        """The point's reservations in force at `now`."""
        return tuple(r for r in self._current(now).get(point_id, ()) if r.in_force(now))

    def in_force(self, now: datetime) -> dict[str, tuple[Reservation, ...]]:
        current = self._current(now)
        found = {p: tuple(r for r in rs if r.in_force(now)) for p, rs in current.items()}
        return {p: rs for p, rs in found.items() if rs}

    def rule(
        self, ref: SlotRef, capacity: int, birth_date: date | None, now: datetime
    ) -> SeatRule | None:
        """What a person born on `birth_date` may take in this slot (None: no reservation)."""
        found = self.at_point(ref.point_id, now)
        return seat_rule(found, ref, capacity, birth_date, now) if found else None

    def cohort_rule(
        self,
        ref: SlotRef,
        capacity: int,
        born_from: int | None,
        born_to: int | None,
        now: datetime,
    ) -> SeatRule | None:
        """The same for a whole cohort of birth years (a member only if wholly in the group)."""
        found = self.at_point(ref.point_id, now)
        if not found:
            return None
        today = now.astimezone(WARSAW).date()
        return seat_rule_for(
            found, ref, capacity, lambda r: r.group.includes_all(born_from, born_to, today), now
        )


# -- making, cancelling, listing --------------------------------------------------------------
class ReservationService:
    def __init__(
        self,
        units: UnitOfWorkRunner,
        rule_book: RuleBook,
        book: ReservationBook | None = None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.units = units
        self.rule_book = rule_book
        self.book = book
        self.new_id = new_id

    # -- create ---------------------------------------------------------------------------
    def create(
        self,
        actor: Any,
        point_id: str,
        body: ReservationRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        authorize_point(actor, point_id)  # before any read: a refusal tells nothing
        self._validate(body, now)
        reservation_id = self.new_id()

        def attempt(uow: UnitOfWork) -> StoredResponse:
            reservation = self._stage_create(uow, actor, point_id, body, reservation_id, None, now)
            return uow.respond(StoredResponse(201, {"reservation": reservation.to_api(now)}))

        return self._run(attempt, idem)

    def create_for_voivodeship(
        self,
        actor: Any,
        body: VoivodeshipReservationRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        """The same reservation at every point of a voivodeship (admins): one commit per
        point, each reservation's id derived from the request, so a retry with the same key
        after a crash makes the rest and never a point twice; then the answer is stored."""
        if actor.role != "admin":
            raise ForbiddenError("only an admin reserves seats across a voivodeship")
        single = body.for_point()
        self._validate(single, now)
        found = self.units.reader().query(POINTS, ("voivodeship", "==", body.voivodeship))
        points = sorted(d.id for d in found)
        if not points:
            raise NotFoundError("no vaccination point in this voivodeship")
        batch = idem.doc_id if idem is not None else self.new_id()
        made: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        for point_id in points:
            reservation_id = hashlib.sha256(f"{batch}\x00{point_id}".encode()).hexdigest()[:32]

            def attempt(uow: UnitOfWork, point_id: str = point_id, rid: str = reservation_id):
                earlier = uow.get(RESERVATIONS, rid)
                if earlier is not None:  # made by an earlier try of this same request
                    return Reservation.from_document(earlier.data)
                return self._stage_create(uow, actor, point_id, single, rid, batch, now)

            try:
                reservation = self.units.run(attempt, gave_up=_busy)
            except ReservationConflictError as conflict:
                skipped.append({"point_id": point_id, "reason": conflict.code})
                continue
            made.append(reservation.to_api(now))

        def finish(uow: UnitOfWork) -> StoredResponse:
            uow.audit(
                actor, "reservation.create_voivodeship", [], now,
                voivodeship=body.voivodeship, batch_id=batch, points=len(made),
            )  # fmt: skip
            answer = {"reservations": made, "skipped": skipped, "batch_id": batch}
            return uow.respond(StoredResponse(201, answer))

        return self._run(finish, idem)

    def _validate(self, body: ReservationRequest, now: datetime) -> None:
        today = now.astimezone(WARSAW).date()
        if body.until <= now:
            raise ValidationFailedError("until must be in the future", details={"field": "until"})
        if body.until > now + MAX_UNTIL:
            raise ValidationFailedError(
                f"until is at most {MAX_UNTIL.days} days ahead", details={"field": "until"}
            )
        last = today + timedelta(days=MAX_DAYS_AHEAD)
        for name in ("date_from", "date_to"):
            day = getattr(body, name)
            if day is not None and not today <= day <= last:
                raise ValidationFailedError(
                    f"{name} is between today and {MAX_DAYS_AHEAD} days ahead",
                    details={"field": name},
                )
        if body.product is not None:
            self.rule_book.rules_at(now).catalogue.get(body.product)  # 400 unknown_product

    def _stage_create(
        self,
        uow: UnitOfWork,
        actor: Any,
        point_id: str,
        body: ReservationRequest,
        reservation_id: str,
        batch: str | None,
        now: datetime,
    ) -> Reservation:
        point = read_point(uow, point_id)  # 404 for a point that does not exist
        if body.product is not None and body.product not in point.get("products", []):
            raise ValidationFailedError(
                "the point does not offer this product", details={"field": "product"}
            )
        layers = uow.get(RESERVATION_LAYERS, point_id)
        entries: dict[str, dict[str, Any]] = dict((layers.data if layers else {}).get("layers", {}))
        in_force = {rid: e for rid, e in entries.items() if e["until"] > now}
        if len(in_force) >= MAX_IN_FORCE_PER_POINT:
            raise ReservationConflictError(
                f"a point has at most {MAX_IN_FORCE_PER_POINT} reservations in force"
            )
        scope = (point_id, body.date_from, body.date_to, body.product)
        overlapping = {
            rid: e for rid, e in in_force.items() if overlapping_scopes(scope, _scope(point_id, e))
        }
        layer = first_fit_layer(
            [(e["layer"], e["layer"] + e["percent"]) for e in overlapping.values()], body.percent
        )
        if layer is None:
            used = sum(e["percent"] for e in overlapping.values())
            raise ReservationConflictError(
                f"{used} % of these seats are already reserved for other groups",
                details={"reserved_percent": used},
            )
        reservation = Reservation(
            reservation_id=reservation_id,
            point_id=point_id,
            group=body.group,
            percent=body.percent,
            layer=layer,
            until=body.until,
            date_from=body.date_from,
            date_to=body.date_to,
            product=body.product,
            created_at=now,
            created_by=getattr(actor, "uid", None),
            batch_id=batch,
        )
        others = [
            Reservation.from_document(d.data)
            for d in uow.get_all([(RESERVATIONS, rid) for rid in overlapping]).values()
            if d is not None
        ]
        reservation = reservation.with_bands(self._explicit_bands(uow, reservation, others, now))
        uow.create(RESERVATIONS, reservation_id, _stored(reservation))
        summary = {
            "layer": layer,
            "percent": body.percent,
            "until": body.until,
            "date_from": _iso(body.date_from),
            "date_to": _iso(body.date_to),
            "product": body.product,
        }
        self._write_layers(uow, point_id, layers, in_force | {reservation_id: summary}, now)
        uow.audit(
            actor, "reservation.create", [], now,
            reservation_id=reservation_id, point_id=point_id, percent=body.percent,
            group=body.group.to_api(), until=body.until.isoformat(),
            date_from=_iso(body.date_from), date_to=_iso(body.date_to), product=body.product,
            reason=getattr(body, "reason", None),
        )  # fmt: skip
        if self.book is not None:
            uow.after_commit(self.book.invalidate)
        return reservation

    @staticmethod
    def _explicit_bands(
        reader: UnitOfWork, reservation: Reservation, others: Iterable[Reservation], now: datetime
    ) -> dict[str, tuple[int, ...]]:
        """For each slot of the scope still to come whose default band holds a taken seat (or
        another group's), the band written down: chosen among the seats free now."""
        calendar = reader.get(AVAILABILITY, reservation.point_id)
        slots = PointCalendar.from_document(reservation.point_id, calendar.data if calendar else {})
        scope = [
            s
            for ref, s in slots.slots.items()
            if reservation.covers(ref) and ref.starts_at > now and s.capacity > 0
        ]
        if not scope:
            return {}
        first = min(s.ref.day for s in scope).isoformat()
        last = max(s.ref.day for s in scope).isoformat()
        where: list[Any] = [("point_id", "==", reservation.point_id)]
        if first == last:
            where.append(("day", "==", first))
        else:
            where += [("day", ">=", first), ("day", "<=", last)]
        taken: dict[str, set[int]] = {}
        for seat in reader.query(SEATS, *where):
            if not expired_hold(seat, now):
                taken.setdefault(seat.data["slot_id"], set()).add(seat_index(seat.id))
        others = [o for o in others if o.in_force(now)]
        bands: dict[str, tuple[int, ...]] = {}
        for slot in scope:
            ref, capacity = slot.ref, slot.capacity
            unavailable = set(taken.get(ref.slot_id, ()))
            for other in others:
                if other.covers(ref):
                    unavailable |= other.band(ref, capacity)
            band = explicit_band(reservation.default_band(capacity), unavailable, capacity)
            if band is not None:
                bands[ref.slot_id] = band
        return bands

    @staticmethod
    def _write_layers(
        uow: UnitOfWork,
        point_id: str,
        layers: Any,
        entries: dict[str, dict[str, Any]],
        now: datetime,
    ) -> None:
        """The point's layers document, with a version precondition (or created): two changes
        at once cannot both commit; the loser reads again (the unit of work's retry)."""
        data = {"point_id": point_id, "layers": entries, "updated_at": now}
        if layers is None:
            uow.create(RESERVATION_LAYERS, point_id, data)
        else:
            uow.update(RESERVATION_LAYERS, point_id, data, if_version=layers.version)

    # -- cancel ---------------------------------------------------------------------------
    def cancel(
        self,
        actor: Any,
        point_id: str,
        reservation_id: str,
        body: CancelReservationRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        authorize_point(actor, point_id)

        def attempt(uow: UnitOfWork) -> StoredResponse:
            found = _load(uow, point_id, reservation_id)
            reservation = Reservation.from_document(found.data)
            if reservation.status == "cancelled":
                return uow.respond(StoredResponse(200, {"reservation": reservation.to_api(now)}))
            uow.update(
                RESERVATIONS,
                reservation_id,
                {"status": "cancelled", "cancelled_at": now, "purge_at": now + KEEP_AFTER_END},
                if_version=found.version,
            )
            layers = uow.get(RESERVATION_LAYERS, point_id)
            if layers is not None:
                entries = {
                    rid: e
                    for rid, e in layers.data.get("layers", {}).items()
                    if rid != reservation_id and e["until"] > now
                }
                self._write_layers(uow, point_id, layers, entries, now)
            uow.audit(
                actor, "reservation.cancel", [], now,
                reservation_id=reservation_id, point_id=point_id, reason=body.reason,
            )  # fmt: skip
            if self.book is not None:
                uow.after_commit(self.book.invalidate)
            cancelled = Reservation.from_document(found.data | {"status": "cancelled"})
            return uow.respond(StoredResponse(200, {"reservation": cancelled.to_api(now)}))

        return self._run(attempt, idem)

    # -- list -----------------------------------------------------------------------------
    def listing(self, actor: Any, point_id: str, now: datetime) -> dict[str, Any]:
        authorize_point(actor, point_id)
        reader = self.units.reader()
        read_point(reader, point_id)
        found = reader.query(RESERVATIONS, ("point_id", "==", point_id))
        reservations = sorted(
            (Reservation.from_document(d.data) for d in found),
            key=lambda r: (r.created_at is None, r.created_at),
            reverse=True,
        )
        return {
            "point_id": point_id,
            "reservations": [r.to_api(now) for r in reservations[:LIST_LIMIT]],
        }

    def _run(
        self, attempt: Callable[[UnitOfWork], StoredResponse], idem: IdempotencyScope | None
    ) -> StoredResponse:
        return self.units.run(attempt, idem=idem, gave_up=_busy)


def _load(reader: UnitOfWork, point_id: str, reservation_id: str) -> Any:
    if not reservation_id.isalnum() or len(reservation_id) > 64:
        raise ReservationNotFoundError()
    found = reader.get(RESERVATIONS, reservation_id)
    if found is None or found.data.get("point_id") != point_id:
        raise ReservationNotFoundError()
    return found


def _stored(reservation: Reservation) -> dict[str, Any]:
    # Firestore's TTL deletes the record KEEP_AFTER_END after it ends (docs/retention.md).
    return reservation.to_document() | {"purge_at": reservation.until + KEEP_AFTER_END}


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def _scope(
    point_id: str, entry: dict[str, Any]
) -> tuple[str, date | None, date | None, str | None]:
    def day(value: Any) -> date | None:
        return date.fromisoformat(value) if value else None

    return (point_id, day(entry.get("date_from")), day(entry.get("date_to")), entry.get("product"))


# -- what search shows ---------------------------------------------------------------------------
def birth_date_of(principal: Any, now: datetime) -> date | None:
    """A patient's own birth date (from the PESEL in their token), for search to show them
    their group's reserved seats; None for anyone else (an agent's search is an outsider's)."""
    from common.domain.errors import InvalidPeselError
    from common.domain.pesel import parse_pesel

    if getattr(principal, "role", None) != "patient" or not getattr(principal, "pesel", None):
        return None
    try:
        return parse_pesel(principal.pesel, now.astimezone(WARSAW).date()).birth_date
    except InvalidPeselError:
        return None


RuleOf = Callable[[SlotRef, int], SeatRule | None]


def reserved_free_in(
    index: Any,
    rule_of: RuleOf,
    *,
    not_before: datetime,
    date_from: date,
    date_to: date,
    product: str | None = None,
    earliest: int = 3,
) -> tuple[int, list[Any]]:
    """FreeSeatIndex.free_in (common/domain/calendar.py) for a point with reservations in
    force: each slot's free seats as `outsider_free` bounds them for this person (never more
    than they could book; see common/domain/reservations.py), the same days and order."""
    import bisect

    from common.domain.calendar import SlotAvailability, day_key
    from common.domain.reservations import outsider_free

    found = index.days.get(product)
    if found is None:
        return 0, []
    keys, _, rows = found
    local_now = not_before.astimezone(WARSAW)
    today_key, now_hhmm = day_key(local_now.date()), f"{local_now:%H%M}"
    first_key, last_key = max(day_key(date_from), today_key), day_key(date_to)
    total = 0
    shown: list[Any] = []
    for position in range(bisect.bisect_left(keys, first_key), len(keys)):
        dkey = keys[position]
        if dkey > last_key:
            break
        for skey, cap, free in rows[position]:
            if dkey == today_key and skey[:4] <= now_hhmm:
                continue
            ref = SlotRef.from_keys(index.point_id, dkey, skey)
            seats = outsider_free(free, rule_of(ref, cap))
            if seats <= 0:
                continue
            total += seats
            if len(shown) < earliest:
                shown.append(SlotAvailability(ref, cap, seats))
    return total, shown
