"""Impact dry runs: which live bookings a change would invalidate or unseat, before it is made.

Issue 15, item 1. An admin gives a change exactly as the real one would be given, and gets
the bookings (status ``booked``, both doses of a series) it would break, with the reasons
(``cohort``, ``age``, ``interval``, ``product``, ``capacity``, ``supply``; ``unknown`` for a
booking whose birth date is not stored: never counted as valid), counted per reason, county
(the point's), point, product and day, and a downloadable list keyed by appointment id. The
decisions are common/domain/impact.py's, the same functions the real paths call
(StaffCalendarService for a slot, SdsSync for supply, BookingService's checks for rules), so
a dry run cannot disagree with the change it previews. It writes nothing but its own job.

The changes (``CreateImpactJob.change``, discriminated by ``kind``):
- ``rules``: a cohorts and/or vaccines file not yet in force (the YAML text, or the same as a
  JSON object) and ``effective_from``, the day of its line in rules/index.yaml. Judged: every
  live booking on or after that day not yet started, under the new version at the moment it
  takes effect (or now, if that has passed).
- ``capacity``: a point's slot and ``change`` (the body of PATCH .../slots/{slot_id}:
  ``capacity`` and/or ``blocked``) or ``remove: true`` (DELETE). Refused up front, as the real
  change would be, when the slot does not exist or has started.
- ``supply``: deliveries as SDS would send them to ``sync_sds`` (a cut, a cancellation with a
  newer ``sequence``): the weeks they fall in are reconciled in memory, in supply-id order.

A job, not a request, because the target is 60,000 affected bookings over 7,000 points:
``POST /v1/admin/impact`` validates, creates ``impact_jobs/{job_id}`` (status ``queued``) with
its audit entry and idempotency answer in one commit, then queues a Cloud Task (queue
``impact``) for ``run_impact_job``. A worker runs pages for a slice (``SLICE_S``), then queues
the next slice. A page is one ordered query of live bookings (rules: ``status == booked``
ordered by ``series_id``, a series never split across pages), or a few supply weeks, or the
one slot; its affected rows go to ``impact_cases/{job_id}_{page}`` and the job's cursor and
counts move in the SAME commit, with the job's version as precondition. So a worker killed
at any point resumes at the cursor (its task is retried; a job whose lease ran out is queued
again by ``resume_impact_jobs`` every minute), and two workers on one job cannot both commit
a page: the loser stops. The job document is written once a page, at most once a second
(``MIN_PAGE_INTERVAL_S``), and holds the counts, never a case.

Results are kept 30 days (``REPORT_KEEP``; TTL on ``expires_at``, docs/retention.md). No PESEL
anywhere: rows name the appointment, the series and the keyed patient id (the list served to
admins leaves even that out), never a birth date.

For the re-plan (item 2): ``affected_cases(units, rule_book, change, as_of)`` lists the cases
of a change synchronously, and ``ImpactJobs.cases(job_id)`` reads a dry run's back, both as
``common.domain.impact.AffectedCase``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

import yaml
from google.api_core import exceptions as gexc
from google.cloud import firestore, tasks_v2
from google.cloud.firestore_v1.field_path import FieldPath
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from common import structured_log as log
from common.adapters.firestore_store import (
    APPOINTMENTS,
    AVAILABILITY,
    AVAILABILITY_DELTAS,
    POINT_DIRECTORY,
    RPC,
    SEATS,
    VACCINATIONS,
)
from common.adapters.sds_client import SdsDelivery
from common.domain.appointments import Appointment, AppointmentStatus
from common.domain.calendar import WARSAW, SlotRef
from common.domain.eligibility import CohortRules, PreviousDose
from common.domain.errors import (
    DependencyUnavailableError,
    DomainError,
    InvalidStateTransitionError,
    NotFoundError,
    OverloadedError,
    SlotNotFoundError,
    ValidationFailedError,
)
from common.domain.impact import (
    CAPACITY,
    SUPPLY,
    AffectedCase,
    PageResult,
    Place,
    SlotTarget,
    add_counts,
    build_case,
    case_rows,
    cases_from_rows,
    change_target,
    count_cases,
    delivery_doses,
    displaced_by,
    empty_counts,
    goes_with,
    in_scope,
    is_stale,
    judge_series,
    judgment_moment,
    needs_history,
    newest_deliveries,
    proposed_rule_book,
    remove_target,
    seat_holder,
    supply_budget,
    supply_cuts,
    supply_displaced,
    supply_group,
    week_supply_slots,
    whole_series,
    with_pending,
)
from common.domain.rulebook import RuleBook, RuleSet
from common.domain.slots import SeatHolder
from common.domain.supply import allocate
from common.domain.vaccines import VaccineCatalogue
from common.services.idempotency import IdempotencyScope, StoredResponse
from common.services.point_access import read_point
from common.services.sds_sync import DELIVERIES, supply_id
from common.services.sds_sync import SUPPLY as SUPPLY_COLLECTION
from common.services.staff_calendar import ChangeSlotRequest
from common.services.unit_of_work import ONCE, Document, UnitOfWork, UnitOfWorkRunner

IMPACT_JOBS = "impact_jobs"
IMPACT_CASES = "impact_cases"
IMPACT_QUEUE = "impact"
# Reports are read within days of the change they preview; a month covers its follow-up.
REPORT_KEEP = timedelta(days=30)
PAGE_SIZE = 1000  # live bookings per page of a rules job (a chunk of rows stays < 1 MiB)
GROUPS_PER_PAGE = 10  # supply weeks (point, product, ISO week) per page of a supply job
SLICE_S = 240.0  # a worker's pages per task, well inside the task's 10-minute deadline
MIN_PAGE_INTERVAL_S = 1.0  # the job document: at most one write a second
LEASE = timedelta(minutes=10)  # no page for this long: the worker is gone, queue it again
START_GRACE = timedelta(minutes=2)  # a new job's first task should have started by then
RESUME_PAGE = 50
CHUNKS_PER_READ = 20
MAX_DELIVERIES = 200
MAX_RULES_TEXT = 60_000
MAX_PENDING_DELTAS = 2000
HISTORY_IN = 30  # Firestore's limit of values in an `in` filter
TASKS_TIMEOUT_S = 10.0
FINISHED = ("done", "failed")
BOOKED = AppointmentStatus.BOOKED.value
_JOB_ID = re.compile(r"[0-9a-f]{32}")
CSV_COLUMNS = (
    "appointment_id",
    "series_id",
    "verdict",
    "reasons",
    "point_id",
    "county",
    "voivodeship",
    "product",
    "day",
    "dose",
    "dose_kind",
    "slot_id",
)
_TASKS_FAULTS = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.RetryError,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.Unknown,
)


class ImpactJobNotFoundError(NotFoundError):
    """No impact job with this id."""

    code = "impact_job_not_found"


class _Lost(Exception):
    """Another worker committed this job's page first (or the job is gone)."""


