"""Eligibility rules, table-driven, with the edge days spelled out in each case id."""

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from common.domain import errors
from common.domain.eligibility import (
    CohortRules,
    PreviousDose,
    Referral,
    age_on,
    check_booking_eligibility,
    load_cohort_rules,
    second_dose_allowed,
)
from common.domain.errors import (
    AgeNotAllowedError,
    BoosterNotAllowedError,
    CohortNotOpenError,
    DomainError,
    DoseIntervalError,
    ReferralExpiredError,
    ReferralMissingError,
    ReferralNotYetValidError,
    ReferralUsedError,
)
from common.domain.vaccines import BoosterPolicy, BoosterRule, load_catalogue

WARSAW = ZoneInfo("Europe/Warsaw")
CATALOGUE = load_catalogue()
COHORTS = load_cohort_rules()
D = timedelta  # days offsets read better in tables


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=WARSAW)


def referral(
    valid_from: date = date(2021, 1, 1),
    valid_to: date = date(2022, 12, 31),
    *,
    kind: str = "primary",
    status: str = "active",
    booster_number: int = 0,
) -> Referral:
    return Referral(
        referral_id="ref-1",
        kind=kind,  # type: ignore[arg-type]
        valid_from=valid_from,
        valid_to=valid_to,
        status=status,  # type: ignore[arg-type]
        booster_number=booster_number,
    )


def booking(**overrides: Any) -> dict[str, Any]:
    """A booking that passes every rule; each case overrides what it tests."""
    base: dict[str, Any] = {
        "birth_date": date(1980, 6, 15),
        "referral": referral(),
        "product": "comirnaty",
        "visit_date": date(2021, 6, 10),
        "now": at(2021, 6, 1, 10),
        "channel": "portal",
        "cohorts": COHORTS,
        "previous_doses": (),
    }
    base.update(overrides)
    base["product"] = CATALOGUE.get(base["product"])
    return base


def case(case_id: str, expected: type[DomainError] | None, **overrides: Any) -> Any:
    return pytest.param(overrides, expected, id=case_id)


def primary(code: str, given_on: date, dose: int = 1) -> PreviousDose:
    return PreviousDose(product_code=code, dose_number=dose, given_on=given_on)


def booster_dose(code: str, given_on: date, dose: int = 3) -> PreviousDose:
    return PreviousDose(product_code=code, dose_number=dose, given_on=given_on, kind="booster")


# --- referral --------------------------------------------------------------------------------

REF_FROM, REF_TO = date(2021, 6, 1), date(2021, 7, 30)  # 60 days
REFERRAL_CASES = [
    case("no-referral", ReferralMissingError, referral=None),
    case("cancelled", ReferralMissingError, referral=referral(status="cancelled")),
    case("used", ReferralUsedError, referral=referral(status="used")),
    case(
        "day-before-valid-from",
        ReferralNotYetValidError,
        referral=referral(REF_FROM, REF_TO),
        visit_date=REF_FROM - D(1),
    ),
    case("on-valid-from", None, referral=referral(REF_FROM, REF_TO), visit_date=REF_FROM),
    case("on-valid-to", None, referral=referral(REF_FROM, REF_TO), visit_date=REF_TO),
    case(
        "day-after-valid-to",
        ReferralExpiredError,
        referral=referral(REF_FROM, REF_TO),
        visit_date=REF_TO + D(1),
    ),
    case(
        "90-day-referral-last-day",
        None,
        referral=referral(REF_FROM, REF_FROM + D(89)),
        visit_date=REF_FROM + D(89),
    ),
    case(
        "referral-checked-before-cohort",
        ReferralMissingError,
        referral=None,
        now=at(2020, 12, 1),
    ),
]

# --- cohort opening (born 1955: web 2021-04-06 00:00 CEST, hotline 06:00) ---------------------

