"""Admins manage vaccination points; the search directory follows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from common.adapters.firestore_store import AVAILABILITY, POINTS
from tests.support.points import audits, make_world, snapshot

NEW_POINT = {
    "name": "Punkt Szczepień Rynek",
    "kind": "pharmacy",
    "street": "Rynek Główny 1",
    "postcode": "31-042",
    "place": "Kraków",
    "county": "Kraków",
    "voivodeship": "małopolskie",
    "lat": 50.0617,
    "lon": 19.9373,
    "products": ["comirnaty"],
    "accessible": True,
    "phone": "+48 12 000 00 00",
}


@pytest.fixture
def world(project: str):
    return make_world(project, patients=1)


def test_admin_creates_a_point_its_staff_publish_and_search_finds_it(world) -> None:
    created = world.write("PUT", "/v1/points/pt-09999", "admin", NEW_POINT)
    assert created.status_code == 201, created.get_json()
    assert (
        world.db.collection(POINTS).document("pt-09999").get().to_dict()["name"]
        == NEW_POINT["name"]
    )
    assert world.db.collection(AVAILABILITY).document("pt-09999").get().exists
    [entry] = audits(world.db, "point.upsert")
    assert entry["details"] == {"point_id": "pt-09999", "created": True}
    staff = world.api.token("staff-new", "staff", point_id="pt-09999")
    start = world.day
    published = world.api.call(
        "POST",
        "/v1/points/pt-09999/calendar/publish",
        token=staff,
        key="pub",
        body={
            "date_from": start.isoformat(),
            "date_to": (start + timedelta(days=1)).isoformat(),
            "weekdays": [0, 1, 2, 3, 4, 5, 6],
            "opens": "10:00",
            "closes": "11:00",
            "slot_minutes": 20,
            "capacity": 2,
            "product": "comirnaty",
        },
    )
    assert published.status_code == 200 and published.get_json()["added"] == 6
    found = world.call(
        "GET",
        "/v1/slots",
        "patient-0",
        query={"lat": 50.0617, "lon": 19.9373, "product": "comirnaty", "radius_km": 1},
    )
    assert next(i["point"]["point_id"] for i in found.get_json()["items"]) == "pt-09999"
    updated = world.write("PUT", "/v1/points/pt-09999", "admin", NEW_POINT | {"name": "Nowa"})
    assert updated.status_code == 200
    assert world.db.collection(POINTS).document("pt-09999").get().to_dict()["name"] == "Nowa"
    # The calendar survives an update.
    view = world.api.call("GET", "/v1/points/pt-09999/calendar", token=staff)
    assert len(view.get_json()["slots"]) == 6


@pytest.mark.parametrize(
    ("who", "change", "status"),
    [
        ("admin", {"lat": 48.5}, 400),
        ("admin", {"lon": 25.0}, 400),
        ("admin", {"products": ["sputnik"]}, 400),
        ("admin", {"products": []}, 400),
        ("admin", {"postcode": "31042"}, 400),
        ("admin", {"owner": "me"}, 400),
        ("staff-x", {}, 403),
        ("agent", {}, 403),
        ("patient-0", {}, 403),
        (None, {}, 401),
    ],
)
def test_refusals_write_nothing(world, who, change, status) -> None:
    before = snapshot(world.db)
    response = world.write("PUT", "/v1/points/pt-09999", who, NEW_POINT | change)
    assert response.status_code == status, response.get_json()
    assert snapshot(world.db) == before