def _busy() -> Exception:
    return OverloadedError("impact jobs are busy right now; retry shortly with the same key")


# -- the change, as the real one is given ------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class _NoAliases(yaml.SafeLoader):
    """YAML without anchors and aliases: a small text must not expand into a huge document."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases are not accepted")
        return super().compose_node(parent, index)


def _rules_file(value: Any) -> Any:
    """A rules file as its YAML text, or already as an object (JSON)."""
    if not isinstance(value, str):
        return value
    if len(value) > MAX_RULES_TEXT:
        raise ValueError(f"a rules file is at most {MAX_RULES_TEXT} characters")
    try:
        loaded = yaml.load(value, Loader=_NoAliases)  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, RecursionError, ValueError):
        raise ValueError("not a valid YAML rules file") from None
    if not isinstance(loaded, dict):
        raise ValueError("a rules file is a YAML mapping")
    return loaded


class RulesChange(_Body):
    """A rules version not yet in force: its file(s), and the day of its line in the index."""

    kind: Literal["rules"]
    effective_from: date
    cohorts: CohortRules | None = None
    vaccines: VaccineCatalogue | None = None

    @field_validator("cohorts", "vaccines", mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        return _rules_file(value)

    @model_validator(mode="after")
    def _something(self) -> RulesChange:
        if self.cohorts is None and self.vaccines is None:
            raise ValueError("give 'cohorts', 'vaccines' or both")
        return self


class CapacityChange(_Body):
    """A slot's change as staff give it: PATCH's body (`change`), or DELETE (`remove`)."""

    kind: Literal["capacity"]
    point_id: str = Field(pattern=r"^[a-z0-9-]{1,40}$")
    slot_id: str = Field(min_length=1, max_length=120)
    change: ChangeSlotRequest | None = None
    remove: bool = False

    @model_validator(mode="after")
    def _one(self) -> CapacityChange:
        if (self.change is None) == (not self.remove):
            raise ValueError("give either 'change' (as PATCH of the slot) or 'remove': true")
        return self


class ExpectedDelivery(SdsDelivery):
    """A delivery as SDS sends it to sync_sds (a newer `sequence` replaces an older one)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    delivery_id: str = Field(min_length=1, max_length=100)
    point_id: str = Field(pattern=r"^[a-z0-9-]{1,40}$")
    product: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    doses: int = Field(gt=0, le=1_000_000)
    sequence: int = Field(ge=1, le=10**15)


class SupplyChange(_Body):
    """An expected SDS shortfall: the deliveries SDS would send."""

    kind: Literal["supply"]
    deliveries: list[ExpectedDelivery] = Field(min_length=1, max_length=MAX_DELIVERIES)


Change = RulesChange | CapacityChange | SupplyChange
ImpactChange = Annotated[Change, Field(discriminator="kind")]
_CHANGE = TypeAdapter(ImpactChange)


class CreateImpactJob(_Body):
    change: ImpactChange


def parse_change(data: Mapping[str, Any]) -> Change:
    return _CHANGE.validate_python(dict(data))


def supply_groups(change: SupplyChange) -> list[tuple[str, str, str]]:
    """The (point, product, ISO week) budgets the deliveries touch, in supply-id order (the
    order sync_sds reconciles them in)."""
    groups = {supply_group(d) for d in newest_deliveries(change.deliveries).values()}
    return sorted(groups, key=lambda g: supply_id(*g))