B1955 = date(1955, 3, 3)
COHORT_BASE = {"birth_date": B1955, "visit_date": date(2021, 4, 20)}
COHORT_CASES = [
    case("portal-1s-before", CohortNotOpenError, **COHORT_BASE, now=at(2021, 4, 5, 23, 59, 59)),
    case("portal-on-the-minute", None, **COHORT_BASE, now=at(2021, 4, 6)),
    case("sms-on-the-minute", None, **COHORT_BASE, channel="sms", now=at(2021, 4, 6)),
    case("point-on-the-minute", None, **COHORT_BASE, channel="point", now=at(2021, 4, 6)),
    case(
        "hotline-at-web-opening",
        CohortNotOpenError,
        **COHORT_BASE,
        channel="hotline",
        now=at(2021, 4, 6),
    ),
    case(
        "hotline-1s-before-6am",
        CohortNotOpenError,
        **COHORT_BASE,
        channel="hotline",
        now=at(2021, 4, 6, 5, 59, 59),
    ),
    case("hotline-at-6am", None, **COHORT_BASE, channel="hotline", now=at(2021, 4, 6, 6)),
    case(
        "portal-utc-1s-before",
        CohortNotOpenError,
        **COHORT_BASE,
        now=datetime(2021, 4, 5, 21, 59, 59, tzinfo=UTC),
    ),
    case("portal-utc-open", None, **COHORT_BASE, now=datetime(2021, 4, 5, 22, tzinfo=UTC)),
    case(
        "hotline-utc-open",
        None,
        **COHORT_BASE,
        channel="hotline",
        now=datetime(2021, 4, 6, 4, tzinfo=UTC),
    ),
    case(
        "1956-not-open-when-1955-is",
        CohortNotOpenError,
        birth_date=date(1956, 1, 1),
        visit_date=date(2021, 4, 20),
        now=at(2021, 4, 6, 12),
    ),
    case(
        "1951-day-by-day-before-catch-all",
        None,
        birth_date=date(1951, 12, 31),
        visit_date=date(2021, 4, 20),
        now=at(2021, 3, 31),
    ),
    case(
        "80-plus-winter-cet",
        None,
        birth_date=date(1935, 1, 1),
        visit_date=date(2021, 2, 1),
        referral=referral(date(2021, 1, 15)),
        now=datetime(2021, 1, 14, 23, tzinfo=UTC),
    ),
    case(
        "80-plus-winter-cet-1s-before",
        CohortNotOpenError,
        birth_date=date(1935, 1, 1),
        visit_date=date(2021, 2, 1),
        referral=referral(date(2021, 1, 15)),
        now=datetime(2021, 1, 14, 22, 59, 59, tzinfo=UTC),
    ),
    case(
        "born-2009-open-may-1",
        None,
        birth_date=date(2009, 1, 1),
        visit_date=date(2021, 5, 10),
        now=at(2021, 5, 1),
    ),
    case(
        "born-1990-before-may-1",
        CohortNotOpenError,
        birth_date=date(1990, 1, 1),
        visit_date=date(2021, 5, 10),
        now=at(2021, 4, 30, 23, 59, 59),
    ),
    case(
        "born-2010-closed-in-may",
        CohortNotOpenError,
        birth_date=date(2010, 1, 1),
        product="comirnaty_paediatric",
        visit_date=date(2021, 6, 1),
        now=at(2021, 6, 1),
    ),
]

# --- age on the visit date (birthdays in full years) ---------------------------------------

B12 = date(2009, 6, 10)  # 12th birthday 2021-06-10
B18 = date(2003, 6, 10)  # 18th birthday 2021-06-10
BIRTHDAY = date(2021, 6, 10)


