"""The impact of a change before it is made: which live bookings it would invalidate or
unseat, and why. Pure: no clock, no I/O; ``now``, documents and seats are parameters.

A dry run and the real change must not be able to disagree, so every decision is made by
the functions below, and the real paths call the very same ones:

- **A rules version** (a cohorts and/or vaccines file not yet in force, and the day it would
  take effect: the new line of ``rules/index.yaml``). ``proposed_rule_book`` adds it to the
  book in force; ``judge_series`` asks, for one series' live bookings, what booking asks
  (``plan_next_dose``, ``check_booking_eligibility``, ``second_dose_allowed``: the functions
  ``BookingService.prepare`` calls) under that version at the moment it takes effect
  (``judgment_moment``). A dose 1 that would be refused takes its dose 2 with it (cancelling
  dose 1 cancels dose 2); a dose 2 outside the new window is affected alone.
- **A capacity change of one slot** (staff's PATCH or DELETE of a slot, or supply's cut):
  ``change_target`` / ``remove_target`` / ``supply_target`` say what the slot becomes,
  ``seat_holder`` what each seat index holds, ``plan_capacity`` (common/domain/slots.py) which
  seats are displaced, and ``goes_with`` which dose 2 is cancelled with a displaced dose 1:
  StaffCalendarService applies exactly these.
- **An SDS shortfall** (deliveries as SDS sends them to ``sync_sds``): ``newest_deliveries``,
  ``delivery_doses`` and ``supply_budget`` give each point's weekly budget,
  ``week_supply_slots`` and ``allocate`` (common/domain/supply.py: the latest visits of the
  week lose their seats first) the capacities, ``supply_cuts`` the slots lowered,
  ``compaction_moves`` how kept visits move down before a cut, and ``supply_displaced``
  who is left above it: SdsSync applies exactly these.

The result of any of them is a list of ``AffectedCase``: one per series (both doses of a
primary series together, since a re-plan moves them together), with one ``AffectedVisit``
per affected booking, each with its reasons: ``cohort``, ``age``, ``interval``, ``product``
(rules), ``capacity`` (a slot change), ``supply`` (a shortfall), or ``unknown`` when a rules
check needs the patient's birth date and the booking does not carry it (made before
bookings stored it): such a booking is never counted as valid, nor as affected, but apart.
``case_rows`` / ``cases_from_rows`` turn cases into the flat rows a report keeps and back;
``count_cases`` and ``add_counts`` aggregate them (per reason, county, point, product, day).

The consented re-plan (issue 15, item 2) builds on ``AffectedCase``: list the cases of a
change with ``common.services.impact.affected_cases`` (or read a finished dry run's with
``ImpactJobs.cases``), act on those whose ``certain`` is true.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Literal, Protocol

from common.domain.appointments import Appointment
from common.domain.calendar import WARSAW, SlotRef, parse_day_key
from common.domain.eligibility import (
    CohortRules,
    PreviousDose,
    Referral,
    check_booking_eligibility,
    second_dose_allowed,
)
from common.domain.errors import (
    AgeNotAllowedError,
    BoosterNotAllowedError,
    CohortNotOpenError,
    DomainError,
    DoseIntervalError,
    UnknownProductError,
)
from common.domain.rulebook import RuleBook, RuleSet
from common.domain.series import plan_next_dose
from common.domain.slots import SeatHolder, plan_capacity
from common.domain.supply import SupplySlot, iso_week, week_days
from common.domain.vaccines import VaccineCatalogue

Reason = Literal["cohort", "age", "interval", "product", "capacity", "supply", "unknown"]
REASONS: tuple[str, ...] = ("cohort", "age", "interval", "product", "capacity", "supply", "unknown")
UNKNOWN = "unknown"
CAPACITY = "capacity"
SUPPLY = "supply"
FREE = SeatHolder("free")
NO_COUNTY = "unknown"


# -- the result ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AffectedVisit:
    """One live booking a change affects, and why (``("unknown",)``: cannot be judged)."""

    appointment_id: str
    dose: int
    dose_kind: str
    day: date
    point_id: str
    slot_id: str
    county: str | None
    voivodeship: str | None
    reasons: tuple[str, ...]

    @property
    def certain(self) -> bool:
        return any(r != UNKNOWN for r in self.reasons)


@dataclass(frozen=True)
class AffectedCase:
    """A series whose live bookings a change affects: both doses of a primary series come
    together when dose 1 is affected (cancelling dose 1 cancels dose 2), a dose alone when
    only it is. ``visits`` are in dose order; the fields below describe the first one."""

    series_id: str
    patient_key: str
    product: str
    visits: tuple[AffectedVisit, ...]

    @property
    def appointment_ids(self) -> tuple[str, ...]:
        return tuple(v.appointment_id for v in self.visits)

    @property
    def point_id(self) -> str:
        return self.visits[0].point_id

    @property
    def county(self) -> str | None:
        return self.visits[0].county

    @property
    def day(self) -> date:
        return self.visits[0].day

    @property
    def dose(self) -> int:
        return self.visits[0].dose

    @property
    def reasons(self) -> tuple[str, ...]:
        return merge_reasons(*(v.reasons for v in self.visits))

    @property
    def certain(self) -> bool:
        """At least one of its bookings is definitely affected (not only "cannot judge")."""
        return any(v.certain for v in self.visits)


def merge_reasons(*groups: Sequence[str]) -> tuple[str, ...]:
    """Reasons in vocabulary order, once each; "unknown" only when nothing is certain."""
    found = {r for group in groups for r in group}
    if found - {UNKNOWN}:
        found.discard(UNKNOWN)
    return tuple(r for r in REASONS if r in found)


@dataclass(frozen=True)
class Place:
    county: str | None = None
    voivodeship: str | None = None


def build_case(
    appointments: Sequence[Appointment],
    reasons: Mapping[str, Sequence[str]],
    places: Mapping[str, Place],
) -> AffectedCase | None:
    """The case of one series: its affected appointments (those with reasons), dose order."""
    affected = sorted(
        (a for a in appointments if reasons.get(a.appointment_id)),
        key=lambda a: (a.dose_number, a.starts_at),
    )
    if not affected:
        return None
    visits = tuple(
        AffectedVisit(
            appointment_id=a.appointment_id,
            dose=a.dose_number,
            dose_kind=a.dose_kind,
            day=a.day,
            point_id=a.point_id,
            slot_id=a.slot_id,
            county=places.get(a.point_id, Place()).county,
            voivodeship=places.get(a.point_id, Place()).voivodeship,
            reasons=merge_reasons(reasons[a.appointment_id]),
        )
        for a in affected
    )
    first = affected[0]
    return AffectedCase(first.series_id, first.patient_key, first.product, visits)


def case_rows(case: AffectedCase) -> list[dict[str, Any]]:
    """One flat row per affected booking, as a report keeps and lists them (no PESEL: the
    patient is the keyed hash, and no birth date)."""
    return [
        {
            "appointment_id": v.appointment_id,
            "series_id": case.series_id,
            "patient_key": case.patient_key,
            "verdict": "affected" if v.certain else UNKNOWN,
            "reasons": list(v.reasons),
            "point_id": v.point_id,
            "county": v.county,
            "voivodeship": v.voivodeship,
            "product": case.product,
            "day": v.day.isoformat(),
            "dose": v.dose,
            "dose_kind": v.dose_kind,
            "slot_id": v.slot_id,
        }
        for v in case.visits
    ]


def cases_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[AffectedCase]:
    """The cases back from rows (those of one series are always kept together)."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(str(row["series_id"]), []).append(row)
    cases = []
    for series_id, series_rows in grouped.items():
        visits = tuple(
            AffectedVisit(
                appointment_id=str(r["appointment_id"]),
                dose=int(r["dose"]),
                dose_kind=str(r["dose_kind"]),
                day=date.fromisoformat(str(r["day"])),
                point_id=str(r["point_id"]),
                slot_id=str(r["slot_id"]),
                county=r.get("county"),
                voivodeship=r.get("voivodeship"),
                reasons=tuple(r["reasons"]),
            )
            for r in sorted(series_rows, key=lambda r: (int(r["dose"]), str(r["day"])))
        )
        first = series_rows[0]
        cases.append(
            AffectedCase(series_id, str(first["patient_key"]), str(first["product"]), visits)
        )
    return cases