def change_summary(change: Change, as_of: datetime) -> dict[str, Any]:
    if isinstance(change, RulesChange):
        return {
            "kind": "rules",
            "effective_from": change.effective_from.isoformat(),
            "cohorts_version": change.cohorts.version if change.cohorts else None,
            "vaccines_version": change.vaccines.version if change.vaccines else None,
            "judged_at": judgment_moment(as_of, change.effective_from).isoformat(),
        }
    if isinstance(change, CapacityChange):
        body = change.change.model_dump(exclude_none=True) if change.change else {}
        return {
            "kind": "capacity",
            "point_id": change.point_id,
            "slot_id": change.slot_id,
            "remove": change.remove,
            **body,
        }
    return {
        "kind": "supply",
        "deliveries": len(change.deliveries),
        "weeks": [supply_id(*g) for g in supply_groups(change)],
    }


# -- the scanner: one page of a change, read-only -------------------------------------------------


@dataclass
class Context:
    """What a worker reads once: the points' counties, and a rules change's rules."""

    places: dict[str, Place]
    rules: RuleSet | None = None


def _birth_date(data: Mapping[str, Any]) -> date | None:
    value = data.get("birth_date")
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


class ImpactScanner:
    """Reads what a change would touch and decides, page by page, with the domain's functions.
    Writes nothing."""

    def __init__(
        self,
        units: UnitOfWorkRunner,
        rule_book: RuleBook,
        *,
        page_size: int = PAGE_SIZE,
        groups_per_page: int = GROUPS_PER_PAGE,
    ) -> None:
        if page_size < 3:
            raise ValueError("a page holds at least two series")
        self.units = units
        self.rule_book = rule_book
        self.page_size = page_size
        self.groups_per_page = groups_per_page

    # -- once per worker ----------------------------------------------------------------------
    def context(self, change: Change, as_of: datetime) -> Context:
        reader = self.units.reader()
        places: dict[str, Place] = {}
        for chunk in reader.query(POINT_DIRECTORY):
            for entry in chunk.data.get("entries") or []:
                places[str(entry.get("point_id"))] = Place(
                    entry.get("county"), entry.get("voivodeship")
                )
        rules = None
        if isinstance(change, RulesChange):
            book = self.proposed(change)
            rules = book.rules_at(judgment_moment(as_of, change.effective_from))
        return Context(places, rules)

    def proposed(self, change: RulesChange) -> RuleBook:
        return proposed_rule_book(
            self.rule_book, change.effective_from, cohorts=change.cohorts, vaccines=change.vaccines
        )

    # -- validation, as the real change would refuse -------------------------------------------
    def validate(self, change: Change, now: datetime) -> None:
        if isinstance(change, RulesChange):
            self._validate_rules(change, now)
        elif isinstance(change, CapacityChange):
            self.capacity_plan(self.units.reader(), change, now)

    def _validate_rules(self, change: RulesChange, now: datetime) -> None:
        today = now.astimezone(WARSAW).date()
        if change.effective_from < today:
            raise ValidationFailedError(
                "a rules version not yet in force takes effect today or later",
                details={"effective_from": change.effective_from.isoformat()},
            )
        if change.effective_from > today + timedelta(days=2 * 366):
            raise ValidationFailedError("effective_from is at most two years ahead")
        kinds = (
            ("cohorts", change.cohorts, self.rule_book.cohort_versions),
            ("vaccines", change.vaccines, self.rule_book.catalogue_versions),
        )
        for kind, new, versions in kinds:
            if new is None:
                continue
            if any(v.version == new.version for _, v in versions):
                raise ValidationFailedError(
                    f"{kind} version {new.version} exists: a rule change is a new version",
                    details={"kind": kind, "version": new.version},
                )
            if any(start == change.effective_from for start, _ in versions):
                raise ValidationFailedError(
                    f"a {kind} version already takes effect on that day",
                    details={"kind": kind, "effective_from": change.effective_from.isoformat()},
                )

    # -- a page -----------------------------------------------------------------------------
    def page(
        self,
        change: Change,
        cursor: str | None,
        as_of: datetime,
        context: Context,
        prior: Mapping[str, str] | None = None,
    ) -> PageResult:
        """One page of the change's impact. ``prior``: appointment id -> slot id of the rows
        earlier pages listed (a supply week frees the seats earlier weeks' cuts cancelled)."""
        reader = self.units.reader()
        if isinstance(change, RulesChange):
            return self._rules_page(reader, change, cursor, as_of, context)
        if isinstance(change, CapacityChange):
            return self._capacity_page(reader, change, as_of, context)
        return self._supply_page(reader, change, cursor, as_of, context, dict(prior or {}))

    # -- rules ----------------------------------------------------------------------------------
    def _rules_page(
        self,
        reader: UnitOfWork,
        change: RulesChange,
        cursor: str | None,
        as_of: datetime,
        context: Context,
    ) -> PageResult:
        where: list[tuple[str, str, Any]] = [("status", "==", BOOKED)]
        if cursor:
            where.append(("series_id", ">", cursor))
        docs = reader.query(APPOINTMENTS, *where, order_by="series_id", limit=self.page_size)
        keep, last = whole_series([str(d.data.get("series_id", "")) for d in docs], self.page_size)
        docs = docs[:keep]
        series: dict[str, list[tuple[Appointment, date | None]]] = {}
        for doc in docs:
            appointment = Appointment.model_validate(doc.data)
            series.setdefault(appointment.series_id, []).append(
                (appointment, _birth_date(doc.data))
            )
        assert context.rules is not None
        at = judgment_moment(as_of, change.effective_from)
        plans = []
        for members in series.values():
            live = sorted((a for a, _ in members), key=lambda a: (a.dose_number, a.starts_at))
            judged = [a for a in live if in_scope(a, as_of, change.effective_from)]
            earlier = [a for a in live if a not in judged]
            birth = next((b for _, b in members if b is not None), None)
            plans.append((live, judged, earlier, birth))
        histories = self._histories(
            reader, {live[0].patient_key for live, judged, _, _ in plans if needs_history(judged)}
        )
        result = PageResult(scanned=len(docs), last=last)
        for live, judged, earlier, birth in plans:
            result.judged += len(judged)
            if not judged:
                continue
            history: list[PreviousDose] = []
            if needs_history(judged):
                history = [*histories.get(live[0].patient_key, []), *_as_given(earlier)]
            verdicts = judge_series(
                judged, birth_date=birth, rules=context.rules, at=at, history=history
            )
            case = build_case(judged, verdicts, context.places)
            if case is not None:
                result.cases.append(case)
        result.cursor = str(docs[-1].data["series_id"]) if docs else cursor
        return result

    @staticmethod
    def _histories(reader: UnitOfWork, keys: set[str]) -> dict[str, list[PreviousDose]]:
        """The vaccinations of these patients, a query per 30 of them."""
        found: dict[str, list[PreviousDose]] = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), HISTORY_IN):
            batch = ordered[start : start + HISTORY_IN]
            for doc in reader.query(VACCINATIONS, ("patient_key", "in", batch)):
                found.setdefault(str(doc.data["patient_key"]), []).append(
                    PreviousDose.model_validate(doc.data["dose"])
                )
        return found

    # -- one slot's capacity ---------------------------------------------------------------------
    def capacity_plan(
        self, reader: UnitOfWork, change: CapacityChange, now: datetime
    ) -> tuple[SlotRef, int, SlotTarget, dict[int, SeatHolder]]:
        """What StaffCalendarService._apply reads and decides before its commit, refusing the
        same way (no such point or slot: 404; started: 409)."""
        read_point(reader, change.point_id)
        try:
            ref = SlotRef.parse(change.slot_id)
        except ValidationFailedError:
            raise SlotNotFoundError() from None
        if ref.point_id != change.point_id:
            raise SlotNotFoundError()
        found = reader.get(AVAILABILITY, change.point_id)
        days = ((found.data if found else None) or {}).get("days") or {}
        entry = (days.get(ref.day_key) or {}).get(ref.slot_key)
        if not isinstance(entry, dict) or entry.get("removed"):
            raise SlotNotFoundError(details={"slot_id": ref.slot_id})
        if ref.starts_at <= now:
            raise InvalidStateTransitionError("a slot that has started cannot be changed")
        if change.remove:
            target = remove_target()
        else:
            assert change.change is not None
            target = change_target(entry, change.change.capacity, change.change.blocked)
        old = int(entry.get("cap", 0))
        seats: dict[int, SeatHolder] = {}
        if target.capacity < old:
            indices = range(target.capacity, old)
            got = reader.get_all([(SEATS, ref.seat_id(n)) for n in indices])
            for n in indices:
                seat = got.get((SEATS, ref.seat_id(n)))
                seats[n] = seat_holder(seat.data if seat is not None else None)
        return ref, old, target, seats

    def _capacity_page(
        self, reader: UnitOfWork, change: CapacityChange, as_of: datetime, context: Context
    ) -> PageResult:
        _, old, target, seats = self.capacity_plan(reader, change, as_of)
        displaced = self._appointments(reader, displaced_by(old, target, seats), strict=True)
        result = PageResult(scanned=sum(1 for s in seats.values() if s.kind == "patient"))
        result.cases = self._cases(reader, displaced, CAPACITY, context)
        result.judged = sum(len(c.visits) for c in result.cases)
        return result

    @staticmethod
    def _appointments(reader: UnitOfWork, ids: Sequence[str], *, strict: bool) -> list[Appointment]:
        """The displaced visits; a seat held by a visit no longer booked refuses the change
        (strict: as StaffCalendarService does) or is left out."""
        got = reader.get_all([(APPOINTMENTS, i) for i in ids])
        found = []
        for appointment_id in ids:
            stored = got.get((APPOINTMENTS, appointment_id))
            if stored is None:
                continue  # a hold's seat, or a seat without its visit: no booking to report
            appointment = Appointment.model_validate(stored.data)
            if appointment.status is not AppointmentStatus.BOOKED:
                if strict:
                    raise InvalidStateTransitionError(
                        "a seat above the new capacity holds a visit already "
                        f"{appointment.status.value}; the capacity cannot go below it",
                        details={"appointment_id": appointment.appointment_id},
                    )
                continue
            found.append(appointment)
        return found

    @staticmethod
    def _cases(
        reader: UnitOfWork, displaced: list[Appointment], reason: str, context: Context
    ) -> list[AffectedCase]:
        """Displaced visits and the dose 2s cancelled with them, one case per series."""
        linked_ids = [i for a in displaced if (i := goes_with(a)) is not None]
        got = reader.get_all([(APPOINTMENTS, i) for i in linked_ids])
        linked = [
            Appointment.model_validate(d.data)
            for d in got.values()
            if d is not None and d.data.get("status") == BOOKED
        ]
        by_series: dict[str, dict[str, Appointment]] = {}
        for appointment in [*displaced, *linked]:
            by_series.setdefault(appointment.series_id, {})[appointment.appointment_id] = (
                appointment
            )
        cases = []
        for members in by_series.values():
            reasons = {i: (reason,) for i in members}
            case = build_case(list(members.values()), reasons, context.places)
            if case is not None:
                cases.append(case)
        return cases

    # -- supply ----------------------------------------------------------------------------------
    def _supply_page(
        self,
        reader: UnitOfWork,
        change: SupplyChange,
        cursor: str | None,
        as_of: datetime,
        context: Context,
        seen: dict[str, str],
    ) -> PageResult:
        groups = supply_groups(change)
        start = int(cursor or 0)
        page = groups[start : start + self.groups_per_page]
        result = PageResult(cursor=str(start + len(page)), last=start + len(page) >= len(groups))
        for point_id, product, week in page:
            cases, scanned, deferred = self._supply_week(
                reader, change, point_id, product, week, as_of, context, seen
            )
            result.scanned += scanned
            result.deferred += deferred
            for case in cases:
                result.cases.append(case)
                result.judged += len(case.visits)
                for visit in case.visits:
                    seen[visit.appointment_id] = visit.slot_id
        return result

    def _supply_week(
        self,
        reader: UnitOfWork,
        change: SupplyChange,
        point_id: str,
        product: str,
        week: str,
        as_of: datetime,
        context: Context,
        seen: Mapping[str, str],
    ) -> tuple[list[AffectedCase], int, int]:
        """SdsSync.reconcile of one week, in memory: the budget with these deliveries merged
        as the sync would merge them, the capacities ``allocate`` gives, and for each slot cut
        the visits its compaction cannot keep."""
        incoming = [
            d
            for d in newest_deliveries(change.deliveries).values()
            if supply_group(d) == (point_id, product, week)
        ]
        supply = reader.get(SUPPLY_COLLECTION, supply_id(point_id, product, week))
        merged = dict(((supply.data if supply else None) or {}).get("deliveries") or {})
        stored = reader.get_all([(DELIVERIES, d.delivery_id) for d in incoming])
        for delivery in incoming:
            known = stored.get((DELIVERIES, delivery.delivery_id))
            sequence = int(known.data.get("sequence") or 0) if known else None
            if not is_stale(sequence, delivery):
                merged[delivery.delivery_id] = delivery_doses(delivery)
        budget = supply_budget(merged)
        availability = reader.get(AVAILABILITY, point_id)
        pending = reader.query(
            AVAILABILITY_DELTAS, ("point_ids", "array_contains", point_id), limit=MAX_PENDING_DELTAS
        )
        document = with_pending(
            availability.data if availability else None, [d.data for d in pending], point_id
        )
        # A dose 2 cancelled with its dose 1 by an earlier week's cut freed its seat (the real
        # sync's cancellation stages a delta that the folder applies before this week).
        freed = Counter(slot_id for slot_id in seen.values())
        for slot_id, count in freed.items():
            ref = SlotRef.parse(slot_id)
            entry = (document["days"].get(ref.day_key) or {}).get(ref.slot_key)
            if ref.point_id == point_id and isinstance(entry, dict):
                entry["free"] = int(entry.get("free", 0)) + count
        slots = week_supply_slots(point_id, product, week, document, as_of)
        targets = allocate(slots, budget)
        displaced: list[str] = []
        scanned = 0
        for slot, target in supply_cuts(slots, targets):
            ref = SlotRef.parse(slot.slot_id)
            got = reader.get_all([(SEATS, ref.seat_id(n)) for n in range(slot.capacity)])
            holders: dict[int, SeatHolder] = {}
            for n in range(slot.capacity):
                seat = got.get((SEATS, ref.seat_id(n)))
                data = seat.data if seat is not None else None
                if data is not None and str(data.get("appointment_id")) in seen:
                    data = None  # cancelled by an earlier week's cut: its seat was deleted
                holders[n] = seat_holder(data)
            scanned += sum(1 for h in holders.values() if h.kind == "patient")
            displaced.extend(supply_displaced(slot.capacity, target, holders))
        found = self._appointments(reader, [i for i in displaced if i not in seen], strict=False)
        deferred = int(len(found) < len([i for i in displaced if i not in seen]))
        cases = [
            c
            for c in self._cases(reader, found, SUPPLY, context)
            if not any(v.appointment_id in seen for v in c.visits)
        ]
        return cases, scanned, deferred


