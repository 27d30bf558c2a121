"""Which vaccines a patient may book on a date (common/services/eligible_products.py), on the
in-memory store: each product judged as a booking would judge it, the days it may be booked,
and why the others are refused. Reads only: nothing is ever written."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from common.adapters.firestore_store import ACTIVE_DOSES, REFERRALS, VACCINATIONS
from common.domain.appointments import active_dose_lock_id
from common.domain.errors import InvalidPeselError, ValidationFailedError
from common.domain.pesel import make_pesel, parse_pesel, pesel_key
from common.domain.rulebook import load_rule_book
from common.services.eligible_products import EligibleProductsService
from tests.support.fake_store import FakeUnitsOfWork

SECRET = b"unit-test-pesel-secret"
NOW = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
TODAY = date(2026, 12, 2)
ADULT = make_pesel(date(1980, 5, 17), "F", 1)
CHILD = make_pesel(date(2017, 3, 3), "M", 2)
ADULT_PRODUCTS = ["comirnaty", "spikevax", "vaxzevria", "jcovden", "nuvaxovid"]


def key_of(pesel: str) -> str:
    return pesel_key(parse_pesel(pesel, TODAY), SECRET)


@pytest.fixture
def units() -> FakeUnitsOfWork:
    units = FakeUnitsOfWork(now=lambda: NOW)
    for pesel in (ADULT, CHILD):
        referral_id = f"ref-{key_of(pesel)[:8]}"
        units.store.put(
            REFERRALS,
            referral_id,
            {
                "patient_key": key_of(pesel),
                "referral": {
                    "referral_id": referral_id,
                    "kind": "primary",
                    "valid_from": (TODAY - timedelta(days=10)).isoformat(),
                    "valid_to": (TODAY + timedelta(days=80)).isoformat(),
                    "status": "active",
                    "booster_number": 0,
                },
            },
        )
    return units


def service(units: FakeUnitsOfWork) -> EligibleProductsService:
    return EligibleProductsService(units, load_rule_book(), SECRET)


def test_an_adult_gets_the_adult_products_with_their_commitment(units) -> None:
    answer = service(units).for_pesel(ADULT, None, "portal", NOW)
    assert [p["product"] for p in answer["products"]] == ADULT_PRODUCTS
    comirnaty = answer["products"][0]
    assert (comirnaty["doses"], comirnaty["books_second_dose"]) == (2, True)
    assert (comirnaty["date_from"], comirnaty["date_to"]) == ("2026-12-02", "2027-02-20")
    [refused] = answer["not_eligible"]
    assert (refused["product"], refused["code"]) == ("comirnaty_paediatric", "age_not_allowed")
    assert refused["doses"] == 2  # the catalogue's facts, for the apps' names and intervals
    assert units.store.commits == 0


def test_a_child_gets_only_the_paediatric_product(units) -> None:
    answer = service(units).for_pesel(CHILD, None, "portal", NOW)
    assert [p["product"] for p in answer["products"]] == ["comirnaty_paediatric"]
    assert {r["code"] for r in answer["not_eligible"]} == {"age_not_allowed"}


def test_after_dose_one_only_its_product_in_its_window(units) -> None:
    given = TODAY - timedelta(days=10)
    units.store.put(
        VACCINATIONS,
        "v-1",
        {
            "patient_key": key_of(ADULT),
            "dose": {
                "product_code": "spikevax",
                "dose_number": 1,
                "given_on": given.isoformat(),
                "kind": "primary",
            },
        },
    )
    answer = service(units).for_pesel(ADULT, None, "portal", NOW)
    [spikevax] = answer["products"]
    assert (spikevax["product"], spikevax["dose_number"]) == ("spikevax", 2)
    assert spikevax["books_second_dose"] is False
    # Spikevax: 28-42 days after dose 1.
    assert spikevax["date_from"] == (given + timedelta(days=28)).isoformat()
    assert spikevax["date_to"] == (given + timedelta(days=42)).isoformat()
    refused = {r["product"]: r["code"] for r in answer["not_eligible"]}
    assert refused["comirnaty"] == "dose_interval_violated"


def test_a_dose_booked_already_is_named(units) -> None:
    lock = active_dose_lock_id(key_of(ADULT), "primary", 1)
    units.store.put(ACTIVE_DOSES, lock, {"appointment_id": "a" * 32})
    answer = service(units).for_pesel(ADULT, None, "portal", NOW)
    assert {p["booked_appointment_id"] for p in answer["products"]} == {"a" * 32}


def test_past_the_referral_nothing_and_why(units) -> None:
    later = TODAY + timedelta(days=81)
    answer = service(units).for_pesel(ADULT, later, "portal", NOW)
    assert answer["products"] == []
    # The e-referral is judged first, as a booking judges it.
    assert {r["code"] for r in answer["not_eligible"]} == {"referral_expired"}


def test_bad_input_is_refused(units) -> None:
    with pytest.raises(ValidationFailedError):
        service(units).for_pesel(ADULT, TODAY - timedelta(days=1), "portal", NOW)
    with pytest.raises(ValidationFailedError):
        service(units).for_pesel(ADULT, TODAY + timedelta(days=400), "portal", NOW)
    with pytest.raises(InvalidPeselError):
        service(units).for_pesel(ADULT[:-1] + "0", None, "portal", NOW)
