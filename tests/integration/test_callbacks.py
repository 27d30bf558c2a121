"""The callback list: agents (and patients for themselves) leave a number to call back."""

from __future__ import annotations

import pytest

from common.adapters.firestore_store import CALLBACKS
from tests.support.points import audits, key_of, make_world, snapshot


@pytest.fixture
def world(project: str):
    return make_world(project, patients=3)


def test_agent_leaves_a_callback_lists_it_and_closes_it(world) -> None:
    pesel = world.pesels[0]
    created = world.write(
        "POST",
        "/v1/callbacks",
        "agent",
        {
            "pesel": pesel,
            "phone": "+48 600 123 456",
            "preferred_postcode": "31-001",
            "product": "comirnaty",
            "note": "mornings only",
        },
    )
    assert created.status_code == 201, created.get_json()
    callback = created.get_json()["callback"]
    assert callback["phone"] == "+48600123456" and callback["masked_pesel"] == pesel[:6] + "*****"
    # The phone is a field, never the id; the PESEL is kept only masked (issue 13).
    [doc] = list(world.db.collection(CALLBACKS).stream())
    assert pesel not in doc.id and "600123456" not in doc.id
    assert pesel not in str(doc.to_dict()) and doc.to_dict()["patient_key"] == key_of(pesel)
    listed = world.call("GET", "/v1/callbacks", "agent", query={"status": "open"})
    assert listed.status_code == 200
    assert [c["callback_id"] for c in listed.get_json()["callbacks"]] == [callback["callback_id"]]
    assert pesel not in listed.get_data(as_text=True)
    done = world.write(
        "POST", f"/v1/callbacks/{callback['callback_id']}/done", "agent", {"outcome": "booked"}
    )
    assert done.status_code == 200 and done.get_json()["callback"]["status"] == "done"
    assert world.call("GET", "/v1/callbacks", "agent").get_json()["callbacks"] == []
    again = world.write(
        "POST", f"/v1/callbacks/{callback['callback_id']}/done", "agent", {"outcome": "booked"}
    )
    assert again.status_code == 409
    assert [a["action"] for a in sorted(audits(world.db), key=lambda a: a["at"])] == [
        "callback.request",
        "callback.done",
    ]
    [entry] = audits(world.db, "callback.done")
    assert entry["_create_time"] == doc.reference.get().update_time


def test_a_patient_asks_for_themself_only(world) -> None:
    mine = world.write("POST", "/v1/callbacks", "patient-0", {"phone": "+48600123456"})
    assert mine.status_code == 201
    assert audits(world.db) == []  # patients are not audited: their own action
    before = snapshot(world.db)
    other = world.write(
        "POST", "/v1/callbacks", "patient-0", {"pesel": world.pesels[1], "phone": "+48600123456"}
    )
    assert other.status_code == 403
    assert world.call("GET", "/v1/callbacks", "patient-0").status_code == 403
    callback_id = mine.get_json()["callback"]["callback_id"]
    assert (
        world.write(
            "POST", f"/v1/callbacks/{callback_id}/done", "patient-0", {"outcome": "booked"}
        ).status_code
        == 403
    )
    assert snapshot(world.db) == before


@pytest.mark.parametrize(
    "body",
    [
        {"pesel": "44051401359", "phone": "600123456"},
        {"pesel": "44051401359", "phone": "+49600123456"},
        {"pesel": "44051401359", "phone": "+4860012345"},
        {"pesel": "4405140135", "phone": "+48600123456"},
        {"pesel": "44051401358", "phone": "+48600123456"},
        {"phone": "+48600123456"},
        {"pesel": "44051401359", "phone": "+48600123456", "product": "sputnik"},
        {"pesel": "44051401359", "phone": "+48600123456", "preferred_postcode": "31001"},
    ],
)
def test_bad_callbacks_are_400_and_write_nothing(world, body) -> None:
    before = snapshot(world.db)
    response = world.write("POST", "/v1/callbacks", "agent", body)
    assert response.status_code == 400, response.get_json()
    assert snapshot(world.db) == before


def test_closing_an_unknown_callback_is_404(world) -> None:
    assert (
        world.write(
            "POST", f"/v1/callbacks/{'0' * 32}/done", "agent", {"outcome": "other"}
        ).status_code
        == 404
    )
    assert (
        world.write("POST", "/v1/callbacks/nope/done", "agent", {"outcome": "other"}).status_code
        == 404
    )
