"""Expected time to a first dose (issue 15, item 6), against the emulators.

Two points in Kraków county and one in Warsaw; bookings, the scheduled measurement
(`measure_booking_rates`), the waitlist (documents of `waitlist`, the interface's default
source) and reservations move the estimate the way docs/expected-wait.md says. Days are
counted from today in Warsaw and the slots lie days ahead, so the hour does not matter.
"""

from __future__ import annotations

import uuid
from datetime import date, time, timedelta
from typing import Any

import pytest

from common import clock, wiring
from common.services.availability import AvailabilityFolder
from common.services.directory import calendar_document
from common.services.expected_wait import WAIT_ESTIMATES, WAITLIST, county_id
from tests.support.points import sid
from tests.support.stack import Api, add_patient, add_points, firestore_client

KRAKOW = county_id("małopolskie", "Kraków")
COHORT = "1941-1950"


def _point(point_id: str, county: str, voivodeship: str, lat: float, lon: float) -> dict:
    return {
        "point_id": point_id,
        "name": f"Punkt {point_id}",
        "street": "ul. Długa 1",
        "postcode": "31-001",
        "place": county,
        "county": county,
        "voivodeship": voivodeship,
        "lat": lat,
        "lon": lon,
        "products": ["jcovden", "comirnaty"],
        "accessible": True,
    }


