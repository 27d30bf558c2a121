"""What the apps need so that nobody is offered what they cannot have, or lost on the way.

* GET /v1/me/eligible-products and POST /v1/patients/eligible-products: the products the
  rules in force allow for the patient on a date (an adult is never offered the paediatric
  product, a child only it), each with the two-dose commitment spelled out, and why the others
  are refused (the code a booking would get); a PESEL never in a URL.
* Every appointment the API returns names its point: name, address, coordinates (booking,
  listing, one appointment, moving, cancelling, the hotline's look-up); a booking's answer
  carries the SMS the patient gets.
Real answers are validated against api/openapi.yaml here too.
"""

from __future__ import annotations

import functools
from datetime import date, timedelta

import pytest

from common import wiring
from tests.integration.test_openapi_contract import Contract
from tests.support.points import POINT_X, make_world
from tests.support.stack import add_patient, today_warsaw

ADULT_PRODUCTS = {"comirnaty", "spikevax", "vaxzevria", "jcovden", "nuvaxovid"}


@functools.cache
def _no_publisher() -> None:
    return None


@pytest.fixture(autouse=True)
def events_stay_in_outbox(project: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "publisher", _no_publisher)
    wiring.reset()


@pytest.fixture
def world(project: str):
    return make_world(project)


def test_an_adult_is_offered_the_adult_products_and_told_why_not_the_childrens(world) -> None:
    c = Contract()
    response = c.check(
        "listMyEligibleProducts", world.call("GET", "/v1/me/eligible-products", "patient-0")
    )
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["date"] == today_warsaw().isoformat() and answer["channel"] == "portal"
    assert {p["product"] for p in answer["products"]} == ADULT_PRODUCTS
    [refused] = answer["not_eligible"]
    assert (refused["product"], refused["code"]) == ("comirnaty_paediatric", "age_not_allowed")
    comirnaty = next(p for p in answer["products"] if p["product"] == "comirnaty")
    # The two-dose commitment, before booking: both doses, the window, same point.
    assert comirnaty["doses"] == 2 and comirnaty["books_second_dose"] is True
    assert (comirnaty["min_interval_days"], comirnaty["max_interval_days"]) == (21, 42)
    assert (comirnaty["dose_kind"], comirnaty["dose_number"]) == ("primary", 1)
    # Bookable from today until the e-referral ends (seeded: today - 10 .. today + 80).
    assert comirnaty["date_from"] == today_warsaw().isoformat()
    assert comirnaty["date_to"] == (today_warsaw() + timedelta(days=80)).isoformat()
    assert comirnaty["booked_appointment_id"] is None
    jcovden = next(p for p in answer["products"] if p["product"] == "jcovden")
    assert jcovden["doses"] == 1 and jcovden["books_second_dose"] is False
    # A day past the e-referral: nothing, and each refusal says so.
    later = (today_warsaw() + timedelta(days=81)).isoformat()
    late = c.check(
        "listMyEligibleProducts",
        world.call("GET", "/v1/me/eligible-products", "patient-0", query={"date": later}),
    ).get_json()
    assert late["products"] == []
    assert {r["code"] for r in late["not_eligible"]} >= {"referral_expired"}
    past = world.call("GET", "/v1/me/eligible-products", "patient-0", query={"date": "2020-01-01"})
    assert c.check("listMyEligibleProducts", past).status_code == 400
    assert (
        c.check(
            "listMyEligibleProducts", world.call("GET", "/v1/me/eligible-products", "agent")
        ).status_code
        == 403
    )


def test_a_child_is_offered_only_the_paediatric_product(world) -> None:
    child = add_patient(world.db, born=date(today_warsaw().year - 9, 1, 15), serial=61)
    token = world.api.token("child", "patient", pesel=child)
    answer = world.api.call("GET", "/v1/me/eligible-products", token=token).get_json()
    assert [p["product"] for p in answer["products"]] == ["comirnaty_paediatric"]
    assert {r["product"] for r in answer["not_eligible"]} == ADULT_PRODUCTS