def _birthday_cases(
    label: str,
    birth: date,
    product: str,
    before: type[DomainError] | None,
    on: type[DomainError] | None,
) -> list[Any]:
    """Day before / on / after a birthday that moves the patient across an age limit."""
    return [
        case(
            f"{product}-{label}-day-before",
            before,
            birth_date=birth,
            product=product,
            visit_date=BIRTHDAY - D(1),
        ),
        case(
            f"{product}-{label}-on-the-day",
            on,
            birth_date=birth,
            product=product,
            visit_date=BIRTHDAY,
        ),
        case(
            f"{product}-{label}-day-after",
            on,
            birth_date=birth,
            product=product,
            visit_date=BIRTHDAY + D(1),
        ),
    ]


B_PAED_5 = date(2016, 12, 20)  # 5th birthday 2021-12-20, cohort opens 2021-12-13
PAED = {"referral": referral(date(2021, 12, 13), date(2022, 3, 12)), "now": at(2021, 12, 14, 8)}
AGE_CASES = [
    *_birthday_cases("12th", B12, "comirnaty", AgeNotAllowedError, None),
    *_birthday_cases("12th", B12, "spikevax", AgeNotAllowedError, None),
    # The paediatric product is the mirror image: allowed until the day before the 12th.
    *_birthday_cases("12th", B12, "comirnaty_paediatric", None, AgeNotAllowedError),
    *_birthday_cases("18th", B18, "vaxzevria", AgeNotAllowedError, None),
    *_birthday_cases("18th", B18, "jcovden", AgeNotAllowedError, None),
    *_birthday_cases("18th", B18, "nuvaxovid", AgeNotAllowedError, None),
    *_birthday_cases("18th", B18, "comirnaty", None, None),
    case(
        "paediatric-age-4",
        AgeNotAllowedError,
        **PAED,
        birth_date=B_PAED_5,
        product="comirnaty_paediatric",
        visit_date=date(2021, 12, 19),
    ),
    case(
        "paediatric-5th-birthday",
        None,
        **PAED,
        birth_date=B_PAED_5,
        product="comirnaty_paediatric",
        visit_date=date(2021, 12, 20),
    ),
    case(
        "paediatric-age-8",
        None,
        **PAED,
        birth_date=date(2013, 1, 1),
        product="comirnaty_paediatric",
        visit_date=date(2021, 12, 20),
    ),
    case(
        "adult-comirnaty-for-age-8",
        AgeNotAllowedError,
        **PAED,
        birth_date=date(2013, 1, 1),
        visit_date=date(2021, 12, 20),
    ),
    case("paediatric-for-adult", AgeNotAllowedError, product="comirnaty_paediatric"),
    case(
        "paediatric-cohort-1s-before",
        CohortNotOpenError,
        **{**PAED, "now": at(2021, 12, 12, 23, 59, 59)},
        birth_date=date(2013, 1, 1),
        product="comirnaty_paediatric",
        visit_date=date(2021, 12, 20),
    ),
    case(
        "feb29-born-day-before-18th",
        AgeNotAllowedError,
        birth_date=date(2004, 2, 29),
        product="vaxzevria",
        referral=referral(date(2022, 1, 1)),
        now=at(2022, 1, 1),
        visit_date=date(2022, 2, 28),
    ),
    case(
        "feb29-born-18-on-mar-1",
        None,
        birth_date=date(2004, 2, 29),
        product="vaxzevria",
        referral=referral(date(2022, 1, 1)),
        now=at(2022, 1, 1),
        visit_date=date(2022, 3, 1),
    ),
]

# --- second dose of a primary series (first dose 2021-05-10) ---------------------------------

FIRST_DOSE = date(2021, 5, 10)
PAED_FIRST_DOSE = date(2022, 1, 10)
TWO_DOSE = ["comirnaty", "comirnaty_paediatric", "spikevax", "vaxzevria", "nuvaxovid"]
INTERVALS = {
    code: (CATALOGUE.get(code).min_interval_days, CATALOGUE.get(code).max_interval_days)
    for code in TWO_DOSE
}


