"""Expected time to a first-dose slot, per cohort and county: measured without a hot document,
computed where it is shown (the formula and its limits: common/domain/wait_estimate.py).

- **The booking rate** is measured by `measure_booking_rates` (Cloud Scheduler, every five
  minutes): for each county, count aggregations of the appointments created in the last 24 h
  at its points (`point_id in [...]` in chunks of 30, `created_at >=`; an appointment names its
  point, and the point directory names the point's county), plus the county's waitlist
  length. It writes one small document per county, `wait_estimates/{county_id}`, each written
  once a run: nothing is written per booking, and no document more than once in five minutes.
- **The free seats** come from search's in-memory view (`AvailabilityView`): the county's
  points, the days ahead, the products the cohort may have, and reserved capacity respected
  (seats kept for groups a cohort is not wholly in are left out: common/domain/reservations.py).
- **Where it is shown**: to admins (`GET /v1/admin/expected-wait`, a table of all counties and
  cohorts, or one), and in a patient's search answer when nothing is near (`expected_wait`,
  for the county of the searched postcode or of the nearest point, and the patient's cohort).
  A search instance reads a county's measurement once a minute at most (ESTIMATE_CACHE_S).

**The waitlist** (common/services/waitlist.py) keeps each entry's `county_id` (the county of
its postcode, or of the point nearest its place: `county_of`); `waitlist_in_collection` counts
a county's entries still `waiting` (a count aggregation), through `WaitlistLength`, a function
`(reader, county_id, now) -> int`. The count runs in the scheduled job, never per search.
"""

from __future__ import annotations

import bisect
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from common import structured_log as log
from common.adapters.firestore_store import APPOINTMENTS
from common.domain.calendar import WARSAW, SlotRef, day_key
from common.domain.eligibility import age_on
from common.domain.reservations import SeatRule, outsider_free
from common.domain.rulebook import RuleBook
from common.domain.wait_estimate import estimate_wait
from common.geo import GeoPoint, haversine_km, load_postcode_directory, normalize_postcode
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner

WAIT_ESTIMATES = "wait_estimates"
WAITLIST = "waitlist"
RATE_WINDOW = timedelta(hours=24)
ESTIMATE_CACHE_S = 60.0
RESULT_CACHE_S = 5.0
HORIZON_DAYS = 60  # free seats counted this far ahead
LEAD_DAYS = 14  # a seat that appears now lies about this far ahead (calendars published)
IN_CHUNK = 30  # Firestore's `in` takes at most 30 values
WRITE_CHUNK = 400
MAX_AGE = 120


class WaitlistLength(Protocol):
    def __call__(self, reader: UnitOfWork, county_id: str, now: datetime) -> int: ...


def waitlist_in_collection(reader: UnitOfWork, county_id: str, now: datetime) -> int:
    """The default waitlist length: `waitlist` documents of the county still waiting."""
    return reader.count(WAITLIST, ("county_id", "==", county_id), ("status", "==", "waiting"))


def no_waitlist(reader: UnitOfWork, county_id: str, now: datetime) -> int:
    return 0


def county_id(voivodeship: str, county: str) -> str:
    """A document id for a county (names repeat across voivodeships: both are in it)."""

    def slug(text: str) -> str:
        plain = unicodedata.normalize("NFKD", text.replace("ł", "l").replace("Ł", "L"))
        ascii_only = plain.encode("ascii", "ignore").decode().lower()
        return "-".join("".join(c if c.isalnum() else " " for c in ascii_only).split())

    return f"{slug(voivodeship)}--{slug(county)}"


# -- cohorts ---------------------------------------------------------------------------------
def cohort_key(born_from: int | None, born_to: int | None) -> str:
    return f"{born_from or ''}-{born_to or ''}"


def cohorts(rule_book: RuleBook, now: datetime) -> list[tuple[str, int | None, int | None, Any]]:
    """(key, born_from, born_to, opens_at) of each cohort of the rules in force (one key once)."""
    found: dict[str, tuple[str, int | None, int | None, Any]] = {}
    for c in rule_book.rules_at(now).cohorts.cohorts:
        key = cohort_key(c.born_from, c.born_to)
        found.setdefault(key, (key, c.born_from, c.born_to, c.opens_at))
    return list(found.values())


def cohort_of(rule_book: RuleBook, birth_date: date, now: datetime) -> str | None:
    """The cohort a person belongs to: of those covering their birth year, the one that opens
    first (as the rules read overlapping ranges)."""
    rules = rule_book.rules_at(now).cohorts
    covering = [c for c in rules.cohorts if c.covers(birth_date.year)]
    if not covering:
        return None
    first = min(covering, key=lambda c: _local(c.opens_at))
    return cohort_key(first.born_from, first.born_to)