def _as_given(appointments: Sequence[Appointment]) -> list[PreviousDose]:
    """Earlier doses of a series that a version does not judge (before its day), as given."""
    return [
        PreviousDose(
            product_code=a.product, dose_number=a.dose_number, given_on=a.day, kind=a.dose_kind
        )
        for a in appointments
    ]


def affected_cases(
    units: UnitOfWorkRunner,
    rule_book: RuleBook,
    change: Change,
    as_of: datetime,
    *,
    page_size: int = PAGE_SIZE,
) -> Iterator[AffectedCase]:
    """Every case a change affects, page by page, synchronously and read-only: the same
    decisions as a dry-run job (and as the real change). For the re-plan (issue 15 item 2)."""
    scanner = ImpactScanner(units, rule_book, page_size=page_size)
    context = scanner.context(change, as_of)
    cursor: str | None = None
    seen: dict[str, str] = {}
    while True:
        result = scanner.page(change, cursor, as_of, context, seen)
        for case in result.cases:
            if any(v.appointment_id in seen for v in case.visits):
                continue
            seen.update({v.appointment_id: v.slot_id for v in case.visits})
            yield case
        if result.last:
            return
        cursor = result.cursor


# -- Cloud Tasks ---------------------------------------------------------------------------------


class ImpactQueue:
    """The tasks that run impact jobs (queue `impact`, target `run_impact_job`), created as
    ReminderScheduler creates reminders (common/services/reminders.py): Cloud Tasks in a
    deployment, the local Cloud Tasks emulator in the local stack. Without a client (tests
    with no emulator) nothing is queued: the caller drives the job, or the minute's
    `resume_impact_jobs` finds it."""

    def __init__(
        self,
        client: Callable[[], Any] | None,
        project_id: str,
        location: str,
        target_url: str,
        invoker_service_account: str | None = None,
        task_prefix: str = "impact",
    ) -> None:
        self._client = client
        self.project_id = project_id
        self.location = location
        self.target = target_url
        self.invoker = invoker_service_account
        # The re-plan jobs share the queue (and its low rate) with their own target and names.
        self.task_prefix = task_prefix

    def enqueue(self, job_id: str, suffix: str) -> str:
        """A task named after the job and its slice: a repeat is one task (ALREADY_EXISTS)."""
        if self._client is None:
            raise DependencyUnavailableError("Cloud Tasks is not configured here")
        client = self._client()
        queue = client.queue_path(self.project_id, self.location, IMPACT_QUEUE)
        request: dict[str, Any] = {
            "url": self.target,
            "http_method": tasks_v2.HttpMethod.POST,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"job_id": job_id}).encode(),
        }
        if self.invoker:
            request["oidc_token"] = {"service_account_email": self.invoker, "audience": self.target}
        task = {
            "name": f"{queue}/tasks/{self.task_prefix}-{job_id}-{suffix}",
            "http_request": request,
        }
        try:
            client.create_task(parent=queue, task=task, timeout=TASKS_TIMEOUT_S)
        except gexc.AlreadyExists:
            return "exists"
        except _TASKS_FAULTS as err:
            raise DependencyUnavailableError("Cloud Tasks is unavailable") from err
        return "created"