def _interval_cases() -> list[Any]:
    cases = []
    for code, (lo, hi) in INTERVALS.items():
        assert lo is not None and hi is not None
        for label, days, expected in (
            (f"min-1={lo - 1}", lo - 1, DoseIntervalError),
            (f"min={lo}", lo, None),
            (f"max={hi}", hi, None),
            (f"max+1={hi + 1}", hi + 1, DoseIntervalError),
        ):
            # The paediatric product needs a child, whose cohort opened in December 2021.
            child = code == "comirnaty_paediatric"
            first = PAED_FIRST_DOSE if child else FIRST_DOSE
            cases.append(
                case(
                    f"{code}-dose2-day-{label}",
                    expected,
                    birth_date=date(2012, 1, 1) if child else date(1980, 6, 15),
                    product=code,
                    now=at(2022, 1, 5) if child else at(2021, 5, 5),
                    visit_date=first + D(days),
                    previous_doses=(primary(code, first),),
                )
            )
    return cases


DOSE2_CASES = [
    *_interval_cases(),
    case(
        "other-product-first-dose-not-windowed",
        None,
        visit_date=FIRST_DOSE + D(1),
        previous_doses=(primary("vaxzevria", FIRST_DOSE),),
    ),
]

# --- boosters (primary comirnaty 2021-05-01 + 2021-06-05) ----------------------------------

PRIMARY_DONE = date(2021, 6, 5)
PRIMARY = (primary("comirnaty", date(2021, 5, 1)), primary("comirnaty", PRIMARY_DONE, dose=2))
B1 = {
    "referral": referral(kind="booster", booster_number=1),
    "previous_doses": PRIMARY,
    "now": at(2021, 10, 1),
}
BOOSTER1_CASES = [
    case("booster1-149-days", DoseIntervalError, **B1, visit_date=PRIMARY_DONE + D(149)),
    case("booster1-150-days", None, **B1, visit_date=PRIMARY_DONE + D(150)),
    case("booster1-151-days", None, **B1, visit_date=PRIMARY_DONE + D(151)),
    case(
        "booster1-spikevax-150-days",
        None,
        **B1,
        product="spikevax",
        visit_date=PRIMARY_DONE + D(150),
    ),
    case(
        "booster1-vaxzevria-vector-refused",
        BoosterNotAllowedError,
        **B1,
        product="vaxzevria",
        visit_date=PRIMARY_DONE + D(200),
    ),
    case(
        "booster1-jcovden-vector-refused",
        BoosterNotAllowedError,
        **B1,
        product="jcovden",
        visit_date=PRIMARY_DONE + D(200),
    ),
    case(
        "booster1-nuvaxovid-refused",
        BoosterNotAllowedError,
        **B1,
        product="nuvaxovid",
        visit_date=PRIMARY_DONE + D(200),
    ),
    case(
        "booster1-after-jcovden-single-dose",
        None,
        **{**B1, "previous_doses": (primary("jcovden", PRIMARY_DONE),)},
        visit_date=PRIMARY_DONE + D(150),
    ),
    case(
        "booster1-age-17-refused",
        AgeNotAllowedError,
        **B1,
        birth_date=date(2004, 1, 1),
        visit_date=PRIMARY_DONE + D(200),
    ),
    case(
        "booster1-day-of-18th",
        None,
        **B1,
        birth_date=(PRIMARY_DONE + D(200)).replace(year=2003),
        visit_date=PRIMARY_DONE + D(200),
    ),
    case(
        "booster1-no-previous-dose",
        BoosterNotAllowedError,
        **{**B1, "previous_doses": ()},
        visit_date=PRIMARY_DONE + D(200),
    ),
    case(
        "booster-number-inferred-as-1",
        DoseIntervalError,
        **{**B1, "referral": referral(kind="booster")},
        visit_date=PRIMARY_DONE + D(149),
    ),
]

# --- second booster: 80+ after 150 days, 60-79 after 120 days -----------------------------