def _local(moment: datetime) -> datetime:
    """A cohort's opening: wall-clock Warsaw time when naive (as the rules' timezone says)."""
    return moment.replace(tzinfo=WARSAW) if moment.tzinfo is None else moment


class ExpectedWaitQuery(BaseModel):
    """GET /v1/admin/expected-wait: every county and cohort, or those named."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    county: str | None = Field(default=None, min_length=1, max_length=80)
    voivodeship: str | None = Field(default=None, min_length=1, max_length=40)
    cohort: str | None = Field(default=None, pattern=r"^\d{0,4}-\d{0,4}$")


# -- the scheduled measurement ----------------------------------------------------------------
class BookingRateMeter:
    """Counts each county's bookings of the last `window` and its waitlist; one document per
    county (`wait_estimates/{county_id}`), written once a run."""

    def __init__(
        self,
        units: UnitOfWorkRunner,
        points: Callable[[], Iterable[dict[str, Any]]],
        waitlist: WaitlistLength = waitlist_in_collection,
        window: timedelta = RATE_WINDOW,
    ) -> None:
        self.units = units
        self.points = points  # the directory's entries (point_id, county, voivodeship)
        self.waitlist = waitlist
        self.window = window

    def measure(self, now: datetime) -> dict[str, Any]:
        counties: dict[str, tuple[str, str, list[str]]] = {}
        for point in self.points():
            if not point.get("county") or not point.get("voivodeship"):
                continue
            key = county_id(point["voivodeship"], point["county"])
            counties.setdefault(key, (point["voivodeship"], point["county"], []))[2].append(
                point["point_id"]
            )
        reader = self.units.reader()
        since = now - self.window
        documents: list[tuple[str, dict[str, Any]]] = []
        for key, (voivodeship, county, point_ids) in sorted(counties.items()):
            ordered = sorted(point_ids)
            booked = sum(
                reader.count(
                    APPOINTMENTS,
                    ("point_id", "in", ordered[i : i + IN_CHUNK]),
                    ("created_at", ">=", since),
                )
                for i in range(0, len(ordered), IN_CHUNK)
            )
            days = self.window / timedelta(days=1)
            documents.append(
                (
                    key,
                    {
                        "county_id": key,
                        "county": county,
                        "voivodeship": voivodeship,
                        "points": len(ordered),
                        "bookings": booked,
                        "window_hours": self.window / timedelta(hours=1),
                        "rate_per_day": booked / days,
                        "waitlist": int(self.waitlist(reader, key, now)),
                        "measured_at": now,
                    },
                )
            )
        for start in range(0, len(documents), WRITE_CHUNK):
            chunk = documents[start : start + WRITE_CHUNK]

            def attempt(uow: UnitOfWork, chunk: list[tuple[str, dict[str, Any]]] = chunk) -> None:
                for key, data in chunk:
                    uow.set(WAIT_ESTIMATES, key, data)

            self.units.run(attempt, gave_up=lambda: RuntimeError("wait estimates not written"))
        return {
            "counties": len(documents),
            "bookings": sum(d["bookings"] for _, d in documents),
            "measured_at": now.isoformat(),
        }


# -- the estimate, where it is shown ----------------------------------------------------------
class ExpectedWaitService:
    def __init__(
        self,
        units: UnitOfWorkRunner,
        rule_book: RuleBook,
        search: Callable[[], Any],
        reservations: Any = None,
        *,
        lead_days: int = LEAD_DAYS,
        horizon_days: int = HORIZON_DAYS,
        ttl_s: float = ESTIMATE_CACHE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.units = units
        self.rule_book = rule_book
        self.search = search  # the SearchService: its directory and in-memory view
        self.reservations = reservations
        self.lead_days = lead_days
        self.horizon_days = horizon_days
        self.ttl_s = ttl_s
        self.monotonic = monotonic
        self._measured: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._results: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}
        self._counties: tuple[int, dict[str, tuple[str, str, list[Any]]]] | None = None
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Forget the measurements and estimates read so far (tests; a fresh instance)."""
        self._measured.clear()
        self._results.clear()

    # -- inputs -----------------------------------------------------------------------------
    def measured(self, key: str) -> dict[str, Any] | None:
        """The county's last measurement, read at most once every `ttl_s` per instance."""
        tick = self.monotonic()
        cached = self._measured.get(key)
        if cached is None or tick - cached[0] > self.ttl_s:
            found = self.units.reader().get(WAIT_ESTIMATES, key)
            cached = (tick, found.data if found is not None else None)
            self._measured[key] = cached
        return cached[1]

    def counties(self) -> dict[str, tuple[str, str, list[Any]]]:
        """county_id -> (voivodeship, county, directory entries), per directory load."""
        directory = self.search().directory
        entries = directory.entries()
        with self._lock:
            if self._counties is None or self._counties[0] != directory.loads:
                grouped: dict[str, tuple[str, str, list[Any]]] = {}
                for entry in entries:
                    county, voivodeship = (
                        entry.summary.get("county"),
                        entry.summary.get("voivodeship"),
                    )
                    if county and voivodeship:
                        key = county_id(voivodeship, county)
                        grouped.setdefault(key, (voivodeship, county, []))[2].append(entry)
                self._counties = (directory.loads, grouped)
            return self._counties[1]

    def free_by_day(
        self,
        entries: Iterable[Any],
        products: frozenset[str],
        rule_of: Callable[[SlotRef, int], SeatRule | None],
        now: datetime,
        unreserved: dict[str, list[int]] | None = None,
    ) -> list[int]:
        """Free seats a person may book per day from today, at these points, of these
        products (from search's view: a few seconds old; at points with reservations in
        force, bounded as search bounds them). `unreserved`: `unreserved_by_product` of the
        same points, when the caller has it already."""
        entries = list(entries)
        if unreserved is None:
            unreserved = self.unreserved_by_product(entries, now)
        per_day = [0] * self.horizon_days
        for product in products:
            for offset, seats in enumerate(unreserved.get(product, ())):
                per_day[offset] += seats
        for entry in entries:
            if self._reserved_at(entry.point_id, now):
                for product in products:
                    for offset, ref, cap, free in self._slots(entry.point_id, product, now):
                        per_day[offset] += outsider_free(free, rule_of(ref, cap))
        return per_day

    def unreserved_by_product(self, entries: Iterable[Any], now: datetime) -> dict[str, list[int]]:
        """Per product, the free seats per day at those of the points with no reservation in
        force (the same for every cohort: computed once per county)."""
        found: dict[str, list[int]] = {}
        for entry in entries:
            if self._reserved_at(entry.point_id, now):
                continue
            index = self._indexes().get(entry.point_id)
            for product in index.days if index is not None else ():
                if product is None:
                    continue
                per_day = found.setdefault(product, [0] * self.horizon_days)
                for offset, _, _, free in self._slots(entry.point_id, product, now, whole=True):
                    per_day[offset] += free
        return found

    def _reserved_at(self, point_id: str, now: datetime) -> bool:
        return self.reservations is not None and bool(self.reservations.at_point(point_id, now))

    def _indexes(self) -> dict[str, Any]:
        view = self.search().view
        view.refresh_if_due()
        return view.indexes

    def _slots(
        self, point_id: str, product: str, now: datetime, whole: bool = False
    ) -> Iterable[tuple[int, Any, int, int]]:
        """(day offset, slot ref, capacity, free) of the point's free slots of a product in
        the horizon; with `whole`, a day after today comes as one row (ref None) of its total."""
        index = self._indexes().get(point_id)
        found = index.days.get(product) if index is not None else None
        if found is None:
            return
        keys, totals, rows = found
        local_now = now.astimezone(WARSAW)
        today = local_now.date()
        today_key, now_hhmm = day_key(today), f"{local_now:%H%M}"
        last_key = day_key(today + timedelta(days=self.horizon_days - 1))
        for position in range(bisect.bisect_left(keys, today_key), len(keys)):
            dkey = keys[position]
            if dkey > last_key:
                break
            offset = (date(int(dkey[1:5]), int(dkey[5:7]), int(dkey[7:9])) - today).days
            if whole and dkey != today_key:
                yield offset, None, 0, totals[position]
                continue
            for skey, cap, free in rows[position]:
                if dkey == today_key and skey[:4] <= now_hhmm:
                    continue
                yield offset, SlotRef.from_keys(point_id, dkey, skey), cap, free

    def products_for_ages(self, youngest: int, oldest: int, now: datetime) -> frozenset[str]:
        catalogue = self.rule_book.rules_at(now).catalogue
        ages = range(max(0, youngest), min(MAX_AGE, oldest) + 1)
        return frozenset(p.code for p in catalogue.products if any(p.allows_age(a) for a in ages))

    # -- the estimate -----------------------------------------------------------------------
    def estimate(
        self,
        key: str,
        cohort: tuple[str, int | None, int | None, Any] | None,
        now: datetime,
        *,
        birth_date: date | None = None,
        product: str | None = None,
        unreserved: dict[str, list[int]] | None = None,
    ) -> dict[str, Any]:
        """One county's estimate for a cohort (or, with `birth_date`, for that person)."""
        voivodeship, county, entries = self.counties().get(key, ("", "", []))
        today = now.astimezone(WARSAW).date()
        opens_in = 0
        if birth_date is not None:
            age = age_on(birth_date, today) if birth_date <= today else 0
            products = self.products_for_ages(age, age, now)
            book = self.reservations

            def rule_of(ref: SlotRef, cap: int) -> SeatRule | None:
                return book.rule(ref, cap, birth_date, now) if book is not None else None
        else:
            born_from, born_to = (cohort[1], cohort[2]) if cohort is not None else (None, None)
            youngest = 0 if born_to is None else today.year - born_to - 1
            oldest = MAX_AGE if born_from is None else today.year - born_from
            products = self.products_for_ages(youngest, oldest, now)
            book = self.reservations

            def rule_of(ref: SlotRef, cap: int) -> SeatRule | None:
                if book is None:
                    return None
                return book.cohort_rule(ref, cap, born_from, born_to, now)

        if cohort is not None and cohort[3] is not None:
            opens_at = _local(cohort[3])
            if opens_at > now:
                opens_in = (opens_at.astimezone(WARSAW).date() - today).days
        if product is not None:
            products = products & {product}
        measured = self.measured(key) or {}
        estimate = estimate_wait(
            self.free_by_day(entries, products, rule_of, now, unreserved),
            float(measured.get("rate_per_day") or 0.0),
            int(measured.get("waitlist") or 0),
            opens_in_days=opens_in,
            lead_days=self.lead_days,
        )
        at = measured.get("measured_at")
        return {
            "county_id": key,
            "county": county or measured.get("county"),
            "voivodeship": voivodeship or measured.get("voivodeship"),
            "cohort": cohort[0] if cohort is not None else None,
            "measured_at": at.isoformat() if hasattr(at, "isoformat") else None,
        } | estimate.to_api()

    def for_search(
        self, query: Any, center: GeoPoint, birth_date: date | None, now: datetime
    ) -> dict[str, Any] | None:
        """For a search that found nothing near: the county of the searched postcode (or of
        the nearest point), the patient's cohort. Kept RESULT_CACHE_S per county and person.
        An estimate that cannot be made (its measurement unreadable) is left out: the search
        itself, answered from memory, still answers."""
        try:
            return self._for_search(query, center, birth_date, now)
        except Exception as err:  # noqa: BLE001 (an extra of the answer, never its failure)
            log.warning("expected wait left out", fault=type(err).__name__)
            return None

    def _for_search(
        self, query: Any, center: GeoPoint, birth_date: date | None, now: datetime
    ) -> dict[str, Any] | None:
        key = self.county_of(query, center)
        if key is None:
            return None
        memo = (key, birth_date, query.product, now.astimezone(WARSAW).date())
        tick = self.monotonic()
        cached = self._results.get(memo)
        if cached is not None and tick - cached[0] <= RESULT_CACHE_S:
            return cached[1]
        cohort = None
        if birth_date is not None:
            wanted = cohort_of(self.rule_book, birth_date, now)
            cohort = next((c for c in cohorts(self.rule_book, now) if c[0] == wanted), None)
        found = self.estimate(key, cohort, now, birth_date=birth_date, product=query.product)
        if len(self._results) > 10_000:
            self._results.clear()
        self._results[memo] = (tick, found)
        return found

    def county_of(self, query: Any, center: GeoPoint) -> str | None:
        """The county of a postcode, else of the point nearest `center` (the waitlist keeps it
        on each entry, so that a county's waitlist is counted without a scan)."""
        if getattr(query, "postcode", None):
            info = load_postcode_directory().lookup(normalize_postcode(query.postcode))
            if info is not None:
                return county_id(info.voivodeship, info.county)
        nearest = min(
            (e for e in self.search().directory.entries() if e.summary.get("county")),
            key=lambda e: haversine_km(center, e.location),
            default=None,
        )
        if nearest is None:
            return None
        return county_id(nearest.summary["voivodeship"], nearest.summary["county"])

    def table(self, query: ExpectedWaitQuery, now: datetime) -> dict[str, Any]:
        """Every county (or those named) x every cohort of the rules in force (or one)."""
        rows = []
        wanted = [c for c in cohorts(self.rule_book, now) if query.cohort in (None, c[0])]
        for key, (voivodeship, county, entries) in sorted(self.counties().items()):
            if query.county is not None and county.casefold() != query.county.casefold():
                continue
            if query.voivodeship is not None and voivodeship != query.voivodeship:
                continue
            unreserved = self.unreserved_by_product(entries, now)  # once per county
            rows.extend(self.estimate(key, cohort, now, unreserved=unreserved) for cohort in wanted)
        return {"generated_at": now.isoformat(), "rows": rows}