# -- the jobs --------------------------------------------------------------------------------------


def chunk_id(job_id: str, page: int) -> str:
    return f"{job_id}_{page:06d}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def job_view(data: Mapping[str, Any]) -> dict[str, Any]:
    """A job as GET /v1/admin/impact/{job_id} shows it: progress and counts, never a case."""
    change = parse_change(data["change"])
    return {
        "job_id": data["job_id"],
        "kind": data["kind"],
        "status": data["status"],
        "change": change_summary(change, data["as_of"]),
        "as_of": _iso(data["as_of"]),
        "created_at": _iso(data["created_at"]),
        "updated_at": _iso(data["updated_at"]),
        "finished_at": _iso(data.get("finished_at")),
        "expires_at": _iso(data["expires_at"]),
        "progress": {
            "pages": int(data.get("pages", 0)),
            "scanned": int(data.get("scanned", 0)),
            "judged": int(data.get("judged", 0)),
            "rows": int(data.get("rows", 0)),
            "deferred": int(data.get("deferred", 0)),
        },
        "counts": data.get("counts") or empty_counts(),
        "error": data.get("error"),
        "cases_url": f"/v1/admin/impact/{data['job_id']}/cases",
    }


@dataclass(frozen=True)
class Listing:
    """The cases of a job as CSV lines, read as they are sent."""

    headers: dict[str, str]
    lines: Iterator[str]


