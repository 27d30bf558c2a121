"""The impact of a change, decided by pure functions (common/domain/impact.py): what a rules
version, a capacity cut or an SDS shortfall would do to the bookings already made, and the
same functions the real paths use (the capacity targets and seats of StaffCalendarService,
the budgets, cuts and compaction of SdsSync). Fixed dates: no clock is read."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from common.adapters.sds_client import SdsDelivery
from common.domain.appointments import Appointment
from common.domain.calendar import WARSAW, SlotRef
from common.domain.eligibility import CohortRules, PreviousDose, load_cohort_rules
from common.domain.impact import (
    AffectedCase,
    Place,
    add_counts,
    build_case,
    case_rows,
    cases_from_rows,
    change_target,
    compaction_moves,
    count_cases,
    delivery_doses,
    displaced_by,
    goes_with,
    in_scope,
    is_stale,
    judge_series,
    judgment_moment,
    merge_reasons,
    needs_history,
    newest_deliveries,
    proposed_rule_book,
    remove_target,
    seat_holder,
    supply_budget,
    supply_cuts,
    supply_displaced,
    supply_target,
    week_supply_slots,
    whole_series,
    with_pending,
)
from common.domain.rulebook import RuleBook, RuleSet, load_rule_book
from common.domain.slots import SeatHolder
from common.domain.supply import SupplySlot, allocate
from common.domain.vaccines import VaccineCatalogue, load_catalogue

AS_OF = datetime(2031, 3, 2, 9, 0, tzinfo=UTC)
EFFECTIVE = date(2031, 3, 3)
VISIT = date(2031, 3, 10)
P = "pt-00001"
BORN_1970 = date(1970, 6, 1)  # the band opened by mistake below
BORN_1950 = date(1950, 6, 1)
PATIENT = "k" * 32


def _appointment(
    appointment_id: str,
    *,
    day: date = VISIT,
    dose: int = 1,
    product: str = "comirnaty",
    series: str = "s1",
    linked: str | None = None,
    kind: str = "primary",
    point: str = P,
    channel: str = "portal",
) -> Appointment:
    ref = SlotRef(point, day, time(9, 0), product)
    return Appointment(
        appointment_id=appointment_id,
        series_id=series,
        patient_key=PATIENT,
        referral_id="ref-1",
        dose_kind=kind,
        dose_number=dose,
        booster_number=1 if kind == "booster" else 0,
        product=product,
        point_id=point,
        slot_id=ref.slot_id,
        seat_id=ref.seat_id(0),
        starts_at=ref.starts_at,
        day=day,
        channel=channel,
        linked_appointment_id=linked,
        booked_by_role="patient",
        created_at=AS_OF,
        updated_at=AS_OF,
    )


def _series(product: str = "comirnaty", gap: int = 35) -> list[Appointment]:
    return [
        _appointment("a1", product=product, linked="a2"),
        _appointment("a2", dose=2, day=VISIT + timedelta(days=gap), product=product, linked="a1"),
    ]


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return load_rule_book()


def _cohorts_closing_1961_1980() -> CohortRules:
    """The correction of a cohort opened by mistake: 1961-1980 open only in the autumn."""
    current = load_cohort_rules()
    data = current.model_dump(mode="json")
    data["version"] = "impact-test"
    data["cohorts"] = [
        {"born_to": 1960, "opens_at": "2021-01-15T00:00:00"},
        {"born_from": 1961, "born_to": 1980, "opens_at": "2031-10-01T00:00:00"},
        {"born_from": 1981, "opens_at": "2021-05-01T00:00:00"},
    ]
    return CohortRules.model_validate(data)


def _catalogue(**changes: dict) -> VaccineCatalogue:
    data = load_catalogue().model_dump(mode="json")
    data["version"] = "impact-test"
    products = []
    for product in data["products"]:
        if product["code"] in changes:
            if changes[product["code"]] is None:
                continue
            product = product | changes[product["code"]]
        products.append(product)
    data["products"] = products
    return VaccineCatalogue.model_validate(data)


def _rules(book: RuleBook, **kinds) -> RuleSet:
    proposed = proposed_rule_book(book, EFFECTIVE, **kinds)
    return proposed.rules_at(judgment_moment(AS_OF, EFFECTIVE))


# -- a rules version -------------------------------------------------------------------------


def test_the_proposed_version_is_in_force_from_its_day_only(book: RuleBook) -> None:
    cohorts = _cohorts_closing_1961_1980()
    proposed = proposed_rule_book(book, EFFECTIVE, cohorts=cohorts)
    assert proposed.cohorts_for(EFFECTIVE).version == "impact-test"
    assert (
        proposed.cohorts_for(EFFECTIVE - timedelta(days=1)).version == book.latest.cohorts.version
    )
    assert proposed.catalogue_versions == book.catalogue_versions  # only what is given changes
    assert judgment_moment(AS_OF, EFFECTIVE) == datetime(2031, 3, 3, tzinfo=WARSAW)
    later = datetime(2031, 3, 5, tzinfo=UTC)
    assert judgment_moment(later, EFFECTIVE) == later  # in force already: judged now


def test_a_cohort_opened_by_mistake_takes_both_doses_of_its_series(book: RuleBook) -> None:
    rules = _rules(book, cohorts=_cohorts_closing_1961_1980())
    at = judgment_moment(AS_OF, EFFECTIVE)
    found = judge_series(_series(), birth_date=BORN_1970, rules=rules, at=at)
    assert found == {"a1": ("cohort",), "a2": ("cohort",)}
    assert judge_series(_series(), birth_date=BORN_1950, rules=rules, at=at) == {}


def test_the_hotline_channel_opens_later_than_the_portal(book: RuleBook) -> None:
    data = _cohorts_closing_1961_1980().model_dump(mode="json")
    data["cohorts"][1]["opens_at"] = "2031-03-03T00:00:00"  # opens as the version starts
    rules = _rules(book, cohorts=CohortRules.model_validate(data))
    at = judgment_moment(AS_OF, EFFECTIVE)
    opening_day = date(2031, 3, 3)
    portal = [_appointment("a1", product="jcovden", day=opening_day)]
    hotline = [_appointment("a1", product="jcovden", channel="hotline", day=opening_day)]
    assert judge_series(portal, birth_date=BORN_1970, rules=rules, at=at) == {}
    # The hotline opens at 06:00: a visit that day is after it opens, one the day before not.
    assert judge_series(hotline, birth_date=BORN_1970, rules=rules, at=at) == {}
    earlier = [_appointment("a1", product="jcovden", channel="hotline", day=date(2031, 3, 2))]
    assert judge_series(earlier, birth_date=BORN_1970, rules=rules, at=at) == {"a1": ("cohort",)}


def test_a_visit_on_or_after_the_cohorts_opening_is_valid(book: RuleBook) -> None:
    """Where a re-plan moves a booking its cohort made too early: judged as if booked then."""
    data = _cohorts_closing_1961_1980().model_dump(mode="json")
    data["cohorts"][1]["opens_at"] = "2031-05-24T00:00:00"
    rules = _rules(book, cohorts=CohortRules.model_validate(data))
    at = judgment_moment(AS_OF, EFFECTIVE)
    april = [_appointment("a1", product="jcovden", day=date(2031, 4, 10))]
    late_may = [_appointment("a1", product="jcovden", day=date(2031, 5, 24))]
    assert judge_series(april, birth_date=BORN_1970, rules=rules, at=at) == {"a1": ("cohort",)}
    assert judge_series(late_may, birth_date=BORN_1970, rules=rules, at=at) == {}


def test_an_age_limit_raised(book: RuleBook) -> None:
    rules = _rules(book, vaccines=_catalogue(jcovden={"min_age": 65}))
    at = judgment_moment(AS_OF, EFFECTIVE)
    one = [_appointment("a1", product="jcovden")]
    assert judge_series(one, birth_date=BORN_1970, rules=rules, at=at) == {"a1": ("age",)}
    assert judge_series(one, birth_date=date(1960, 1, 1), rules=rules, at=at) == {}


def test_a_narrower_window_takes_dose_2_only(book: RuleBook) -> None:
    window = {"min_interval_days": 21, "planned_interval_days": 28, "max_interval_days": 30}
    rules = _rules(book, vaccines=_catalogue(comirnaty=window))
    at = judgment_moment(AS_OF, EFFECTIVE)
    assert judge_series(_series(gap=35), birth_date=BORN_1950, rules=rules, at=at) == {
        "a2": ("interval",)
    }
    assert judge_series(_series(gap=28), birth_date=BORN_1950, rules=rules, at=at) == {}


def test_a_product_withdrawn_or_made_single_dose(book: RuleBook) -> None:
    at = judgment_moment(AS_OF, EFFECTIVE)
    gone = _rules(book, vaccines=_catalogue(spikevax=None))
    assert judge_series(_series("spikevax"), birth_date=BORN_1950, rules=gone, at=at) == {
        "a1": ("product",),
        "a2": ("product",),
    }
    single = {
        "doses": 1,
        "min_interval_days": None,
        "max_interval_days": None,
        "planned_interval_days": None,
    }
    one_dose = _rules(book, vaccines=_catalogue(spikevax=single))
    assert judge_series(_series("spikevax"), birth_date=BORN_1950, rules=one_dose, at=at) == {
        "a2": ("product",)
    }


def test_without_a_birth_date_it_cannot_be_judged_never_valid(book: RuleBook) -> None:
    rules = _rules(book, cohorts=_cohorts_closing_1961_1980())
    at = judgment_moment(AS_OF, EFFECTIVE)
    found = judge_series(_series(), birth_date=None, rules=rules, at=at)
    assert found == {"a1": ("unknown",), "a2": ("unknown",)}
    # What needs no birth date is still decided: dose 2 out of a narrower window is affected.
    window = {"min_interval_days": 21, "planned_interval_days": 28, "max_interval_days": 30}
    narrower = _rules(book, vaccines=_catalogue(comirnaty=window))
    assert judge_series(_series(gap=35), birth_date=None, rules=narrower, at=at) == {
        "a1": ("unknown",),
        "a2": ("interval",),
    }
    gone = _rules(book, vaccines=_catalogue(comirnaty=None))
    assert judge_series(_series(), birth_date=None, rules=gone, at=at)["a1"] == ("product",)


def test_a_dose_2_after_dose_1_was_given_is_judged_with_the_history(book: RuleBook) -> None:
    rules = _rules(book, cohorts=_cohorts_closing_1961_1980())
    at = judgment_moment(AS_OF, EFFECTIVE)
    dose2 = [_appointment("a2", dose=2, day=VISIT + timedelta(days=30))]
    given = [PreviousDose(product_code="comirnaty", dose_number=1, given_on=VISIT)]
    assert needs_history(dose2)
    assert judge_series(dose2, birth_date=BORN_1950, rules=rules, at=at, history=given) == {}
    assert judge_series(dose2, birth_date=BORN_1970, rules=rules, at=at, history=given) == {
        "a2": ("cohort",)
    }
    too_late = [_appointment("a2", dose=2, day=VISIT + timedelta(days=60))]
    assert judge_series(too_late, birth_date=BORN_1950, rules=rules, at=at, history=given) == {
        "a2": ("interval",)
    }
    # No dose given at all: a dose 2 has nothing to follow (the plan is a dose 1).
    assert judge_series(dose2, birth_date=BORN_1950, rules=rules, at=at) == {"a2": ("product",)}


def test_a_booster_of_a_product_no_longer_used_for_boosters(book: RuleBook) -> None:
    at = judgment_moment(AS_OF, EFFECTIVE)
    booster = [_appointment("b1", kind="booster", product="spikevax", series="s2")]
    history = [
        PreviousDose(product_code="comirnaty", dose_number=1, given_on=date(2030, 1, 1)),
        PreviousDose(product_code="comirnaty", dose_number=2, given_on=date(2030, 2, 5)),
    ]
    same = _rules(book)
    assert judge_series(booster, birth_date=BORN_1950, rules=same, at=at, history=history) == {}
    rules = _rules(book, vaccines=_catalogue(spikevax={"booster_eligible": False}))
    assert judge_series(booster, birth_date=BORN_1950, rules=rules, at=at, history=history) == {
        "b1": ("product",)
    }


def test_what_a_version_judges(book: RuleBook) -> None:
    visit = _appointment("a1", day=EFFECTIVE)
    assert in_scope(visit, AS_OF, EFFECTIVE)
    assert not in_scope(_appointment("a0", day=EFFECTIVE - timedelta(days=1)), AS_OF, EFFECTIVE)
    started = visit.starts_at + timedelta(minutes=1)
    assert not in_scope(visit, started, EFFECTIVE)


def test_reasons_merge_in_vocabulary_order_and_unknown_only_alone() -> None:
    assert merge_reasons(("interval",), ("cohort", "interval")) == ("cohort", "interval")
    assert merge_reasons(("unknown",), ("interval",)) == ("interval",)
    assert merge_reasons(("unknown",), ()) == ("unknown",)


# -- a capacity change: the targets and seats StaffCalendarService applies --------------------


@pytest.mark.parametrize(
    ("entry", "capacity", "blocked", "expected"),
    [
        ({"cap": 5}, 2, None, (2, False, 2)),
        ({"cap": 5}, None, True, (0, True, 5)),
        ({"cap": 0, "blocked": True, "blocked_cap": 4}, None, False, (4, False, 4)),
        ({"cap": 0, "blocked": True, "blocked_cap": 4}, 3, None, (0, True, 3)),
        ({"cap": 5}, 7, False, (7, False, 7)),
    ],
)
def test_a_staff_change_targets(entry, capacity, blocked, expected) -> None:
    target = change_target(entry, capacity, blocked)
    assert (target.capacity, target.blocked, target.held_capacity) == expected
    assert not target.remove and target.template is None


def test_removal_and_supply_targets() -> None:
    assert remove_target().capacity == 0 and remove_target().remove
    kept = supply_target({"cap": 5, "blocked": True, "blocked_cap": 5}, 2, 5)
    assert (kept.capacity, kept.blocked, kept.held_capacity) == (0, True, 5)
    lowered = supply_target({"cap": 5}, 2, 5)
    assert (lowered.capacity, lowered.template) == (2, 5)


def test_seats_and_the_dose_2_that_goes_with_a_displaced_dose_1() -> None:
    assert seat_holder(None) == SeatHolder("free")
    assert seat_holder({"blocker": True}).kind == "blocker"
    assert seat_holder({"appointment_id": "x"}) == SeatHolder("patient", "x")
    first, second = _series()
    assert goes_with(first) == "a2"
    assert goes_with(second) is None
    seats = {2: SeatHolder("patient", "x"), 3: SeatHolder("free"), 4: SeatHolder("blocker")}
    assert displaced_by(5, change_target({"cap": 5}, 2, None), seats) == ("x",)
    assert displaced_by(5, change_target({"cap": 5}, 5, None), {}) == ()


# -- an SDS shortfall: the budgets, cuts and compaction SdsSync applies ------------------------


def _delivery(delivery_id: str, doses: int, sequence: int, **kw) -> SdsDelivery:
    return SdsDelivery(
        delivery_id=delivery_id,
        point_id=P,
        product="jcovden",
        doses=doses,
        delivery_date=date(2031, 3, 10),
        sequence=sequence,
        **kw,
    )


def test_deliveries_newest_wins_stale_and_cancelled_count_nothing() -> None:
    newest = newest_deliveries(
        [_delivery("D1", 5, 1), _delivery("D1", 3, 2), _delivery("D2", 4, 1)]
    )
    assert {k: v.doses for k, v in newest.items()} == {"D1": 3, "D2": 4}
    assert is_stale(2, _delivery("D1", 3, 2)) and not is_stale(1, _delivery("D1", 3, 2))
    assert not is_stale(None, _delivery("D1", 3, 2))
    assert delivery_doses(_delivery("D1", 3, 2, status="cancelled")) == 0
    assert supply_budget({"D1": 3, "D2": 0, "D3": "4"}) == 7


def test_a_shortfall_lowers_the_latest_slots_first() -> None:
    start = datetime(2031, 3, 10, 8, 0, tzinfo=UTC)
    slots = [
        SupplySlot(f"s{i}", start + timedelta(hours=i), capacity=5, booked=2, template=5)
        for i in range(3)
    ]
    # 6 booked, 5 doses: every slot keeps its bookings but the latest, which keeps one of two.
    targets = allocate(slots, budget=5)
    assert [(s.slot_id, t) for s, t in supply_cuts(slots, targets)] == [
        ("s0", 2),
        ("s1", 2),
        ("s2", 1),
    ]


def test_compaction_keeps_the_visits_it_can_and_displaces_the_rest() -> None:
    seats = {
        0: SeatHolder("free"),
        1: SeatHolder("patient", "A"),
        2: SeatHolder("free"),
        3: SeatHolder("patient", "B"),
        4: SeatHolder("patient", "C"),
    }
    assert compaction_moves(5, 2, seats) == ((3, 0),)
    assert supply_displaced(5, 2, seats) == ("C",)
    assert supply_displaced(5, 3, seats) == ()  # B to 0, C to 2
    assert set(supply_displaced(5, 0, seats)) == {"A", "B", "C"}


def test_week_slots_with_pending_deltas_folded_in_memory() -> None:
    ref = SlotRef(P, date(2031, 3, 10), time(9, 0), "jcovden")
    other = SlotRef(P, date(2031, 3, 17), time(9, 0), "jcovden")
    document = {
        "days": {
            ref.day_key: {ref.slot_key: {"cap": 5, "free": 5, "tmpl": 6}},
            other.day_key: {other.slot_key: {"cap": 5, "free": 5}},
        }
    }
    delta = {"changes": [{"point_id": P, "day": ref.day_key, "slot": ref.slot_key, "delta": -2}]}
    folded = with_pending(document, [delta], P)
    assert document["days"][ref.day_key][ref.slot_key]["free"] == 5  # untouched
    (slot,) = week_supply_slots(P, "jcovden", "2031-W11", folded, AS_OF)
    assert (slot.slot_id, slot.capacity, slot.booked, slot.template, slot.fixed) == (
        ref.slot_id,
        5,
        2,
        6,
        False,
    )
    (started,) = week_supply_slots(P, "jcovden", "2031-W11", folded, ref.starts_at)
    assert started.fixed


# -- paging, cases, rows and counts --------------------------------------------------------------


def test_a_page_never_splits_a_series() -> None:
    assert whole_series(["a", "b", "b"], 3) == (1, False)
    assert whole_series(["a", "b", "c"], 3) == (2, False)
    assert whole_series(["a", "b"], 3) == (2, True)
    assert whole_series([], 3) == (0, True)


def _case(book: RuleBook) -> AffectedCase:
    places = {P: Place("Kraków", "małopolskie")}
    case = build_case(_series(), {"a1": ("cohort",), "a2": ("cohort", "interval")}, places)
    assert case is not None
    return case


def test_a_case_its_rows_and_back(book: RuleBook) -> None:
    case = _case(book)
    assert case.appointment_ids == ("a1", "a2")
    assert (case.point_id, case.county, case.day, case.dose) == (P, "Kraków", VISIT, 1)
    assert case.reasons == ("cohort", "interval") and case.certain
    rows = case_rows(case)
    assert [r["appointment_id"] for r in rows] == ["a1", "a2"]
    assert all("birth" not in key for row in rows for key in row)
    assert cases_from_rows(rows) == [case]
    assert build_case(_series(), {}, {}) is None


def test_counts_are_of_affected_bookings_and_unknown_apart(book: RuleBook) -> None:
    unknown = build_case(
        [_appointment("u1", series="s9")], {"u1": ("unknown",)}, {P: Place("Kraków")}
    )
    assert unknown is not None and not unknown.certain
    counts = count_cases([_case(book), unknown])
    assert counts["affected_cases"] == 1 and counts["affected_bookings"] == 2
    assert counts["unknown_cases"] == 1 and counts["unknown_bookings"] == 1
    assert counts["by_reason"] == {"cohort": 2, "interval": 1, "unknown": 1}
    assert counts["by_county"] == {"Kraków": 2}
    assert counts["by_point"] == {P: 2} and counts["by_product"] == {"comirnaty": 2}
    assert counts["by_day"] == {VISIT.isoformat(): 1, (VISIT + timedelta(days=35)).isoformat(): 1}
    twice = add_counts(counts, counts)
    assert twice["affected_bookings"] == 4 and twice["by_reason"]["cohort"] == 4
