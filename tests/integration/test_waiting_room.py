"""A fair opening through the API (issue 12): openings as data, the waiting room, quotas.

The services' clock is the test's own (`wiring.now` set by hand), so the moment of the opening,
the turns and their end happen when the test says, at any hour of the real day.
"""

from __future__ import annotations

import uuid
from datetime import date, time, timedelta

import pytest

from common import clock, wiring
from common.adapters.firestore_store import AUDIT_LOG
from common.domain.waiting_room import Ticket
from tests.support.points import POINT_X, make_world, sid, snapshot
from tests.support.stack import add_patient

RATE = 60  # one admitted a second


@pytest.fixture
def world(project: str, monkeypatch: pytest.MonkeyPatch):
    moment = clock.now().replace(microsecond=0) + timedelta(hours=2)
    settable = clock.SettableClock(moment - timedelta(hours=1))
    monkeypatch.setattr(wiring, "now", settable.now)
    w = make_world(project, patients=0)
    # Born in the 1970s: the opening's cohort; born 1980: someone it does not govern.
    w.pesels = [add_patient(w.db, born=date(1975, 1, 1 + i), serial=i) for i in range(6)]
    w.pesels.append(add_patient(w.db, born=date(1985, 3, 3), serial=40))
    w.clock = settable  # type: ignore[attr-defined]
    w.moment = moment  # type: ignore[attr-defined]
    body = {
        "born_from": 1970,
        "born_to": 1979,
        "opens_at": moment.isoformat(),
        "window_minutes": 30,
        "turn_minutes": 10,
        "admit_per_minute": RATE,
    }
    response = w.write("PUT", "/v1/openings/op-70s", "admin", body)
    assert response.status_code == 201, response.get_json()
    return w


def at(world, **delta) -> None:
    world.clock.set(world.moment + timedelta(**delta))


def slot(world) -> str:
    return sid(POINT_X, world.day, time(9, 0), "jcovden")


def join(world, patient: int):
    return world.call("POST", "/v1/openings/op-70s/queue", f"patient-{patient}", body={})


def book(world, patient: int, ticket: str | None = None):
    headers = {"X-Queue-Ticket": ticket} if ticket else None
    return world.write(
        "POST", "/v1/appointments", f"patient-{patient}", {"slot_id": slot(world)}, headers=headers
    )


def test_booking_before_the_moment_is_refused_saying_when(world) -> None:
    at(world, hours=-1)
    before = snapshot(world.db)
    refused = book(world, 0)
    assert refused.status_code == 403, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "cohort_not_open"
    assert error["details"]["opens_at"] == world.moment.isoformat()
    assert "waiting room opens at" in error["message"]
    assert snapshot(world.db) == before
    # Its waiting room opens 30 minutes before: booking still waits for the moment.
    at(world, minutes=-10)
    assert "its waiting room is open now" in book(world, 0).get_json()["error"]["message"]
    assert join(world, 0).status_code == 200
    # Joining before the window is refused too, saying when the room opens.
    at(world, minutes=-45)
    early = join(world, 1)
    assert (
        early.status_code == 403 and "waiting room opens at" in early.get_json()["error"]["message"]
    )
    # Someone born in 1985 is not in this opening's group: books as before.
    assert book(world, 6).status_code == 201