def _csv_line(values: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def csv_row(row: Mapping[str, Any]) -> str:
    values = [
        ";".join(row.get(name) or []) if name == "reasons" else row.get(name) or ""
        for name in CSV_COLUMNS
    ]
    return _csv_line(values)


@dataclass
class _Slice:
    started: float
    pages: int = 0
    last_commit: float | None = None


class ImpactJobs:
    """The dry-run jobs: create (POST), run a slice (the task), view, list, resume."""

    def __init__(
        self,
        units: UnitOfWorkRunner,
        db: firestore.Client,
        rule_book: RuleBook,
        queue: ImpactQueue,
        *,
        page_size: int = PAGE_SIZE,
        groups_per_page: int = GROUPS_PER_PAGE,
        slice_s: float = SLICE_S,
        min_page_interval_s: float = MIN_PAGE_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.units = units
        self.db = db  # the list is streamed a few chunk documents at a time
        self.rule_book = rule_book
        self.queue = queue
        self.scanner = ImpactScanner(
            units, rule_book, page_size=page_size, groups_per_page=groups_per_page
        )
        self.slice_s = slice_s
        self.min_page_interval_s = min_page_interval_s
        self.monotonic = monotonic
        self.sleep = sleep
        self.new_id = new_id

    # -- POST /v1/admin/impact ------------------------------------------------------------------
    def create(
        self,
        actor: Any,
        body: CreateImpactJob,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        change = body.change
        job_id = self.new_id()

        def attempt(uow: UnitOfWork) -> StoredResponse:
            self.scanner.validate(change, now)
            document = {
                "job_id": job_id,
                "kind": change.kind,
                "change": change.model_dump(mode="json"),
                "status": "queued",
                "created_by": actor.uid,
                "created_at": now,
                "updated_at": now,
                "as_of": now,
                "cursor": None,
                "pages": 0,
                "scanned": 0,
                "judged": 0,
                "rows": 0,
                "deferred": 0,
                "counts": empty_counts(),
                "error": None,
                "finished_at": None,
                "retry_after": now + START_GRACE,
                "expires_at": now + REPORT_KEEP,
            }
            uow.create(IMPACT_JOBS, job_id, document)
            uow.audit(actor, "impact.create", [], now, job_id=job_id, kind=change.kind)
            uow.after_commit(lambda: self._kick(job_id, "0"))
            return uow.respond(StoredResponse(202, {"job": job_view(document)}))

        return self.units.run(attempt, idem=idem, gave_up=_busy)

    def _kick(self, job_id: str, suffix: str) -> None:
        """After the commit: queue the first slice. A failure leaves the job queued for
        `resume_impact_jobs` (its lease, START_GRACE, runs out within minutes)."""
        try:
            self.queue.enqueue(job_id, suffix)
        except DependencyUnavailableError as err:
            log.warning("impact job not queued yet", job_id=job_id, reason=err.message)

    # -- GET /v1/admin/impact/{job_id} -------------------------------------------------------------
    def _read(self, job_id: str) -> Document | None:
        if not _JOB_ID.fullmatch(job_id or ""):
            return None
        return self.units.reader().get(IMPACT_JOBS, job_id)

    def view(self, job_id: str) -> dict[str, Any]:
        found = self._read(job_id)
        if found is None:
            raise ImpactJobNotFoundError()
        return job_view(found.data)

    # -- GET /v1/admin/impact/{job_id}/cases ------------------------------------------------------
    def listing(self, actor: Any, job_id: str, now: datetime) -> Listing:
        """The job's rows so far as CSV (the header, then a line per affected booking), keyed
        by appointment id. The first chunk documents are read before anything is sent, so a
        Firestore fault is a 503; `X-Impact-Rows` says how many lines follow the header."""
        found = self._read(job_id)
        if found is None:
            raise ImpactJobNotFoundError()
        data = found.data
        pages, rows = int(data.get("pages", 0)), int(data.get("rows", 0))

        def attempt(uow: UnitOfWork) -> None:
            uow.audit(actor, "impact.cases", [], now, job_id=job_id, rows=rows)

        self.units.run(attempt, gave_up=_busy)
        first = self._chunks(job_id, None)
        headers = {
            "Content-Disposition": f'attachment; filename="impact-{job_id}.csv"',
            "Cache-Control": "no-store",
            "X-Impact-Status": str(data["status"]),
            "X-Impact-Rows": str(rows),
        }

        def lines() -> Iterator[str]:
            yield _csv_line(CSV_COLUMNS)
            for chunk in self._all_chunks(job_id, first):
                if int(chunk.get("page", 0)) >= pages:
                    return
                for row in chunk.get("rows") or []:
                    yield csv_row(row)

        return Listing(headers, lines())

    def cases(self, job_id: str) -> Iterator[AffectedCase]:
        """A job's cases, as far as it has run (item 2 builds on these)."""
        found = self._read(job_id)
        if found is None:
            raise ImpactJobNotFoundError()
        pages = int(found.data.get("pages", 0))
        for chunk in self._all_chunks(job_id, None):
            if int(chunk.get("page", 0)) >= pages:
                return
            yield from cases_from_rows(chunk.get("rows") or [])

    def page_cases(self, job_id: str, page: int) -> list[AffectedCase]:
        """The cases one committed page of a job found (a page that found none has no chunk):
        the re-plan (common/services/replan.py) works through a dry run page by page."""
        found = self.units.reader().get(IMPACT_CASES, chunk_id(job_id, page))
        return cases_from_rows(found.data.get("rows") or []) if found is not None else []

    def _chunks(self, job_id: str, after: Any) -> list[Any]:
        query = (
            self.db.collection(IMPACT_CASES)
            .where(filter=firestore.FieldFilter("job_id", "==", job_id))
            .order_by(FieldPath.document_id())
            .limit(CHUNKS_PER_READ)
        )
        if after is not None:
            query = query.start_after(after)
        return list(query.stream(**RPC))

    def _all_chunks(self, job_id: str, first: list[Any] | None) -> Iterator[dict[str, Any]]:
        batch = first if first is not None else self._chunks(job_id, None)
        while batch:
            for snapshot in batch:
                yield snapshot.to_dict() or {}
            if len(batch) < CHUNKS_PER_READ:
                return
            batch = self._chunks(job_id, batch[-1])

    def _prior(self, job_id: str, pages: int) -> dict[str, str]:
        """appointment id -> slot id of every row the job's committed pages listed."""
        prior: dict[str, str] = {}
        for chunk in self._all_chunks(job_id, None):
            if int(chunk.get("page", 0)) >= pages:
                break
            for row in chunk.get("rows") or []:
                prior[str(row["appointment_id"])] = str(row["slot_id"])
        return prior

    # -- the worker (POST /_functions/run_impact_job, from Cloud Tasks) ----------------------------
    def run(
        self, job_id: str, now: datetime, *, max_pages: int | None = None, queue_next: bool = True
    ) -> dict[str, Any]:
        """Pages from the job's cursor for one slice (or ``max_pages``), then the next slice
        is queued. Safe to run twice at once, or again after a crash: each page commits with
        the job's version as precondition, and the worker that loses stops."""
        state = self._read(job_id)
        if state is None:
            return {"job_id": job_id, "outcome": "no_such_job"}
        if state.data["status"] in FINISHED:
            return {"job_id": job_id, "outcome": state.data["status"]}
        change = parse_change(state.data["change"])
        as_of: datetime = state.data["as_of"]
        context = self.scanner.context(change, as_of)
        pages_done = int(state.data.get("pages", 0))
        prior = self._prior(job_id, pages_done) if pages_done and change.kind == "supply" else {}
        run = _Slice(self.monotonic())
        while True:
            self._pace(run)
            moment = now + timedelta(seconds=self.monotonic() - run.started)
            error: DomainError | None = None
            try:
                result = self.scanner.page(change, state.data.get("cursor"), as_of, context, prior)
            except DependencyUnavailableError:
                raise
            except DomainError as err:  # the real change would be refused: say so, stop
                result, error = PageResult(cursor=state.data.get("cursor")), err
            try:
                state = self._commit_page(job_id, state, result, error, moment)
            except _Lost:
                log.info("another worker moved the impact job on", job_id=job_id)
                return {"job_id": job_id, "outcome": "yielded", "pages": run.pages}
            run.pages += 1
            run.last_commit = self.monotonic()
            for case in result.cases:
                prior.update({v.appointment_id: v.slot_id for v in case.visits})
            if state.data["status"] in FINISHED:
                log.info("impact job finished", job_id=job_id, status=state.data["status"])
                return {"job_id": job_id, "outcome": state.data["status"], "pages": run.pages}
            if max_pages is not None and run.pages >= max_pages:
                break
            if self.monotonic() - run.started >= self.slice_s:
                break
        if queue_next:
            # A failure here is a 503: Cloud Tasks retries this task, which goes on paging.
            self.queue.enqueue(job_id, str(state.data["pages"]))
        return {"job_id": job_id, "outcome": "continues", "pages": run.pages}

    def _pace(self, run: _Slice) -> None:
        if run.last_commit is None or self.min_page_interval_s <= 0:
            return
        wait = run.last_commit + self.min_page_interval_s - self.monotonic()
        if wait > 0:
            self.sleep(wait)

    def _commit_page(
        self,
        job_id: str,
        state: Document,
        result: PageResult,
        error: DomainError | None,
        moment: datetime,
    ) -> Document:
        data = state.data
        page = int(data.get("pages", 0))
        rows = [row for case in result.cases for row in case_rows(case)]
        status = "failed" if error else ("done" if result.last else "running")
        fields: dict[str, Any] = {
            "status": status,
            "cursor": result.cursor,
            "pages": page + 1,
            "scanned": int(data.get("scanned", 0)) + result.scanned,
            "judged": int(data.get("judged", 0)) + result.judged,
            "rows": int(data.get("rows", 0)) + len(rows),
            "deferred": int(data.get("deferred", 0)) + result.deferred,
            "counts": add_counts(data.get("counts") or {}, count_cases(result.cases)),
            "updated_at": moment,
            "retry_after": moment + LEASE,
        }
        if status in FINISHED:
            fields["finished_at"] = moment
        if error is not None:
            fields["error"] = {"code": error.code, "message": error.message}

        def attempt(uow: UnitOfWork) -> None:
            if rows:
                uow.create(
                    IMPACT_CASES,
                    chunk_id(job_id, page),
                    {
                        "job_id": job_id,
                        "page": page,
                        "rows": rows,
                        "expires_at": data["expires_at"],
                    },
                )
            uow.update(IMPACT_JOBS, job_id, fields, if_version=state.version)

        self.units.run(attempt, gave_up=_Lost, policy=ONCE)
        fresh = self._read(job_id)
        if fresh is None:
            raise _Lost()
        return fresh

    # -- the safety net (resume_impact_jobs, every minute) -----------------------------------------
    def resume_stalled(self, now: datetime) -> dict[str, int]:
        """Queue again the jobs whose worker went quiet past its lease (a task that gave up, a
        first task never queued); the lease moves on, so a job is queued once a lease."""
        stalled = self.units.reader().query(
            IMPACT_JOBS,
            ("status", "in", ["queued", "running"]),
            ("retry_after", "<=", now),
            limit=RESUME_PAGE,
        )
        summary = {"stalled": len(stalled), "queued": 0, "failed": 0}
        for doc in stalled:
            stamp = int(now.timestamp()) // 60
            try:
                self.queue.enqueue(doc.id, f"{int(doc.data.get('pages', 0))}-r{stamp}")
            except DependencyUnavailableError:
                summary["failed"] += 1
                continue

            def attempt(uow: UnitOfWork, doc: Document = doc) -> None:
                uow.update(
                    IMPACT_JOBS, doc.id, {"retry_after": now + LEASE}, if_version=doc.version
                )

            try:
                self.units.run(attempt, gave_up=_Lost, policy=ONCE)
            except _Lost:
                pass  # a worker committed meanwhile: it is alive
            summary["queued"] += 1
        if stalled:
            log.info("impact jobs resumed", **summary)
        return summary