class World:
    def __init__(self, project: str) -> None:
        self.db = firestore_client(project)
        self.api = Api(project)
        today = clock.today_warsaw()
        self.d3, self.d5 = today + timedelta(days=3), today + timedelta(days=5)
        add_points(
            self.db,
            [
                _point("pt-00001", "Kraków", "małopolskie", 50.0614, 19.9366),
                _point("pt-00002", "Kraków", "małopolskie", 50.0700, 19.9500),
                _point("pt-00003", "Warszawa", "mazowieckie", 52.2297, 21.0122),
            ],
            [
                calendar_document("pt-00001", [(self.d3, time(9, 0), "jcovden", 2)]),
                calendar_document("pt-00002", [(self.d5, time(9, 0), "jcovden", 3)]),
                calendar_document("pt-00003", [(today + timedelta(days=1), time(9), "jcovden", 9)]),
            ],
        )
        self.serials = iter(range(1, 1000))

    def token(self, role: str, pesel: str | None = None) -> str:
        return self.api.token(f"{role}-{pesel or 1}", role, pesel=pesel)

    def book(self, slot: str, born: date = date(1980, 5, 17)) -> None:
        pesel = add_patient(self.db, born=born, serial=next(self.serials))
        response = self.api.call(
            "POST",
            "/v1/appointments",
            token=self.token("patient", pesel),
            body={"slot_id": slot},
            key=uuid.uuid4().hex,
        )
        assert response.status_code == 201, response.get_json()

    def settle(self) -> None:
        """What the background does in production: fold the deltas, measure, refresh views."""
        AvailabilityFolder(self.db).fold_all()
        wiring.booking_rate_meter().measure(clock.now())
        wiring.search_service().view.invalidate()
        wiring.expected_wait_service().invalidate()

    def table(self, **query: str) -> list[dict[str, Any]]:
        response = self.api.call(
            "GET", "/v1/admin/expected-wait", token=self.token("admin"), query=query
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()["rows"]

    def krakow(self, cohort: str = COHORT) -> dict[str, Any]:
        [row] = self.table(county="Kraków", cohort=cohort)
        return row


@pytest.fixture
def world(project: str) -> World:
    return World(project)


def test_the_estimate_follows_free_seats_rate_and_waitlist(world: World) -> None:
    world.settle()
    row = world.krakow()
    assert (row["county"], row["voivodeship"], row["cohort"]) == ("Kraków", "małopolskie", COHORT)
    # Free seats cover the person: the first free seat's day. Nothing booked yet.
    assert (row["days"], row["basis"], row["free_seats"], row["rate_per_day"]) == (
        3,
        "free_seats",
        5,
        0,
    )
    # The two seats of day 3 go: the next free seat is on day 5.
    for _ in range(2):
        world.book(sid("pt-00001", world.d3, time(9), "jcovden"))
    world.settle()
    row = world.krakow()
    assert (row["days"], row["free_seats"], row["rate_per_day"]) == (5, 3, 2)
    # Two people wait in the county (the waitlist part's documents): they come first, and
    # the third free seat is still on day 5; a third waiting would leave none.
    for _ in range(2):
        world.db.collection(WAITLIST).add({"county_id": KRAKOW, "status": "waiting"})
    world.db.collection(WAITLIST).add({"county_id": KRAKOW, "status": "offered"})
    world.settle()
    row = world.krakow()
    assert (row["days"], row["basis"], row["waitlist"]) == (5, "free_seats", 2)
    # No free seat left: seats appear at about the booking rate, LEAD_DAYS ahead.
    for _ in range(3):
        world.book(sid("pt-00002", world.d5, time(9), "jcovden"))
    world.settle()
    row = world.krakow()
    assert row["free_seats"] == 0 and row["rate_per_day"] == 5
    assert (row["days"], row["basis"]) == (15, "booking_rate")  # ceil((2 + 1) / 5 + 14)
    for _ in range(8):
        world.db.collection(WAITLIST).add({"county_id": KRAKOW, "status": "waiting"})
    world.settle()
    assert world.krakow()["days"] == 17  # ceil((10 + 1) / 5 + 14)
    # Warsaw is its own county: its free seat is tomorrow, nobody booked, nobody waits.
    [warsaw] = world.table(county="Warszawa", cohort=COHORT)
    assert (warsaw["days"], warsaw["basis"], warsaw["waitlist"]) == (1, "free_seats", 0)
    # One document per county, written by the measurement.
    documents = {d.id: d.to_dict() for d in world.db.collection(WAIT_ESTIMATES).stream()}
    assert set(documents) == {KRAKOW, county_id("mazowieckie", "Warszawa")}
    assert documents[KRAKOW]["bookings"] == 5


def test_every_cohort_in_the_table_and_reserved_seats_for_one(world: World) -> None:
    world.settle()
    rows = world.table(county="Kraków")
    cohorts = {r["cohort"] for r in rows}
    assert {"-1940", COHORT, "1961-1961", "-2009", "2010-"} <= cohorts
    # Children (born 2010 on) may have none of these products: nothing to offer them.
    [children] = [r for r in rows if r["cohort"] == "2010-"]
    assert (children["free_seats"], children["basis"]) == (0, "no_basis")
    # All seats at pt-00001 kept for those born in 1950 or before: a cohort wholly inside
    # still sees them, another does not.
    until = (clock.now() + timedelta(hours=2)).isoformat()
    made = world.api.call(
        "POST",
        "/v1/points/pt-00001/reservations",
        token=world.token("admin"),
        body={"percent": 100, "born_to": 1950, "until": until},
        key=uuid.uuid4().hex,
    )
    assert made.status_code == 201, made.get_json()
    world.settle()
    assert (world.krakow(COHORT)["days"], world.krakow(COHORT)["free_seats"]) == (3, 5)
    assert (world.krakow("1955-1955")["days"], world.krakow("1955-1955")["free_seats"]) == (5, 3)


def test_a_patient_search_with_nothing_near_says_how_long_the_wait_is(world: World) -> None:
    world.settle()
    pesel = add_patient(world.db, born=date(1944, 5, 14), serial=500)
    token = world.token("patient", pesel)
    near = {"lat": 50.06, "lon": 19.94, "product": "jcovden"}
    found = world.api.call("GET", "/v1/slots", token=token, query=near).get_json()
    assert found["items"] and "expected_wait" not in found  # something is near: no estimate
    # Nothing in the searched days: the county's estimate for the patient's cohort.
    today = clock.today_warsaw()
    empty = near | {"date_from": today.isoformat(), "date_to": today.isoformat()}
    found = world.api.call("GET", "/v1/slots", token=token, query=empty).get_json()
    assert found["items"] == []
    wait = found["expected_wait"]
    assert (wait["county"], wait["cohort"], wait["days"], wait["basis"]) == (
        "Kraków",
        COHORT,
        3,
        "free_seats",
    )
    # By postcode, the county is the postcode's (31-001 is in Kraków).
    by_postcode = {"postcode": "31-001", "product": "jcovden"} | {
        k: v for k, v in empty.items() if k.startswith("date")
    }
    found = world.api.call("GET", "/v1/slots", token=token, query=by_postcode).get_json()
    assert found["expected_wait"]["county_id"] == KRAKOW
    # An agent's search names nobody: no cohort, the county's seats for anyone.
    agent = world.api.call("GET", "/v1/slots", token=world.token("agent"), query=empty).get_json()
    assert agent["expected_wait"]["cohort"] is None and agent["expected_wait"]["days"] == 3