BOOSTER1_ON = date(2022, 1, 10)
HISTORY = (*PRIMARY, booster_dose("comirnaty", BOOSTER1_ON))
B2 = {
    "referral": referral(kind="booster", booster_number=2),
    "previous_doses": HISTORY,
    "now": at(2022, 4, 1),
}
AGED_85, AGED_65, AGED_45 = date(1937, 1, 1), date(1957, 1, 1), date(1977, 1, 1)
BOOSTER2_CASES = [
    case(
        "booster2-80plus-119-days",
        DoseIntervalError,
        **B2,
        birth_date=AGED_85,
        visit_date=BOOSTER1_ON + D(119),
    ),
    case(
        "booster2-80plus-120-days",
        DoseIntervalError,
        **B2,
        birth_date=AGED_85,
        visit_date=BOOSTER1_ON + D(120),
    ),
    case(
        "booster2-80plus-149-days",
        DoseIntervalError,
        **B2,
        birth_date=AGED_85,
        visit_date=BOOSTER1_ON + D(149),
    ),
    case(
        "booster2-80plus-150-days", None, **B2, birth_date=AGED_85, visit_date=BOOSTER1_ON + D(150)
    ),
    case(
        "booster2-60-79-119-days",
        DoseIntervalError,
        **B2,
        birth_date=AGED_65,
        visit_date=BOOSTER1_ON + D(119),
    ),
    case(
        "booster2-60-79-120-days", None, **B2, birth_date=AGED_65, visit_date=BOOSTER1_ON + D(120)
    ),
    case(
        "booster2-60-79-149-days", None, **B2, birth_date=AGED_65, visit_date=BOOSTER1_ON + D(149)
    ),
    case(
        "booster2-60-79-150-days", None, **B2, birth_date=AGED_65, visit_date=BOOSTER1_ON + D(150)
    ),
    case(
        "booster2-under-60-refused",
        AgeNotAllowedError,
        **B2,
        birth_date=AGED_45,
        visit_date=BOOSTER1_ON + D(200),
    ),
    # Age bands are read on the visit date: 79 the day before the 80th birthday.
    case(
        "booster2-day-before-80th-uses-120",
        None,
        **B2,
        birth_date=date(1942, 5, 11),
        visit_date=BOOSTER1_ON + D(120),
    ),
    case(
        "booster2-on-80th-uses-150",
        DoseIntervalError,
        **B2,
        birth_date=date(1942, 5, 10),
        visit_date=BOOSTER1_ON + D(120),
    ),
    case(
        "booster2-day-before-60th",
        AgeNotAllowedError,
        **B2,
        birth_date=date(1962, 5, 11),
        visit_date=BOOSTER1_ON + D(120),
    ),
    case(
        "booster2-on-60th",
        None,
        **B2,
        birth_date=date(1962, 5, 10),
        visit_date=BOOSTER1_ON + D(120),
    ),
    case(
        "booster2-jcovden-refused",
        BoosterNotAllowedError,
        **B2,
        birth_date=AGED_85,
        product="jcovden",
        visit_date=BOOSTER1_ON + D(200),
    ),
    case(
        "booster-number-inferred-as-2",
        None,
        **{**B2, "referral": referral(kind="booster")},
        birth_date=AGED_65,
        visit_date=BOOSTER1_ON + D(120),
    ),
    case(
        "booster3-not-offered",
        BoosterNotAllowedError,
        **{**B2, "referral": referral(kind="booster", booster_number=3)},
        birth_date=AGED_85,
        visit_date=BOOSTER1_ON + D(300),
    ),
    case(
        "paediatric-booster-refused",
        BoosterNotAllowedError,
        **{**B1, "now": at(2022, 1, 10)},
        birth_date=date(2012, 1, 1),
        product="comirnaty_paediatric",
        visit_date=date(2022, 2, 1),
    ),
]