# -- counts ----------------------------------------------------------------------------------

COUNT_TOTALS = ("affected_cases", "affected_bookings", "unknown_cases", "unknown_bookings")
COUNT_MAPS = ("by_reason", "by_county", "by_point", "by_product", "by_day")


def empty_counts() -> dict[str, Any]:
    return {**dict.fromkeys(COUNT_TOTALS, 0), **{name: {} for name in COUNT_MAPS}}


def count_cases(cases: Iterable[AffectedCase]) -> dict[str, Any]:
    """Totals, and affected bookings per reason, county, point, product and day. A booking
    that cannot be judged counts only as unknown (and under the reason "unknown")."""
    counts = empty_counts()

    def bump(name: str, key: str) -> None:
        counts[name][key] = counts[name].get(key, 0) + 1

    for case in cases:
        counts["affected_cases" if case.certain else "unknown_cases"] += 1
        for visit in case.visits:
            for reason in visit.reasons:
                bump("by_reason", reason)
            if not visit.certain:
                counts["unknown_bookings"] += 1
                continue
            counts["affected_bookings"] += 1
            bump("by_county", visit.county or NO_COUNTY)
            bump("by_point", visit.point_id)
            bump("by_product", case.product)
            bump("by_day", visit.day.isoformat())
    return counts


