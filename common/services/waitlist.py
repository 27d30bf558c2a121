"""A waitlist across channels (issue 15, item 3): told when a seat appears, in fair order.

A patient (the portal), or an agent for a caller (the hotline), puts the patient on the list
with where (a point's coordinates or a postcode, and how far), which products (or any their age
allows) and which days. One entry per patient: `waitlist/{keyed id}`, the PESEL encrypted
(`pesel_enc`, common/adapters/vault.py: the offer is a hold, which books by PESEL), never in
clear, never in an id.

**Matching** (`match`, every minute, one instance): first the entries with an offer out are
settled (their hold booked: `booked`; released or lapsed: back to `waiting`, that slot never
offered to them again), then the waiting entries are read in the order they joined and, for
each, the nearest free seat that fits is looked up in search's in-memory view and held for
them (a timed hold, `purpose: waitlist`, common/services/holds.py). A seat freed by a
cancellation, a move, new capacity or an SDS delivery is therefore held for the earliest-joined
person it fits, within a minute; a NIE or silence gives it back, and the next sweep holds it
for the next person it fits. No document is shared by the people waiting: each entry is its
own, a seat is held by its own seat document, the sweep runs alone (max_instances 1).

**The offer** goes out as an SMS to the patient's verified number (TAK books the hold, NIE
releases it: common/services/sms_dialog.py), shows in the portal (`GET /v1/waitlist`: the
entry, its place in line and the hold, booked with `POST /v1/holds/{id}/book`), and an agent
books or releases it for a caller through the same hold endpoints.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common import structured_log as log
from common.adapters.vault import FieldVault, VaultError
from common.domain.calendar import WARSAW
from common.domain.errors import (
    AlreadyBookedError,
    DependencyUnavailableError,
    DomainError,
    NotFoundError,
    OverloadedError,
)
from common.domain.pesel import parse_pesel, pesel_key
from common.geo import GeoPoint
from common.services.booking import Actor, BookAppointment
from common.services.holds import HOLDS, hold_view
from common.services.search import SearchQuery
from common.services.unit_of_work import Document, StoredResponse, UnitOfWork

WAITLIST = "waitlist"
OFFER_TTL = timedelta(hours=2)  # how long a freed seat waits for its person's answer
KEEP = timedelta(days=90)  # an entry no longer waiting is deleted after (TTL on `purge_at`)
SWEEP_BUDGET_S = 50.0  # the minute's sweep leaves time before the next one
PAGE = 200
MAX_PASSES = 3  # offers let lapse or declined in a row: then off the list (they are told)
WAITING, OFFERED, BOOKED, LEFT = "waiting", "offered", "booked", "left"
_SYSTEM = Actor(uid="waitlist", role="system", reason="waitlist")


class WaitlistEntryNotFoundError(NotFoundError):
    """This patient is not on the waitlist."""

    code = "waitlist_entry_not_found"


def _busy() -> Exception:
    return OverloadedError("the waitlist is busy right now; try again shortly")


class JoinWaitlist(BaseModel):
    """Where, what and when; `pesel` and `reason` for an agent acting for a caller."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float | None = Field(default=None, ge=49.0, le=55.0)
    lon: float | None = Field(default=None, ge=14.0, le=24.5)
    postcode: str | None = Field(default=None, pattern=r"^\d{2}-\d{3}$")
    radius_km: float = Field(default=30, gt=0, le=100)
    products: list[str] = Field(default_factory=list, max_length=5)
    date_from: date | None = None
    date_to: date | None = None
    pesel: str | None = Field(default=None, min_length=11, max_length=11)
    reason: str | None = Field(default=None, min_length=3, max_length=500)

    @model_validator(mode="after")
    def _where_and_when(self) -> JoinWaitlist:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon")
        if (self.lat is not None) == (self.postcode is not None):
            raise ValueError("give either lat and lon, or a postcode")
        if self.date_from and self.date_to and self.date_to < self.date_from:
            raise ValueError("date_to is before date_from")
        return self


def entry_id(patient_key: str) -> str:
    return hashlib.sha256(f"waitlist:{patient_key}".encode()).hexdigest()[:32]


@dataclass
class _Sweep:
    started: float
    settled: int = 0
    scanned: int = 0
    offered: int = 0
    skipped: int = 0