def test_an_agent_asks_for_the_caller_with_the_pesel_in_the_body(world) -> None:
    c = Contract()
    pesel = world.pesels[1]
    path = "/v1/patients/eligible-products"
    body = {"pesel": pesel, "reason": "caller asks which vaccine"}
    response = c.check(
        "listEligibleProductsForPatient", world.call("POST", path, "agent", body=body)
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["channel"] == "hotline"
    assert {p["product"] for p in response.get_json()["products"]} == ADULT_PRODUCTS
    no_reason = world.call("POST", path, "agent", body={"pesel": pesel})
    assert c.check("listEligibleProductsForPatient", no_reason).status_code == 400
    bad = world.call("POST", path, "agent", body=body | {"pesel": pesel[:-1] + "0"})
    assert c.check("listEligibleProductsForPatient", bad).status_code == 400
    patient = world.call("POST", path, "patient-1", body=body)
    assert c.check("listEligibleProductsForPatient", patient).status_code == 403
    assert pesel not in response.get_data(as_text=True)


def test_a_booked_dose_is_named_so_that_the_app_offers_a_move(world) -> None:
    slot = f"{POINT_X}_{world.day:%Y%m%d}_0900_jcovden"
    booked = world.book(0, slot)
    assert booked.status_code == 201
    answer = world.call("GET", "/v1/me/eligible-products", "patient-0").get_json()
    appointment_id = booked.get_json()["appointments"][0]["appointment_id"]
    assert {p["booked_appointment_id"] for p in answer["products"]} == {appointment_id}


def test_every_appointment_answer_names_the_point_and_a_booking_its_sms(world) -> None:
    c = Contract()
    two_dose = f"{POINT_X}_{world.day:%Y%m%d}_1000_comirnaty"
    booked = c.check("bookAppointment", world.book(1, two_dose))
    assert booked.status_code == 201
    answer = booked.get_json()
    for appointment in answer["appointments"]:
        point = appointment["point"]
        assert point["point_id"] == POINT_X and point["name"] == f"Punkt {POINT_X}"
        assert (point["street"], point["postcode"], point["place"]) == (
            "ul. Długa 1",
            "31-001",
            "Kraków",
        )
        assert isinstance(point["lat"], float) and isinstance(point["lon"], float)
    [sms] = answer["confirmation"]["messages"]
    assert f"Punkt {POINT_X}, ul. Dluga 1, 31-001 Krakow" in sms and "Dawka 2" in sms
    first = answer["appointments"][0]["appointment_id"]

    mine = c.check("listMyAppointments", world.call("GET", "/v1/me/appointments", "patient-1"))
    assert {a["point"]["name"] for a in mine.get_json()["appointments"]} == {f"Punkt {POINT_X}"}
    one = c.check("getAppointment", world.call("GET", f"/v1/appointments/{first}", "patient-1"))
    assert one.get_json()["point"]["place"] == "Kraków"
    looked_up = world.call(
        "POST",
        "/v1/patients/lookup",
        "agent",
        body={"pesel": world.pesels[1], "reason": "caller asks where to go"},
    )
    assert {a["point"]["name"] for a in looked_up.get_json()["appointments"]} == {
        f"Punkt {POINT_X}"
    }
    cancelled = c.check(
        "cancelAppointment",
        world.write("POST", f"/v1/appointments/{first}/cancel", "patient-1", {}),
    )
    assert [a["point"]["point_id"] for a in cancelled.get_json()["appointments"]] == [POINT_X] * 2
    # A replay of the same key answers the same, places included.
    key = "same-key"
    once = world.call(
        "POST", "/v1/appointments", "patient-1", body={"slot_id": two_dose}, key=key
    ).get_json()
    again = world.call(
        "POST", "/v1/appointments", "patient-1", body={"slot_id": two_dose}, key=key
    ).get_json()
    assert once == again and once["appointments"][0]["point"]["name"] == f"Punkt {POINT_X}"


def test_points_are_read_once_a_minute_not_once_an_answer(world) -> None:
    places = wiring.appointment_places()
    body = {"appointments": [{"point_id": POINT_X}, {"point_id": POINT_X}]}
    first = places.add_places(body)
    reads = places.reads
    assert first["appointments"][0]["point"]["name"] == f"Punkt {POINT_X}"
    for _ in range(5):
        places.add_places(body)
    assert places.reads == reads == 1
    assert places.add_places({"appointments": [{"point_id": "pt-99999"}]}) == {
        "appointments": [{"point_id": "pt-99999"}]
    }