ALL_CASES = [
    *REFERRAL_CASES,
    *COHORT_CASES,
    *AGE_CASES,
    *DOSE2_CASES,
    *BOOSTER1_CASES,
    *BOOSTER2_CASES,
]


@pytest.mark.parametrize(("overrides", "expected"), ALL_CASES)
def test_booking_eligibility(overrides: dict[str, Any], expected: type[DomainError] | None) -> None:
    kwargs = booking(**overrides)
    if expected is None:
        check_booking_eligibility(**kwargs)
    else:
        with pytest.raises(expected) as exc:
            check_booking_eligibility(**kwargs)
        # The exact class, not a sibling that happens to share a base.
        assert type(exc.value) is expected


# --- details that callers rely on -------------------------------------------------------------


def test_cohort_error_says_when_it_opens_per_channel() -> None:
    with pytest.raises(CohortNotOpenError) as exc:
        check_booking_eligibility(
            **booking(**COHORT_BASE, channel="hotline", now=at(2021, 4, 6, 5))
        )
    assert exc.value.details == {"channel": "hotline", "opens_at": "2021-04-06T06:00:00+02:00"}
    assert "2021-04-06 at 06:00" in exc.value.message


def test_booster_interval_error_gives_the_earliest_date() -> None:
    with pytest.raises(DoseIntervalError) as exc:
        check_booking_eligibility(**booking(**B1, visit_date=PRIMARY_DONE + D(149)))
    assert exc.value.details["earliest"] == (PRIMARY_DONE + D(150)).isoformat()
    assert exc.value.details["min_days"] == 150


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        check_booking_eligibility(**booking(now=datetime(2021, 6, 1, 10)))


def test_custom_booster_policy() -> None:
    """A policy given as data replaces the default: 90 days instead of 150."""
    policy = BoosterPolicy(
        rules=(BoosterRule(booster_number=1, min_age=18, min_days_since_last_dose=90),)
    )
    day_90 = booking(**B1, visit_date=PRIMARY_DONE + D(90))
    # The default policy (150 days) refuses day 90 ...
    with pytest.raises(DoseIntervalError):
        check_booking_eligibility(**day_90)
    # ... the custom one allows it, and still refuses the day before its own limit.
    check_booking_eligibility(**day_90, booster_policy=policy)
    with pytest.raises(DoseIntervalError):
        check_booking_eligibility(
            **booking(**B1, visit_date=PRIMARY_DONE + D(89)), booster_policy=policy
        )


# --- second_dose_allowed -----------------------------------------------------------------------


def _window_cases() -> list[Any]:
    cases = []
    for code, (lo, hi) in INTERVALS.items():
        assert lo is not None and hi is not None
        for days, ok in ((lo - 1, False), (lo, True), (hi, True), (hi + 1, False)):
            cases.append(
                pytest.param(code, days, ok, id=f"{code}-day-{days}-{'ok' if ok else 'refused'}")
            )
    return cases


@pytest.mark.parametrize(("code", "days", "ok"), _window_cases())
def test_second_dose_allowed(code: str, days: int, ok: bool) -> None:
    product = CATALOGUE.get(code)
    second = FIRST_DOSE + D(days)
    if ok:
        second_dose_allowed(product, FIRST_DOSE, second)
    else:
        with pytest.raises(DoseIntervalError) as exc:
            second_dose_allowed(product, FIRST_DOSE, second)
        assert set(exc.value.details) == {"product", "earliest", "latest"}


def test_single_dose_product_has_no_second_dose() -> None:
    with pytest.raises(DoseIntervalError) as exc:
        second_dose_allowed(CATALOGUE.get("jcovden"), FIRST_DOSE, FIRST_DOSE + D(60))
    assert exc.value.details["reason"] == "single_dose_product"