def test_the_room_the_draw_and_each_turn(world) -> None:
    at(world, minutes=-20)
    tickets = {}
    for patient in range(5):
        joined = join(world, patient)
        assert joined.status_code == 200, joined.get_json()
        body = joined.get_json()
        position = body["position"]
        # Before the moment: the room's size, no place (the draw is kept until then).
        assert position["position"] is None and position["in_room"] == patient + 1
        tickets[patient] = body["ticket"]
    # A second ticket for the same person replaces the first and never adds a place.
    again = join(world, 2).get_json()
    assert again["position"]["in_room"] == 5
    assert Ticket.verify(again["ticket"], wiring.waiting_room().secret).joined_at == (
        Ticket.verify(tickets[2], wiring.waiting_room().secret).joined_at
    )
    at(world, seconds=1)  # one second after the moment: place 1 is admitted
    places = {}
    for patient, ticket in tickets.items():
        response = world.call(
            "GET", "/v1/openings/op-70s/queue", f"patient-{patient}",
            headers={"X-Queue-Ticket": ticket},
        )  # fmt: skip
        assert response.status_code == 200, response.get_json()
        places[patient] = response.get_json()["position"]
    assert sorted(p["position"] for p in places.values()) == [1, 2, 3, 4, 5]
    first = min(places, key=lambda p: places[p]["position"])
    second = min((p for p in places if p != first), key=lambda p: places[p]["position"])
    assert places[first]["admitted"] and not places[second]["admitted"]
    # Next in line: nobody waits ahead of them; their turn comes in a second.
    assert places[second]["ahead"] == 0 and places[second]["estimated_wait_s"] == 1
    third = sorted(places.values(), key=lambda p: p["position"])[2]
    assert third["ahead"] == 1 and third["estimated_wait_s"] == 2
    # Only the holder whose turn it is books; the others are told where they stand.
    not_yet = book(world, second, tickets[second])
    assert not_yet.status_code == 409, not_yet.get_json()
    assert not_yet.get_json()["error"]["code"] == "queue_turn_required"
    assert not_yet.get_json()["error"]["details"]["position"] == 2
    without = book(world, first, None).get_json()["error"]
    assert (without["code"], without["details"]["reason"]) == ("queue_turn_required",
                                                               "ticket_missing")  # fmt: skip
    stolen = book(world, second, tickets[first])  # a ticket is useless to anyone else
    assert stolen.status_code == 409
    assert stolen.get_json()["error"]["details"]["reason"] == "ticket_invalid"
    assert "not valid for you" in stolen.get_json()["error"]["message"]
    booked = book(world, first, tickets[first])
    assert booked.status_code == 201, booked.get_json()
    at(world, seconds=2)
    assert book(world, second, tickets[second]).status_code == 201


def test_a_turn_passes_unused_and_a_rejoin_goes_to_the_back(world) -> None:
    at(world, minutes=-5)
    first = join(world, 0).get_json()["ticket"]
    at(world, seconds=30)
    late = [join(world, p).get_json()["ticket"] for p in (1, 2, 3)]  # arrival order
    assert late
    at(world, minutes=10, seconds=2)  # patient 0 was admitted at +1 s: the turn is over
    refused = book(world, 0, first)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["message"] == "your turn has passed: join the queue again"
    rejoined = join(world, 0).get_json()
    # Behind everyone who arrived before the rejoin (and admitted at once: the queue is short).
    assert rejoined["position"]["position"] == 4
    assert book(world, 0, rejoined["ticket"]).status_code == 201


def test_an_admin_changes_the_rate_live_and_it_is_audited(world) -> None:
    at(world, minutes=-5)
    tickets = [join(world, p).get_json()["ticket"] for p in range(5)]
    at(world, seconds=1)
    response = world.write("POST", "/v1/openings/op-70s/rate", "admin", {"admit_per_minute": 6000})
    assert response.status_code == 200, response.get_json()
    at(world, seconds=1, milliseconds=100)  # 100 a second now: everyone is in
    positions = [
        world.call("GET", "/v1/openings/op-70s/queue", f"patient-{p}",
                   headers={"X-Queue-Ticket": t}).get_json()["position"]
        for p, t in enumerate(tickets)
    ]  # fmt: skip
    assert all(p["admitted"] for p in positions), positions
    actions = [d.to_dict()["action"] for d in world.db.collection(AUDIT_LOG).stream()]
    assert {"opening.publish", "opening.rate"} <= set(actions)
    listed = world.call("GET", "/v1/openings", "patient-0").get_json()["openings"]
    assert [o["opening_id"] for o in listed] == ["op-70s"] and listed[0]["phase"] == "queue"