class WaitlistService:
    def __init__(
        self,
        units: Any,
        holds: Any,
        search: Callable[[], Any],
        vault: FieldVault,
        secret: bytes,
        notify: Callable[[dict[str, Any], dict[str, Any], datetime], dict[str, Any]] | None = None,
        *,
        county: Callable[[Any, Any], str | None] | None = None,
        offer_ttl: timedelta = OFFER_TTL,
        budget_s: float = SWEEP_BUDGET_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.units = units
        self.holds = holds
        self._search = search
        self.vault = vault
        self.secret = secret
        self.notify = notify or (lambda entry, hold, now: {"channel": "portal"})
        # The county an entry counts in for the expected wait (common/services/expected_wait.py).
        self.county = county or (lambda query, center: None)
        self.offer_ttl = offer_ttl
        self.budget_s = budget_s
        self.monotonic = monotonic

    # -- join, look, leave ---------------------------------------------------------------------
    def join(
        self,
        actor: Actor,
        pesel: str,
        body: JoinWaitlist,
        channel: str,
        now: datetime,
        idem: Any = None,
    ) -> StoredResponse:
        today = now.astimezone(WARSAW).date()
        parsed = parse_pesel(pesel, today)
        key = pesel_key(parsed, self.secret)
        the_id = entry_id(key)
        center = self._center(body)
        county = self.county(body, GeoPoint(*center))
        products = sorted(set(body.products))
        catalogue = self.holds.booking.rules_at(now).catalogue
        for product in products:
            catalogue.get(product)  # an unknown product: a clear 400, nothing written

        def attempt(uow: UnitOfWork) -> StoredResponse:
            found = uow.get(WAITLIST, the_id)
            if found is not None and found.data["status"] == OFFERED:
                # A seat is held for them right now: answer it first (kept as it is).
                return uow.respond(StoredResponse(200, {"entry": self._view(uow, found.data)}))
            kept = found.data if found is not None and found.data["status"] == WAITING else {}
            document = {
                "entry_id": the_id,
                "patient_key": key,
                "pesel_enc": self.vault.encrypt(parsed.value, _context(the_id)),
                "status": WAITING,
                # Fair order: the first joining keeps its place when the wishes change.
                "joined_at": kept.get("joined_at", now),
                "lat": center[0],
                "lon": center[1],
                "radius_km": body.radius_km,
                "county_id": county,
                "products": products,
                "date_from": body.date_from.isoformat() if body.date_from else None,
                "date_to": body.date_to.isoformat() if body.date_to else None,
                "channel": channel,
                "declined_slots": kept.get("declined_slots", []),
                "hold_id": None,
                "updated_at": now,
                "purge_at": now + KEEP,
            }
            uow.set(WAITLIST, the_id, document)
            uow.audit(actor, "waitlist.join", [], now, entry_id=the_id)
            return uow.respond(StoredResponse(201, {"entry": self._view(uow, document)}))

        return self.units.run(attempt, idem=idem, gave_up=_busy)

    def _center(self, body: JoinWaitlist) -> tuple[float, float]:
        if body.lat is not None and body.lon is not None:
            return body.lat, body.lon
        point = self._search()._center(SearchQuery(postcode=body.postcode))
        return point.lat, point.lon

    def view(self, patient_key: str) -> dict[str, Any]:
        reader = self.units.reader()
        found = reader.get(WAITLIST, entry_id(patient_key))
        if found is None or found.data["status"] == LEFT:
            raise WaitlistEntryNotFoundError()
        return {"entry": self._view(reader, found.data)}

    def _view(self, reader: UnitOfWork, entry: dict[str, Any]) -> dict[str, Any]:
        ahead = None
        if entry["status"] == WAITING:
            ahead = reader.count(
                WAITLIST, ("status", "==", WAITING), ("joined_at", "<", entry["joined_at"])
            )
        hold = reader.get(HOLDS, entry["hold_id"]) if entry.get("hold_id") else None
        return {
            "entry_id": entry["entry_id"],
            "status": entry["status"],
            "joined_at": _iso(entry["joined_at"]),
            "waiting_ahead": ahead,
            "where": {"lat": entry["lat"], "lon": entry["lon"], "radius_km": entry["radius_km"]},
            "products": entry["products"],
            "date_from": entry["date_from"],
            "date_to": entry["date_to"],
            "offer": hold_view(hold.data) if hold is not None else None,
        }

    def leave(
        self, actor: Actor, patient_key: str, now: datetime, idem: Any = None
    ) -> StoredResponse:
        the_id = entry_id(patient_key)

        def attempt(uow: UnitOfWork) -> StoredResponse:
            found = uow.get(WAITLIST, the_id)
            if found is None or found.data["status"] == LEFT:
                raise WaitlistEntryNotFoundError()
            fields = {"status": LEFT, "pesel_enc": None, "updated_at": now, "purge_at": now + KEEP}
            uow.update(WAITLIST, the_id, fields, if_version=found.version)
            uow.audit(actor, "waitlist.leave", [], now, entry_id=the_id)
            if found.data["status"] == OFFERED and found.data.get("hold_id"):
                hold_id = found.data["hold_id"]
                uow.after_commit(lambda: self._release(hold_id, now))
            return uow.respond(StoredResponse(200, {"entry": {"entry_id": the_id, **fields}}))

        return self.units.run(attempt, idem=idem, gave_up=_busy)

    def _release(self, hold_id: str, now: datetime) -> None:
        try:
            self.holds.release(hold_id, _SYSTEM, None, now)
        except DomainError as err:
            log.warning("waitlist hold not released yet", reason=err.code)  # it lapses anyway

    # -- the minute's sweep ------------------------------------------------------------------
    def match(self, now: datetime) -> dict[str, int]:
        sweep = _Sweep(self.monotonic())
        reader = self.units.reader()
        for doc in reader.query(WAITLIST, ("status", "==", OFFERED), limit=PAGE):
            sweep.settled += self._settle(doc, now)
        # Pages by the join time (two joining in the very same microsecond at a page's edge:
        # the second waits for the next minute's sweep).
        after: list[Any] = []
        while self.monotonic() - sweep.started < self.budget_s:
            page = reader.query(
                WAITLIST, ("status", "==", WAITING), *after, order_by="joined_at", limit=PAGE
            )
            for doc in page:
                if self.monotonic() - sweep.started >= self.budget_s:
                    break
                sweep.scanned += 1
                outcome = self._offer(doc, now)
                sweep.offered += outcome == "offered"
                sweep.skipped += outcome == "skipped"
            if len(page) < PAGE:
                break
            after = [("joined_at", ">", page[-1].data["joined_at"])]
        summary = {
            "settled": sweep.settled,
            "scanned": sweep.scanned,
            "offered": sweep.offered,
            "skipped": sweep.skipped,
        }
        if sweep.offered or sweep.settled:
            log.info("waitlist matched", **summary)
        return summary

    def _settle(self, doc: Document, now: datetime) -> int:
        """An offered entry whose hold is over: booked, or back in line (that slot excluded)."""
        entry = doc.data
        hold = self.units.reader().get(HOLDS, entry["hold_id"]) if entry.get("hold_id") else None
        status = hold.data["status"] if hold is not None else "expired"
        if status == "held":
            return 0
        fields: dict[str, Any] = {"updated_at": now, "hold_id": None, "purge_at": now + KEEP}
        if status == "booked":
            fields |= {"status": BOOKED, "pesel_enc": None}
        else:
            slots = [s["slot_id"] for s in (hold.data["seats"] if hold is not None else [])]
            passed = int(entry.get("passed", 0)) + 1
            fields |= {
                # Someone who lets offer after offer pass keeps seats from the next in line.
                "status": WAITING if passed < MAX_PASSES else LEFT,
                "declined_slots": [*entry.get("declined_slots", []), *slots][-50:],
                "passed": passed,
            }
            if passed >= MAX_PASSES:
                fields["pesel_enc"] = None

        def attempt(uow: UnitOfWork) -> None:
            uow.update(WAITLIST, doc.id, fields, if_version=doc.version)
            uow.audit(_SYSTEM, f"waitlist.{fields['status']}", [], now, entry_id=doc.id)

        try:
            self.units.run(attempt, gave_up=_busy)
        except DomainError:
            return 0  # changed meanwhile (the patient left): next minute
        return 1

    def _offer(self, doc: Document, now: datetime) -> str:
        entry = doc.data
        slot = self._find(entry, now)
        if slot is None:
            return "none"
        try:
            pesel = self.vault.decrypt(entry["pesel_enc"], _context(doc.id))
        except (VaultError, KeyError, TypeError):
            return "skipped"
        hold_id = hashlib.sha256(f"{doc.id}:{slot}:{entry['updated_at']}".encode()).hexdigest()
        command = BookAppointment(
            pesel=pesel, slot_id=slot, channel=entry["channel"], actor=_SYSTEM
        )
        try:
            held = self.holds.hold(
                command, now, ttl=self.offer_ttl, purpose="waitlist", hold_id=hold_id[:32]
            )
        except DependencyUnavailableError:
            raise
        except AlreadyBookedError:
            # Booked meanwhile by another channel: nothing left to wait for.
            self._close(doc, BOOKED, now)
            return "skipped"
        except DomainError as err:
            # Full meanwhile, or not eligible (yet): not this seat, perhaps a later one.
            log.info("waitlist offer not made", reason=err.code)
            return "skipped"
        hold = held.body["hold"]

        def attempt(uow: UnitOfWork) -> bool:
            current = uow.get(WAITLIST, doc.id)
            if current is None or current.data["status"] != WAITING:
                return False
            fields = {"status": OFFERED, "hold_id": hold["hold_id"], "updated_at": now}
            uow.update(WAITLIST, doc.id, fields, if_version=current.version)
            uow.audit(_SYSTEM, "waitlist.offer", [], now, entry_id=doc.id)
            return True

        if not self.units.run(attempt, gave_up=_busy):
            self._release(hold["hold_id"], now)  # they left meanwhile
            return "skipped"
        self._tell(doc.id, entry, hold, now)
        return "offered"

    def _close(self, doc: Document, status: str, now: datetime) -> None:
        def attempt(uow: UnitOfWork) -> None:
            fields = {"status": status, "pesel_enc": None, "updated_at": now,
                      "purge_at": now + KEEP}  # fmt: skip
            uow.update(WAITLIST, doc.id, fields, if_version=doc.version)
            uow.audit(_SYSTEM, f"waitlist.{status}", [], now, entry_id=doc.id)

        try:
            self.units.run(attempt, gave_up=_busy)
        except DomainError:
            pass  # changed meanwhile: the next sweep sees it as it is

    def _find(self, entry: dict[str, Any], now: datetime) -> str | None:
        """The nearest free seat that fits, earliest first at that point; not one declined."""
        search = self._search()
        today = now.astimezone(WARSAW).date()
        date_from = max(date.fromisoformat(entry["date_from"]) if entry["date_from"] else today,
                        today + timedelta(days=1))  # fmt: skip
        date_to = date.fromisoformat(entry["date_to"]) if entry["date_to"] else None
        if date_to is not None and date_to < date_from:
            return None
        declined = set(entry.get("declined_slots") or [])
        for product in entry["products"] or [None]:
            query = SearchQuery(
                lat=entry["lat"], lon=entry["lon"], radius_km=entry["radius_km"],
                product=product, date_from=date_from, date_to=date_to, limit=5,
            )  # fmt: skip
            try:
                items = search.search(query, now)["items"]
            except DependencyUnavailableError:
                raise
            except DomainError:
                return None
            for item in items:
                for slot in item["earliest_slots"]:
                    if slot["slot_id"] not in declined:
                        return slot["slot_id"]
        return None

    def _tell(self, the_id: str, entry: dict[str, Any], hold: dict[str, Any], now: datetime):
        try:
            fields = self.notify(entry, hold, now)
        except DomainError as err:
            log.warning("waitlist offer not sent", reason=err.code)
            return

        def attempt(uow: UnitOfWork) -> None:
            uow.update(WAITLIST, the_id, fields)

        try:
            self.units.run(attempt, gave_up=_busy)
        except DomainError:
            pass  # the portal shows the offer either way

    # -- TAK / NIE by SMS ------------------------------------------------------------------
    def answer_by_sms(self, phone_key: str, yes: bool, now: datetime) -> tuple[str, str] | None:
        from common.domain import sms_texts

        waiting = self.units.reader().query(
            WAITLIST, ("phone_key", "==", phone_key), ("status", "==", OFFERED), limit=1
        )
        if not waiting or not waiting[0].data.get("hold_id"):
            return None
        entry = waiting[0].data
        actor = Actor(uid="sms", role="patient")
        try:
            if yes:
                booked = self.holds.book(entry["hold_id"], actor, entry["patient_key"], now)
                first = booked.body["appointments"][0]
                return sms_texts.waitlist_booked(datetime.fromisoformat(first["starts_at"])), (
                    "waitlist_booked"
                )
            self.holds.release(entry["hold_id"], actor, entry["patient_key"], now)
            return sms_texts.waitlist_released(), "waitlist_released"
        except DomainError:
            return sms_texts.replan_closed(), "waitlist_closed"


def waitlist_sms(
    entry: dict[str, Any], hold: dict[str, Any], now: datetime, contacts: Any, secret: bytes
) -> dict[str, Any]:
    """The offer by SMS to the patient's verified number (one per hold), or the portal only."""
    from common.domain import sms_texts
    from common.services.notifications import phone_key, short_hash

    phone = contacts.phone_of(entry["patient_key"], now)
    if phone is None:
        return {"told": "portal"}
    first = hold["slots"][0]
    text = sms_texts.waitlist_offer(
        first["product"],
        datetime.fromisoformat(first["starts_at"]),
        datetime.fromisoformat(hold["expires_at"]),
    )
    notification_id = f"waitlist-{short_hash(hold['hold_id'])}"
    meta = {"kind": "waitlist_offer", "hold_id": hold["hold_id"]}
    contacts.sender.send_once(notification_id, phone, lambda: text, meta, now)
    return {"told": "sms", "phone_key": phone_key(phone, secret)}


def _context(the_id: str) -> str:
    return f"waitlist:{the_id}"


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value