# --- age_on -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "day", "age"),
    [
        pytest.param(date(2000, 6, 10), date(2000, 6, 10), 0, id="birth-day"),
        pytest.param(date(2000, 6, 10), date(2018, 6, 9), 17, id="day-before-18th"),
        pytest.param(date(2000, 6, 10), date(2018, 6, 10), 18, id="18th"),
        pytest.param(date(2000, 12, 31), date(2001, 1, 1), 0, id="new-year"),
        pytest.param(date(2004, 2, 29), date(2022, 2, 28), 17, id="feb29-common-year-feb28"),
        pytest.param(date(2004, 2, 29), date(2022, 3, 1), 18, id="feb29-common-year-mar1"),
        pytest.param(date(2004, 2, 29), date(2024, 2, 28), 19, id="feb29-leap-year-feb28"),
        pytest.param(date(2004, 2, 29), date(2024, 2, 29), 20, id="feb29-leap-year-feb29"),
        pytest.param(date(1941, 1, 1), date(2021, 1, 1), 80, id="80th"),
    ],
)
def test_age_on(birth: date, day: date, age: int) -> None:
    assert age_on(birth, day) == age


def test_age_before_birth_is_an_error() -> None:
    with pytest.raises(ValueError):
        age_on(date(2000, 1, 2), date(2000, 1, 1))


# --- cohort rules ---------------------------------------------------------------------------


def _rules(**overrides: Any) -> CohortRules:
    raw: dict[str, Any] = {
        "version": "t",
        "timezone": "Europe/Warsaw",
        "channel_delay_hours": {"portal": 0, "sms": 0, "point": 0, "hotline": 6},
        "cohorts": [{"born_to": 1960, "opens_at": "2021-03-28T00:00:00"}],
    }
    raw.update(overrides)
    return CohortRules.model_validate(raw)


def test_hotline_opens_at_6_local_even_on_the_dst_night() -> None:
    # 2021-03-28: clocks jump 02:00 -> 03:00, so 06:00 local is 04:00 UTC (5 h after midnight).
    rules = _rules()
    web = rules.opens_at(date(1950, 1, 1), "portal")
    hotline = rules.opens_at(date(1950, 1, 1), "hotline")
    assert web is not None and hotline is not None
    assert web.astimezone(UTC) == datetime(2021, 3, 27, 23, tzinfo=UTC)
    assert hotline.astimezone(UTC) == datetime(2021, 3, 28, 4, tzinfo=UTC)


def test_earliest_overlapping_opening_wins() -> None:
    assert COHORTS.opens_at(date(1951, 7, 1), "portal") == at(2021, 3, 31)
    assert COHORTS.opens_at(date(1980, 7, 1), "portal") == at(2021, 5, 1)
    assert COHORTS.opens_at(date(1980, 7, 1), "hotline") == at(2021, 5, 1, 6)


def test_packaged_rules_open_everyone_born_2009_or_earlier_by_may_2021() -> None:
    for year in range(1900, 2010):
        assert COHORTS.is_open(date(year, 12, 31), "portal", at(2021, 5, 1))
    assert not COHORTS.is_open(date(2010, 1, 1), "portal", at(2021, 5, 1))


def test_uncovered_birth_year_is_never_open() -> None:
    rules = _rules()
    assert rules.opens_at(date(1990, 1, 1), "portal") is None
    with pytest.raises(CohortNotOpenError) as exc:
        check_booking_eligibility(
            **booking(birth_date=date(1990, 1, 1), cohorts=rules, now=at(2030, 1, 1))
        )
    assert exc.value.details["opens_at"] is None


