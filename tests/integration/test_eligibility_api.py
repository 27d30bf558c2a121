"""docs/reliability.md item 9 through the API: who may book what, and when.

The domain rules have unit tests (tests/unit/test_eligibility.py); these rows go through the
gateway, the function, the booking service and the emulator, so they also prove that the
entry point passes the right clock, channel and visit date to the rules. The clock is
`common.wiring.now`, patched per row; each row gets its own project, point and patient.

Every refusal must carry its code and status and leave every collection as it was; every
acceptance must book the whole series (two appointments for a two-dose product).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from google.cloud import firestore

from common import wiring
from common.adapters.firestore_store import PATIENTS
from common.config import Settings
from common.domain.pesel import make_pesel, parse_pesel, pesel_key
from tests.support.stack import Api, add_patient, add_point, firestore_client

WARSAW = ZoneInfo("Europe/Warsaw")
PRODUCTS = ("comirnaty", "comirnaty_paediatric", "spikevax", "vaxzevria", "jcovden", "nuvaxovid")
TWO_DOSES = {"comirnaty", "comirnaty_paediatric", "spikevax", "vaxzevria", "nuvaxovid"}
# Inside every two-dose product's window (21-42, 28-42, 28-84 days).
SECOND_DOSE_AFTER = timedelta(days=35)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    return datetime(year, month, day, hour, minute, second, tzinfo=WARSAW)


@dataclass(frozen=True)
class Row:
    now: datetime
    born: date
    product: str
    visit: date | None = None  # default: two weeks after `now`
    role: str = "patient"  # patient -> portal, agent -> hotline, staff -> point
    referral: tuple[int, int] | None = (-10, 80)  # validity, days from `now`; None: none at all
    referral_status: str = "active"
    referral_kind: str = "primary"
    status: int = 201
    code: str | None = None

    @property
    def visit_day(self) -> date:
        return self.visit or (self.now + timedelta(days=14)).date()


# The cohort of 1955 opens on 6 April 2021 at 00:00 (Warsaw) on the web, 06:00 on the hotline.
OPENING = dict(born=date(1955, 6, 15), product="jcovden", visit=date(2021, 4, 20))
COHORTS = {
    "1955_portal_a_second_before_midnight": Row(
        now=at(2021, 4, 5, 23, 59, 59), **OPENING, status=403, code="cohort_not_open"
    ),
    "1955_portal_at_midnight": Row(now=at(2021, 4, 6), **OPENING),
    "1955_hotline_at_midnight": Row(
        now=at(2021, 4, 6), role="agent", **OPENING, status=403, code="cohort_not_open"
    ),
    "1955_hotline_a_second_before_six": Row(
        now=at(2021, 4, 6, 5, 59, 59), role="agent", **OPENING, status=403, code="cohort_not_open"
    ),
    "1955_hotline_at_six": Row(now=at(2021, 4, 6, 6), role="agent", **OPENING),
    "1955_point_at_midnight": Row(now=at(2021, 4, 6), role="staff", **OPENING),
    "1956_not_yet_when_1955_opens": Row(
        now=at(2021, 4, 6),
        born=date(1956, 1, 1),
        product="jcovden",
        visit=date(2021, 4, 20),
        status=403,
        code="cohort_not_open",
    ),
    "1950_long_open_when_1955_opens": Row(
        now=at(2021, 4, 6), born=date(1950, 12, 31), product="jcovden", visit=date(2021, 4, 20)
    ),
    # Children 5-11 opened on 13 December 2021.
    "2012_child_the_day_before": Row(
        now=at(2021, 12, 12, 23, 0),
        born=date(2012, 3, 1),
        product="comirnaty_paediatric",
        status=403,
        code="cohort_not_open",
    ),
    "2012_child_on_the_day": Row(
        now=at(2021, 12, 13, 0, 5), born=date(2012, 3, 1), product="comirnaty_paediatric"
    ),
}

# A fixed day after every cohort opened: only the referral and the age decide.
DAY = at(2026, 3, 2, 10)
ADULT = date(1980, 5, 17)
REFERRALS = {
    "referral_covers_the_visit": Row(now=DAY, born=ADULT, product="jcovden"),
    "referral_expires_the_day_before_the_visit": Row(
        now=DAY,
        born=ADULT,
        product="jcovden",
        referral=(-30, 13),
        status=403,
        code="referral_expired",
    ),
    "referral_expires_on_the_visit_day": Row(
        now=DAY, born=ADULT, product="jcovden", referral=(-30, 14)
    ),
    "referral_valid_from_the_day_after_the_visit": Row(
        now=DAY,
        born=ADULT,
        product="jcovden",
        referral=(15, 80),
        status=403,
        code="referral_not_yet_valid",
    ),
    "referral_valid_from_the_visit_day": Row(
        now=DAY, born=ADULT, product="jcovden", referral=(14, 80)
    ),
    "referral_used": Row(
        now=DAY,
        born=ADULT,
        product="jcovden",
        referral_status="used",
        status=409,
        code="referral_used",
    ),
    "referral_cancelled": Row(
        now=DAY,
        born=ADULT,
        product="jcovden",
        referral_status="cancelled",
        status=403,
        code="referral_missing",
    ),
    "no_referral_at_all": Row(
        now=DAY,
        born=ADULT,
        product="jcovden",
        referral=None,
        status=403,
        code="referral_missing",
    ),
    "only_a_booster_referral_for_a_first_dose": Row(
        now=DAY,
        born=ADULT,
        product="comirnaty",
        referral_kind="booster",
        status=403,
        code="referral_missing",
    ),
}

VISIT = date(2026, 3, 16)  # two weeks after DAY


def _ages() -> dict[str, Row]:
    def row(born: date, product: str, ok: bool, visit: date = VISIT, now: datetime = DAY) -> Row:
        if ok:
            return Row(now=now, born=born, product=product, visit=visit)
        return Row(
            now=now, born=born, product=product, visit=visit, status=403, code="age_not_allowed"
        )

    seventeen, twelve, seven = date(2008, 6, 1), date(2013, 6, 1), date(2018, 6, 1)
    eighteen_on_visit, twelve_on_visit = date(2008, 3, 16), date(2014, 3, 16)
    five_on_visit, leap = date(2021, 3, 16), date(2008, 2, 29)
    leap_now = at(2026, 2, 20, 10)
    return {
        "17_vaxzevria_refused": row(seventeen, "vaxzevria", False),
        "17_nuvaxovid_refused": row(seventeen, "nuvaxovid", False),
        "17_comirnaty_allowed": row(seventeen, "comirnaty", True),
        "12_comirnaty_allowed": row(twelve, "comirnaty", True),
        # The catalogue (rules/vaccines.yaml) authorises Spikevax from 12.
        "12_spikevax_allowed": row(twelve, "spikevax", True),
        "12_paediatric_refused": row(twelve, "comirnaty_paediatric", False),
        "12_jcovden_refused": row(twelve, "jcovden", False),
        "7_paediatric_allowed": row(seven, "comirnaty_paediatric", True),
        "7_comirnaty_refused": row(seven, "comirnaty", False),
        "7_spikevax_refused": row(seven, "spikevax", False),
        # Age on the visit date, not today: 17 when booking, 18 on the day of the visit.
        "18+_the_day_before_the_18th_birthday": row(
            eighteen_on_visit, "jcovden", False, VISIT - timedelta(days=1)
        ),
        "18+_on_the_18th_birthday": row(eighteen_on_visit, "jcovden", True),
        "paediatric_the_day_before_the_12th_birthday": row(
            twelve_on_visit, "comirnaty_paediatric", True, VISIT - timedelta(days=1)
        ),
        "paediatric_on_the_12th_birthday": row(twelve_on_visit, "comirnaty_paediatric", False),
        "comirnaty_on_the_12th_birthday": row(twelve_on_visit, "comirnaty", True),
        "comirnaty_the_day_before_the_12th_birthday": row(
            twelve_on_visit, "comirnaty", False, VISIT - timedelta(days=1)
        ),
        "paediatric_the_day_before_the_5th_birthday": row(
            five_on_visit, "comirnaty_paediatric", False, VISIT - timedelta(days=1)
        ),
        "paediatric_on_the_5th_birthday": row(five_on_visit, "comirnaty_paediatric", True),
        # Born on 29 February: 18 on 1 March in a common year, not on 28 February.
        "29_february_born_on_28_february": row(leap, "jcovden", False, date(2026, 2, 28), leap_now),
        "29_february_born_on_1_march": row(leap, "jcovden", True, date(2026, 3, 1), leap_now),
    }


AGES = _ages()
TABLE = {**COHORTS, **REFERRALS, **AGES}


def snapshot(db: firestore.Client) -> dict[str, int]:
    return {c.id: sum(1 for _ in c.stream()) for c in db.collections()}


def _patient(db: firestore.Client, row: Row) -> str:
    today = row.now.astimezone(WARSAW).date()
    if row.referral is None:
        # The patient exists, with no e-referral of any kind.
        pesel = make_pesel(row.born, "F", 7)
        key = pesel_key(parse_pesel(pesel, today), Settings.from_env().pesel_hash_key)
        db.collection(PATIENTS).document(key).set({"patient_key": key, "pesel": pesel})
        return pesel
    return add_patient(
        db,
        born=row.born,
        serial=7,
        referral_days=row.referral,
        kind=row.referral_kind,
        today=today,
        status=row.referral_status,
    )


@pytest.mark.parametrize("name", list(TABLE))
def test_eligibility(project: str, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    row = TABLE[name]
    monkeypatch.setattr(wiring, "now", lambda: row.now)
    db = firestore_client(project)
    visit = row.visit_day
    assert datetime.combine(visit, time(10, 0), WARSAW) > row.now, "slots must be in the future"
    add_point(
        db,
        "pt-00001",
        products=PRODUCTS,
        slots=[(visit, time(10, 0), row.product, 5)]
        + (
            [(visit + SECOND_DOSE_AFTER, time(10, 0), row.product, 5)]
            if row.product in TWO_DOSES
            else []
        ),
    )
    pesel = _patient(db, row)
    api = Api(project)
    slot_id = f"pt-00001_{visit:%Y%m%d}_1000_{row.product}"
    if row.role == "patient":
        token, body = api.token("p-1", "patient", pesel=pesel), {"slot_id": slot_id}
    elif row.role == "agent":
        token = api.token("a-1", "agent")
        body = {"slot_id": slot_id, "pesel": pesel, "reason": "caller on the 989 line"}
    else:
        token = api.token("s-1", "staff", point_id="pt-00001")
        body = {"slot_id": slot_id, "pesel": pesel}
    before = snapshot(db)

    response = api.call("POST", "/v1/appointments", token=token, body=body, key=f"k-{name}")

    text = response.get_data(as_text=True)
    assert response.status_code == row.status, text
    if row.status == 201:
        appointments = response.get_json()["appointments"]
        assert len(appointments) == (2 if row.product in TWO_DOSES else 1)
        assert appointments[0]["slot_id"] == slot_id
        assert appointments[0]["day"] == visit.isoformat()
        assert {a["product"] for a in appointments} == {row.product}
        channel = {"patient": "portal", "agent": "hotline", "staff": "point"}[row.role]
        assert {a["channel"] for a in appointments} == {channel}
        return
    assert response.get_json()["error"]["code"] == row.code, text
    assert pesel not in text
    assert snapshot(db) == before


def test_the_hotline_is_told_when_it_opens(project: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The refusal says when this cohort opens on this channel: 06:00 local for the hotline.
    row = COHORTS["1955_hotline_at_midnight"]
    monkeypatch.setattr(wiring, "now", lambda: row.now)
    db = firestore_client(project)
    add_point(db, "pt-00001", products=PRODUCTS, slots=[(row.visit_day, time(10, 0), "jcovden", 5)])
    pesel = _patient(db, row)
    api = Api(project)
    response = api.call(
        "POST",
        "/v1/appointments",
        token=api.token("a-1", "agent"),
        body={
            "slot_id": f"pt-00001_{row.visit_day:%Y%m%d}_1000_jcovden",
            "pesel": pesel,
            "reason": "caller on the 989 line",
        },
        key="k",
    )
    assert response.status_code == 403
    details = response.get_json()["error"]["details"]
    assert details == {"channel": "hotline", "opens_at": "2021-04-06T06:00:00+02:00"}


def test_a_refused_row_can_book_once_the_clock_moves_on(
    project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The refusal is about the moment, not the patient: nothing is remembered against them.
    # The same Idempotency-Key books once the cohort opens (the refusal freed the key).
    clock = {"now": at(2021, 4, 5, 23, 59, 59)}
    monkeypatch.setattr(wiring, "now", lambda: clock["now"])
    db = firestore_client(project)
    visit = date(2021, 4, 20)
    add_point(db, "pt-00001", products=PRODUCTS, slots=[(visit, time(10, 0), "jcovden", 5)])
    pesel = add_patient(db, born=date(1955, 6, 15), today=date(2021, 4, 5))
    api = Api(project)
    token = api.token("p-1", "patient", pesel=pesel)
    body = {"slot_id": f"pt-00001_{visit:%Y%m%d}_1000_jcovden"}
    first = api.call("POST", "/v1/appointments", token=token, body=body, key="same")
    assert first.status_code == 403
    clock["now"] = at(2021, 4, 6)
    second = api.call("POST", "/v1/appointments", token=token, body=body, key="same")
    assert second.status_code == 201, second.get_data(as_text=True)