def test_an_agent_joins_the_caller_at_the_moment_of_the_call(world) -> None:
    at(world, seconds=30)
    joined = world.call(
        "POST", "/v1/openings/op-70s/queue", "agent",
        body={"pesel": world.pesels[3], "reason": "caller on the 989 line"},
    )  # fmt: skip
    assert joined.status_code == 200, joined.get_json()
    ticket = joined.get_json()["ticket"]
    # The caller's place, in arrival order; the agent books with it on the caller's turn.
    assert joined.get_json()["position"]["admitted"]
    response = world.write(
        "POST", "/v1/appointments", "agent",
        {"slot_id": slot(world), "pesel": world.pesels[3], "reason": "caller on the 989 line"},
        headers={"X-Queue-Ticket": ticket},
    )  # fmt: skip
    assert response.status_code == 201, response.get_json()


# -- quotas ----------------------------------------------------------------------------------
def _set_quotas(world, limits: dict) -> None:
    response = world.write(
        "PUT", "/v1/admin/quotas", "admin", {"version": uuid.uuid4().hex[:8], "limits": limits}
    )
    assert response.status_code == 200, response.get_json()


def test_quotas_come_from_data_an_admin_changes_without_a_deploy(world) -> None:
    at(world, hours=3)  # the opening's queue is over: nothing but quotas in the way
    assert world.call("GET", "/v1/admin/quotas", "admin").get_json()["policy"]["version"]
    _set_quotas(world, {"search": [{"seconds": 60, "max": 2}]})
    query = {"lat": 50.06, "lon": 19.94}
    for _ in range(2):
        assert world.call("GET", "/v1/slots", "patient-0", query=query).status_code == 200
    refused = world.call("GET", "/v1/slots", "patient-0", query=query)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "you can try again at" in refused.get_json()["error"]["message"]
    # Another person is not affected.
    assert world.call("GET", "/v1/slots", "patient-1", query=query).status_code == 200


def test_churn_meets_a_limit_and_the_refusal_changes_nothing_but_its_audit(world) -> None:
    at(world, hours=3)
    _set_quotas(world, {"booking_write": [{"seconds": 600, "max": 3}]})
    first = book(world, 6)  # the 1985 patient: no opening in the way
    assert first.status_code == 201
    aid = first.get_json()["appointments"][0]["appointment_id"]
    assert world.write("POST", f"/v1/appointments/{aid}/cancel", "patient-6", {}).status_code == 200
    assert book(world, 6).status_code == 201  # book, cancel, book: three writes
    before = snapshot(world.db)
    refused = book(world, 6)
    assert refused.status_code == 429, refused.get_json()
    assert refused.get_json()["error"]["details"]["kind"] == "booking_write"
    after = snapshot(world.db)
    added = {k: v for k, v in after.items() if k not in before}
    assert [v["action"] for v in added.values()] == ["quota.refused"]
    assert all(world.pesels[6] not in str(v) for v in added.values())  # no PESEL in clear


def test_an_agents_lookups_are_limited_but_not_a_supervisors(world, project) -> None:
    at(world, hours=3)
    _set_quotas(world, {"lookup": [{"seconds": 3600, "max": 2}]})
    body = {"pesel": world.pesels[0], "reason": "caller on the 989 line"}
    for _ in range(2):
        assert world.call("POST", "/v1/patients/lookup", "agent", body=body).status_code == 200
    assert world.call("POST", "/v1/patients/lookup", "agent", body=body).status_code == 429
    supervisor = world.api.token("agent-9", "agent", supervisor=True)
    for _ in range(3):
        response = world.api.call("POST", "/v1/patients/lookup", token=supervisor, body=body)
        assert response.status_code == 200, response.get_json()