def add_counts(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    total = empty_counts()
    for name in COUNT_TOTALS:
        total[name] = int(a.get(name, 0)) + int(b.get(name, 0))
    for name in COUNT_MAPS:
        merged = dict(a.get(name) or {})
        for key, value in (b.get(name) or {}).items():
            merged[key] = int(merged.get(key, 0)) + int(value)
        total[name] = merged
    return total


# -- a rules version -------------------------------------------------------------------------


def proposed_rule_book(
    book: RuleBook,
    effective_from: date,
    *,
    cohorts: CohortRules | None = None,
    vaccines: VaccineCatalogue | None = None,
) -> RuleBook:
    """The book as it would be with the new version(s) added on ``effective_from``."""

    def added(versions: tuple[tuple[date, Any], ...], new: Any) -> tuple[tuple[date, Any], ...]:
        if new is None:
            return versions
        kept = [(start, v) for start, v in versions if start != effective_from]
        return tuple(sorted([*kept, (effective_from, new)], key=lambda entry: entry[0]))

    return RuleBook(added(book.cohort_versions, cohorts), added(book.catalogue_versions, vaccines))


def judgment_moment(as_of: datetime, effective_from: date) -> datetime:
    """When a version is judged: the moment it takes effect (Warsaw midnight of its day), or
    ``as_of`` if that has passed. The bookings it finds are those it would refuse then."""
    starts = datetime.combine(effective_from, time(0, 0), tzinfo=WARSAW)
    return max(as_of, starts)


def in_scope(appointment: Appointment, as_of: datetime, effective_from: date) -> bool:
    """A version judges the visits on or after its day that have not started yet."""
    return appointment.starts_at > as_of and appointment.day >= effective_from


def reason_of(err: DomainError) -> str:
    """The reason a booking check's refusal gives, in the report's vocabulary."""
    why = err.details.get("reason")
    if isinstance(err, CohortNotOpenError):
        return "cohort"
    if isinstance(err, AgeNotAllowedError):
        return "age"
    if isinstance(err, DoseIntervalError):
        # A dose 2 of a product that needs one dose only, or a dose 2 of another product.
        if why == "single_dose_product" or "required_product" in err.details:
            return "product"
        return "interval"
    if isinstance(err, BoosterNotAllowedError):
        return "interval" if why == "no_previous_dose" else "product"
    if isinstance(err, UnknownProductError):
        return "product"
    raise err  # nothing else can refuse a booking whose referral is taken as valid


def booking_failure(
    appointment: Appointment,
    birth_date: date | None,
    rules: RuleSet,
    at: datetime,
    history: Sequence[PreviousDose] = (),
) -> tuple[str, ...]:
    """Why booking this visit at ``at`` under ``rules`` would be refused; () if it would not.

    The same calls as BookingService.prepare: the product, the dose plan from the history,
    then ``check_booking_eligibility`` (cohort, age, dose rules). The referral is taken as
    valid: e-referrals are P1's, not the rules'. Without a birth date only what needs none
    is checked: ("unknown",) if that passes."""
    try:
        product = rules.catalogue.get(appointment.product)
        plan = plan_next_dose(history, product, rules.catalogue)
    except DomainError as err:
        return (reason_of(err),)
    if (plan.kind, plan.dose_number) != (appointment.dose_kind, appointment.dose_number):
        return ("product",)  # the product's series no longer has this dose
    if birth_date is None:
        return (UNKNOWN,)
    referral = Referral(
        referral_id=appointment.referral_id or "impact",
        kind=appointment.dose_kind,
        valid_from=date.min,
        valid_to=date.max,
        booster_number=appointment.booster_number,
    )

    def check(moment: datetime) -> None:
        check_booking_eligibility(
            birth_date=birth_date,
            referral=referral,
            product=product,
            visit_date=appointment.day,
            now=moment,
            channel=appointment.channel,
            cohorts=rules.cohorts,
            previous_doses=history,
        )

    try:
        check(at)
    except CohortNotOpenError as err:
        # A visit on or after the day the cohort opens is what the rules intend (where a
        # consented re-plan moves such a booking: common/domain/replan.py); it is judged as
        # if booked at the opening.
        opens = err.details.get("opens_at")
        opening = datetime.fromisoformat(opens) if isinstance(opens, str) else None
        if opening is None or appointment.day < opening.astimezone(WARSAW).date():
            return (reason_of(err),)
        try:
            check(opening)
        except DomainError as later:
            return (reason_of(later),)
    except DomainError as err:
        return (reason_of(err),)
    return ()


def window_failure(
    catalogue: VaccineCatalogue, first: Appointment, second: Appointment
) -> tuple[str, ...]:
    """Why dose 2, booked with dose 1, would be out of the product's window; () if not (the
    check booking makes of a series' dose 2: ``second_dose_allowed``)."""
    try:
        second_dose_allowed(catalogue.get(second.product), first.day, second.day)
    except DomainError as err:
        return (reason_of(err),)
    return ()


def needs_history(judged: Sequence[Appointment]) -> bool:
    """A series whose first judged dose is not a primary dose 1 is judged as booking that
    dose now would be: with the vaccinations given (a dose 1 needs none: it is booked only
    when there is no primary dose yet)."""
    return bool(judged) and not (judged[0].dose_kind == "primary" and judged[0].dose_number == 1)


def judge_series(
    judged: Sequence[Appointment],
    *,
    birth_date: date | None,
    rules: RuleSet,
    at: datetime,
    history: Sequence[PreviousDose] = (),
) -> dict[str, tuple[str, ...]]:
    """The reasons, per appointment id, of the bookings of one series (``judged``: its live
    bookings in scope, dose order) that ``rules`` would refuse at ``at``. Valid ones are
    absent. ``history``: the doses given (and earlier doses of the series out of scope, as
    given), needed only when ``needs_history``."""
    ordered = sorted(judged, key=lambda a: (a.dose_number, a.starts_at))
    if not ordered:
        return {}
    verdicts: dict[str, tuple[str, ...]] = {}
    if not needs_history(ordered):
        first = ordered[0]
        failed = booking_failure(first, birth_date, rules, at, ())
        if failed:
            verdicts[first.appointment_id] = failed
        for later in ordered[1:]:
            own = window_failure(rules.catalogue, first, later)
            reasons = merge_reasons(failed, own) if failed else own
            if reasons:
                verdicts[later.appointment_id] = reasons
        return verdicts
    for appointment in ordered:
        failed = booking_failure(appointment, birth_date, rules, at, history)
        if failed:
            verdicts[appointment.appointment_id] = failed
    return verdicts


# -- a capacity change of one slot ----------------------------------------------------------


@dataclass(frozen=True)
class SlotTarget:
    """What a slot should become: its effective capacity and its blocked state."""

    capacity: int
    blocked: bool
    held_capacity: int  # the capacity a blocked slot returns to when unblocked
    remove: bool = False
    # Set by supply (common/services/sds_sync.py): the capacity staff published, kept as
    # `tmpl` while supply holds `cap` below it. A staff change drops it: theirs is the new one.
    template: int | None = None


def change_target(
    entry: Mapping[str, Any], capacity: int | None, blocked: bool | None
) -> SlotTarget:
    """Staff's PATCH of a slot: a new capacity, a block (capacity 0, kept visible) or both."""
    blocked_now = bool(entry.get("blocked"))
    held = int(entry.get("blocked_cap", 0)) if blocked_now else int(entry.get("cap", 0))
    will_block = blocked if blocked is not None else blocked_now
    new_capacity = capacity if capacity is not None else held
    return SlotTarget(0 if will_block else new_capacity, will_block, new_capacity)


def remove_target() -> SlotTarget:
    """Staff's DELETE of a slot: capacity 0, a tombstone left."""
    return SlotTarget(0, False, 0, remove=True)


def supply_target(entry: Mapping[str, Any], capacity: int, template: int) -> SlotTarget:
    """Supply's capacity for a slot; a slot staff blocked meanwhile is left as it is."""
    if entry.get("blocked"):
        return SlotTarget(0, True, int(entry.get("blocked_cap", 0)))
    return SlotTarget(capacity, False, capacity, template=template)


def seat_holder(data: Mapping[str, Any] | None) -> SeatHolder:
    """What a seat document (or its absence) means to a capacity change."""
    if data is None:
        return FREE
    if data.get("blocker"):
        return SeatHolder("blocker")
    return SeatHolder("patient", str(data.get("appointment_id")))


def goes_with(appointment: Appointment) -> str | None:
    """The dose 2 cancelled with this appointment when it is displaced (booked with it)."""
    if appointment.dose_number == 1 and appointment.linked_appointment_id:
        return appointment.linked_appointment_id
    return None


def displaced_by(
    old_capacity: int, target: SlotTarget, seats: Mapping[int, SeatHolder]
) -> tuple[str, ...]:
    """The appointments a change of one slot to ``target`` displaces (``seats``: what the
    indices [target, old) hold)."""
    plan = plan_capacity(old_capacity, target.capacity, dict(seats))
    return tuple(appointment_id for _, appointment_id in plan.displace)


# -- an SDS shortfall ---------------------------------------------------------------------


class Delivery(Protocol):
    delivery_id: str
    point_id: str
    product: str
    doses: int
    delivery_date: date
    sequence: int
    status: str


def newest_deliveries(deliveries: Iterable[Delivery]) -> dict[str, Delivery]:
    """Per delivery id, the version with the highest sequence (a page may repeat one)."""
    newest: dict[str, Delivery] = {}
    for delivery in deliveries:
        known = newest.get(delivery.delivery_id)
        if known is None or delivery.sequence > known.sequence:
            newest[delivery.delivery_id] = delivery
    return newest


def is_stale(stored_sequence: int | None, delivery: Delivery) -> bool:
    """A delivery no newer than the one stored changes nothing (duplicates, old pages)."""
    return stored_sequence is not None and stored_sequence >= delivery.sequence


def delivery_doses(delivery: Delivery) -> int:
    """What a delivery adds to its week's budget: nothing once cancelled."""
    return delivery.doses if delivery.status == "delivered" else 0


def supply_budget(deliveries: Mapping[str, Any]) -> int:
    """A week's budget: the sum of its deliveries' doses, never an increment."""
    return sum(int(v) for v in deliveries.values())


def supply_group(delivery: Delivery) -> tuple[str, str, str]:
    """(point, product, ISO week) of the budget a delivery counts in."""
    return delivery.point_id, delivery.product, iso_week(delivery.delivery_date)


def week_supply_slots(
    point_id: str,
    product: str,
    week: str,
    document: Mapping[str, Any] | None,
    now: datetime,
) -> list[SupplySlot]:
    """The slots of a point's ISO week and product as supply sees them: capacity, bookings
    (capacity - free), template; started or blocked ones fixed."""
    week_monday, week_sunday = week_days(week)
    slots = []
    for dkey, day_slots in ((document or {}).get("days") or {}).items():
        day = parse_day_key(dkey)
        if not week_monday <= day <= week_sunday:
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


def supply_cuts(
    slots: Sequence[SupplySlot], targets: Mapping[str, int]
) -> list[tuple[SupplySlot, int]]:
    """The slots a budget lowers, with their new capacity (allocate's targets)."""
    return [
        (slot, targets[slot.slot_id])
        for slot in slots
        if not slot.fixed and targets.get(slot.slot_id, slot.capacity) < slot.capacity
    ]


def compaction_moves(
    capacity: int, target: int, seats: Mapping[int, SeatHolder]
) -> tuple[tuple[int, int], ...]:
    """Before a slot is lowered to ``target`` (> 0), the visits on indices >= target move to
    free indices below it, lowest first: (from, to) pairs. Bookings pick seats at random, so
    without this a cut would displace whoever holds the high indices, not the fewest."""
    high = [n for n in range(target, capacity) if seats.get(n, FREE).kind == "patient"]
    low = [n for n in range(target) if seats.get(n, FREE).kind == "free"]
    return tuple(zip(high, low, strict=False))


def supply_displaced(
    capacity: int, target: int, seats: Mapping[int, SeatHolder]
) -> tuple[str, ...]:
    """Who a supply cut of a slot from ``capacity`` to ``target`` displaces: its compaction
    (when target > 0), then the capacity change (``seats``: what [0, capacity) holds)."""
    after = {n: seats.get(n, FREE) for n in range(capacity)}
    if target > 0:
        for high, low in compaction_moves(capacity, target, after):
            after[low], after[high] = after[high], SeatHolder("blocker")
    return displaced_by(
        capacity, SlotTarget(target, False, target), {n: after[n] for n in range(target, capacity)}
    )


def with_pending(
    document: Mapping[str, Any] | None, deltas: Iterable[Mapping[str, Any]], point_id: str
) -> dict[str, Any]:
    """A point's availability document as the folder would leave it: the pending free-seat
    deltas applied, in memory (a dry run writes nothing, the folder included)."""
    days = {
        dkey: {
            skey: dict(entry) for skey, entry in (slots or {}).items() if isinstance(entry, dict)
        }
        for dkey, slots in ((document or {}).get("days") or {}).items()
    }
    for delta in deltas:
        for change in delta.get("changes", []):
            if change.get("point_id") != point_id:
                continue
            entry = days.get(change["day"], {}).get(change["slot"])
            if entry is not None:
                entry["free"] = int(entry.get("free", 0)) + int(change["delta"])
    return {"point_id": point_id, "days": days}


# -- paging live bookings ------------------------------------------------------------------


def whole_series(series_ids: Sequence[str], limit: int) -> tuple[int, bool]:
    """(how many of a page's documents, ordered by series, to keep so that no series is
    split across pages; whether this is the last page). A full page drops its last series:
    the next page starts with it whole."""
    if len(series_ids) < limit:
        return len(series_ids), True
    keep = len(series_ids)
    while keep and series_ids[keep - 1] == series_ids[-1]:
        keep -= 1
    return (keep or len(series_ids)), False


@dataclass
class PageResult:
    """What one page of a dry run found."""

    cases: list[AffectedCase] = field(default_factory=list)
    scanned: int = 0  # bookings (or seats) examined
    judged: int = 0  # of them, in scope and judged
    # Supply weeks the real sync would leave dirty for a later run (a seat above a cut held
    # by a visit already carried out); their cases are listed all the same.
    deferred: int = 0
    cursor: str | None = None
    last: bool = True