def test_aware_opens_at_in_yaml_is_honoured() -> None:
    rules = _rules(cohorts=[{"born_to": 1960, "opens_at": "2021-03-27T23:00:00+00:00"}])
    assert rules.opens_at(date(1950, 1, 1), "hotline") == at(2021, 3, 28, 6)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"timezone": "Mars/Olympus"}, id="unknown-timezone"),
        pytest.param({"channel_delay_hours": {"portal": 0}}, id="missing-channels"),
        pytest.param(
            {"channel_delay_hours": {"portal": -1, "sms": 0, "point": 0, "hotline": 6}},
            id="negative-delay",
        ),
        pytest.param(
            {"cohorts": [{"born_from": 1960, "born_to": 1950, "opens_at": "2021-01-01T00:00:00"}]},
            id="reversed-years",
        ),
    ],
)
def test_bad_cohort_rules_are_rejected(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _rules(**overrides)


# --- referral model ------------------------------------------------------------------------


def test_referral_dates_must_be_ordered() -> None:
    with pytest.raises(ValidationError):
        referral(date(2021, 6, 2), date(2021, 6, 1))


def test_models_are_frozen() -> None:
    with pytest.raises(ValidationError):
        referral().status = "used"  # type: ignore[misc]


# --- the error catalogue (API contract: codes and statuses must not drift) --------------------

ERROR_CONTRACT = [
    ("InvalidPeselError", 400, "invalid_pesel"),
    ("UnknownProductError", 400, "unknown_product"),
    ("ReferralMissingError", 403, "referral_missing"),
    ("ReferralExpiredError", 403, "referral_expired"),
    ("ReferralNotYetValidError", 403, "referral_not_yet_valid"),
    ("ReferralUsedError", 409, "referral_used"),
    ("CohortNotOpenError", 403, "cohort_not_open"),
    ("AgeNotAllowedError", 403, "age_not_allowed"),
    ("DoseIntervalError", 400, "dose_interval_violated"),
    ("BoosterNotAllowedError", 403, "booster_not_allowed"),
    ("ProductNotOfferedError", 400, "product_not_offered"),
    ("SlotUnavailableError", 409, "slot_unavailable"),
    ("AlreadyBookedError", 409, "already_booked"),
    ("AppointmentNotFoundError", 404, "appointment_not_found"),
    ("InvalidStateTransitionError", 409, "invalid_state"),
    ("ValidationFailedError", 400, "invalid_request"),
    ("IdempotencyKeyMismatchError", 422, "idempotency_key_mismatch"),
    ("RequestInProgressError", 409, "request_in_progress"),
    ("UnauthenticatedError", 401, "unauthenticated"),
    ("ForbiddenError", 403, "forbidden"),
    ("NotFoundError", 404, "not_found"),
    ("DependencyUnavailableError", 503, "dependency_unavailable"),
]


@pytest.mark.parametrize(
    ("name", "status", "code"), ERROR_CONTRACT, ids=[e[0] for e in ERROR_CONTRACT]
)
def test_error_contract(name: str, status: int, code: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, DomainError)
    assert (cls.http_status, cls.code) == (status, code)
    error = cls()
    assert error.message == cls.__doc__.strip().splitlines()[0]
    assert str(error) == error.message
    assert error.to_dict() == {"code": code, "message": error.message}


def test_error_codes_are_unique() -> None:
    codes = [cls.code for cls in errors.ALL_ERRORS]
    assert len(codes) == len(set(codes))
    # The published contract stays: later issues may add codes, never rename these.
    assert {code for _, _, code in ERROR_CONTRACT} <= set(codes)


def test_error_message_and_details() -> None:
    error = errors.SlotUnavailableError("Taken.", details={"slot_id": "s1"})
    assert error.to_dict() == {
        "code": "slot_unavailable",
        "message": "Taken.",
        "details": {"slot_id": "s1"},
    }


def test_errors_scrub_anything_shaped_like_a_pesel() -> None:
    error = errors.ForbiddenError("no access to 44051401359", details={"who": ["44051401359"]})
    assert "44051401359" not in error.message
    assert "44051401359" not in repr(error.to_dict())


def test_dependency_unavailable_retry_after() -> None:
    assert errors.DependencyUnavailableError().retry_after_s == 5
    assert errors.DependencyUnavailableError(retry_after_s=30).retry_after_s == 30
    assert errors.DependencyUnavailableError.retry_after_s == 5
