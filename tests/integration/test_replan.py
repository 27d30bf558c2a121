"""Consented re-planning on the Firestore emulator (issue 15 item 2, common/services/replan.py).

- The April-2021 scenario in small: people born 1961-1980 booked early dates opened by
  mistake; the corrected rules open their cohort ten days from now. The dry run finds their
  bookings; the re-plan (its worker killed once mid-way, then resumed) offers each a seat on
  or after the opening, held for them; one says TAK, one NIE, one stays silent, one is called
  by the hotline. Nothing is double-booked, the valid bookings are untouched, the accepted are
  moved (same ids) and no longer affected, the others get their next offer.
- An SDS shortfall re-homes instead of cancelling: the dry run of the expected shortfall, the
  re-plan, both patients accept, then the real sync cancels nothing.
- Bad input changes nothing; one re-plan per dry run; another's offer is a 404.
Dates follow the one clock (common/clock.py): any hour of any day.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections import Counter
from datetime import date, timedelta
from datetime import time as dtime
from typing import Any

import pytest
import yaml
from google.cloud.firestore import FieldFilter

from common import clock, wiring
from common.adapters.firestore_store import APPOINTMENTS, AVAILABILITY, SEATS
from common.domain.calendar import PointCalendar, SlotRef
from common.domain.replan import offer_id
from common.domain.rulebook import RULES_DIR
from common.services.availability import AvailabilityFolder
from common.services.impact import ImpactJobs
from common.services.replan import OFFERS, REPLAN_JOBS, ReplanJobs, ReplanService
from tests.support.freezer import FreezableProxy
from tests.support.points import (
    POINT_X,
    POINT_Y,
    POINT_Z,
    World,
    key_of,
    make_world,
    sid,
    snapshot,
)
from tests.support.stack import add_patient, today_warsaw
from tests.support.supply import FakeSds, delivery, sync


@functools.cache
def _no_publisher() -> None:
    return None


@pytest.fixture(autouse=True)
def events_stay_in_outbox(project: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "publisher", _no_publisher)
    monkeypatch.delenv("CLOUD_TASKS_EMULATOR_HOST", raising=False)
    wiring.reset()


class RecordingQueue:
    def __init__(self) -> None:
        self.tasks: list[tuple[str, str]] = []

    def enqueue(self, job_id: str, suffix: str) -> str:
        self.tasks.append((job_id, suffix))
        return "created"


class Told:
    """The channel: who was told of which offer (an SMS for those with a number on file)."""

    def __init__(self, phones: set[str] = frozenset()) -> None:
        self.phones = phones
        self.told: list[tuple[str, int]] = []

    def __call__(self, offer: dict[str, Any], now) -> str:
        self.told.append((offer["offer_id"], offer["attempt"]))
        return "sms" if offer["patient_key"] in self.phones else "hotline"


class KilledAfter(Exception):
    pass


def _service(told: Told) -> ReplanService:
    return ReplanService(wiring.units(), wiring.booking_service(), wiring.search_service, told)


def _jobs(service: ReplanService, *, die_after: int | None = None) -> ReplanJobs:
    """A worker of its own; `die_after`: killed after opening that many cases."""
    if die_after is not None:
        opened = [0]
        real = service.open_case

        def open_case(*args: Any) -> str:
            if opened[0] >= die_after:
                raise KilledAfter()
            opened[0] += 1
            return real(*args)

        service = _Wrapped(service, open_case)
    impact = ImpactJobs(
        wiring.units(), wiring.firestore_client(), wiring.rule_book(), RecordingQueue(),
        min_page_interval_s=0, page_size=3,
    )  # fmt: skip
    return ReplanJobs(wiring.units(), impact, service, RecordingQueue(), sleep=lambda s: None)


class _Wrapped:
    def __init__(self, service: ReplanService, open_case: Any) -> None:
        self._service, self.open_case = service, open_case

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)


def _dry_run(world: World, change: dict[str, Any]) -> str:
    response = world.write("POST", "/v1/admin/impact", "admin", {"change": change})
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job"]["job_id"]
    jobs = _jobs(_service(Told())).impact
    for _ in range(100):
        if jobs.run(job_id, clock.now())["outcome"] in ("done", "failed"):
            break
    assert (
        world.call("GET", f"/v1/admin/impact/{job_id}", "admin").get_json()["job"]["status"]
        == "done"
    )
    return job_id


def _start(world: World, job_id: str, **options: Any) -> dict[str, Any]:
    response = world.write(
        "POST", "/v1/admin/replans", "admin", {"impact_job_id": job_id, **options}
    )
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job"]


def _progress(world: World, job_id: str) -> dict[str, Any]:
    response = world.call("GET", f"/v1/admin/replans/{job_id}", "admin")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["job"]


def _offers(world: World, who: str) -> list[dict[str, Any]]:
    response = world.call("GET", "/v1/offers", who)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["offers"]


def _answer(world: World, who: str, the_id: str, answer: str, **extra: Any):
    return world.write("POST", f"/v1/offers/{the_id}", who, {"answer": answer, **extra})


def _booked(world: World) -> dict[str, dict[str, Any]]:
    return {
        d.id: d.to_dict()
        for d in world.db.collection(APPOINTMENTS).stream()
        if d.to_dict()["status"] == "booked"
    }


def _check_no_seat_twice(world: World) -> None:
    """Every booked visit holds its own seat; a slot's seats (booked or held) never exceed its
    capacity, and its free count is capacity minus them once the folder has caught up."""
    AvailabilityFolder(world.db).fold_all()
    # Seats kept off by a cut (`blocker`) are outside the capacity, as booking sees it.
    seats = {
        d.id: d.to_dict()
        for d in world.db.collection(SEATS).stream()
        if not d.to_dict().get("blocker")
    }
    booked = _booked(world)
    owners = Counter(a["seat_id"] for a in booked.values())
    assert all(n == 1 for n in owners.values()), owners
    for appointment_id, appointment in booked.items():
        assert seats[appointment["seat_id"]].get("appointment_id") == appointment_id
    for point in (POINT_X, POINT_Y, POINT_Z):
        document = world.db.collection(AVAILABILITY).document(point).get().to_dict()
        for ref, slot in PointCalendar.from_document(point, document).slots.items():
            taken = [s for s in seats.values() if s.get("slot_id") == ref.slot_id]
            assert len(taken) <= slot.capacity
            assert slot.free == slot.capacity - len(taken), (ref.slot_id, slot, len(taken))


# -- April 2021, in small ----------------------------------------------------------------------


def _correction(opens: date) -> str:
    """The corrected cohorts: 1961-1980 open on `opens`, everyone else as before."""
    current = yaml.safe_load((RULES_DIR / "cohorts.yaml").read_text(encoding="utf-8"))
    current["version"] = f"test-{uuid.uuid4().hex[:8]}"
    current["cohorts"] = [
        {"born_to": 1960, "opens_at": "2021-01-15T00:00:00"},
        {"born_from": 1961, "born_to": 1980, "opens_at": f"{opens.isoformat()}T00:00:00"},
        {"born_from": 1981, "born_to": 2009, "opens_at": "2021-05-01T00:00:00"},
        {"born_from": 2010, "opens_at": "2021-12-13T00:00:00"},
    ]
    return yaml.safe_dump(current, sort_keys=False)


@pytest.fixture
def april(project: str) -> tuple[World, dict[str, Any]]:
    today = today_warsaw()
    early, opens = today + timedelta(days=3), today + timedelta(days=10)
    world = make_world(
        project,
        patients=5,  # born 1980: the band opened by mistake
        slots={
            POINT_X: [
                (early, dtime(9, 0), "jcovden", 10),
                (early, dtime(10, 0), "comirnaty", 10),
                (early + timedelta(days=35), dtime(10, 0), "comirnaty", 10),
                (opens - timedelta(days=1), dtime(9, 0), "jcovden", 10),  # still too early
            ],
            POINT_Y: [(early, dtime(9, 0), "jcovden", 10), (opens, dtime(9, 0), "jcovden", 5)],
            POINT_Z: [
                (opens, dtime(9, 0), "jcovden", 2),
                (opens + timedelta(days=1), dtime(9, 0), "jcovden", 2),
                (opens, dtime(11, 0), "comirnaty", 2),
                (opens + timedelta(days=28), dtime(11, 0), "comirnaty", 2),
            ],
        },
    )
    world.pesels += [add_patient(world.db, born=date(1950, 3, 3), serial=20 + i) for i in range(2)]

    def book(patient: int, slot_id: str) -> list[str]:
        response = world.book(patient, slot_id)
        assert response.status_code == 201, response.get_json()
        return [a["appointment_id"] for a in response.get_json()["appointments"]]

    jcovden_x = sid(POINT_X, early, dtime(9, 0), "jcovden")
    cases = {
        "tak": book(0, sid(POINT_X, early, dtime(10, 0), "comirnaty")),  # both doses
        "nie": book(1, jcovden_x),
        "silent": book(2, jcovden_x),
        "hotline": book(3, sid(POINT_Y, early, dtime(9, 0), "jcovden")),
    }
    valid = book(5, jcovden_x) + book(6, sid(POINT_X, early, dtime(10, 0), "comirnaty"))
    AvailabilityFolder(world.db).fold_all()
    assert len(cases["tak"]) == 2 and len(valid) == 3
    return world, {"cases": cases, "valid": valid, "opens": opens}


def test_april_2021_re_planned_with_tak_nie_silence_and_the_hotline(april) -> None:
    world, seeded = april
    cases, opens = seeded["cases"], seeded["opens"]
    keys = {name: key_of(world.pesels[i]) for i, name in enumerate(cases)}
    change = {
        "kind": "rules",
        "effective_from": today_warsaw().isoformat(),
        "cohorts": _correction(opens),
    }
    dry_run = _dry_run(world, change)
    before = {i: world.appointment(i) for i in seeded["valid"]}

    job = _start(world, dry_run)
    assert job["status"] == "running" and job["counts"] == {}
    again = world.write("POST", "/v1/admin/replans", "admin", {"impact_job_id": dry_run})
    assert again.status_code == 409, again.get_json()  # one re-plan per dry run

    # A worker killed after its second case; another resumes: one offer per case, no more.
    told = Told(phones={keys["tak"], keys["nie"], keys["silent"]})
    with pytest.raises(KilledAfter):
        _jobs(_service(told), die_after=2).run(dry_run, clock.now())
    assert (
        world.db.collection(OFFERS)
        .where(filter=FieldFilter("job_id", "==", dry_run))
        .count()
        .get()[0][0]
        .value
        == 2
    )
    assert _jobs(_service(told)).run(dry_run, clock.now())["outcome"] == "done"
    offers = {name: world.db.collection(OFFERS).document(offer_id(dry_run, world.appointment(
        ids[0])["series_id"])).get().to_dict() for name, ids in cases.items()}  # fmt: skip
    assert world.db.collection(OFFERS).count().get()[0][0].value == 4
    assert Counter(attempt for _, attempt in told.told) == {1: 4}  # each told once
    for name, offer in offers.items():
        assert offer["status"] == "offered" and offer["attempt"] == 1, name
        days = [date.fromisoformat(s["day"]) for s in offer["seats"]]
        assert days[0] >= opens, (name, days)  # on or after the cohort opens, not before
        held = world.db.collection(SEATS).document(offer["seats"][0]["seat_id"]).get().to_dict()
        assert held["hold_id"] == offer["offer_id"] and held["holder"] == keys[name]
    # The series keeps both doses together, at one point, dose 2 in its window (21-42 days).
    first, second = offers["tak"]["seats"]
    assert first["point_id"] == second["point_id"] == POINT_Z
    gap = (date.fromisoformat(second["day"]) - date.fromisoformat(first["day"])).days
    assert 21 <= gap <= 42
    # The nearest point first: Kraków's Z for those booked in Kraków, Warsaw's Y for Warsaw.
    assert offers["nie"]["seats"][0]["point_id"] == POINT_Z
    assert offers["hotline"]["seats"][0]["point_id"] == POINT_Y
    _check_no_seat_twice(world)

    # The portal shows each patient their own offer, and nobody else's.
    (mine,) = _offers(world, "patient-0")
    assert mine["offer_id"] == offers["tak"]["offer_id"] and len(mine["to"]) == 2
    stranger = _answer(world, "patient-1", offers["tak"]["offer_id"], "accept")
    assert stranger.status_code == 404
    # The hotline's list: the offer nobody could be told of (no number on file).
    listed = world.call("GET", "/v1/offers", "agent", query={"list": "hotline"}).get_json()
    assert [o["offer_id"] for o in listed["offers"]] == [offers["hotline"]["offer_id"]]
    assert "patient_key" not in str(listed) and world.pesels[3] not in str(listed)

    # TAK: moved in one commit, same ids, old seats freed.
    old_seats = [world.appointment(i)["seat_id"] for i in cases["tak"]]
    accepted = _answer(world, "patient-0", offers["tak"]["offer_id"], "accept")
    assert accepted.status_code == 200, accepted.get_json()
    for appointment_id, seat in zip(cases["tak"], offers["tak"]["seats"], strict=True):
        moved = world.appointment(appointment_id)
        assert moved["status"] == "booked" and moved["seat_id"] == seat["seat_id"]
    assert not any(world.db.collection(SEATS).document(s).get().exists for s in old_seats)
    # NIE: the seats go back, the next alternative is held (another slot).
    declined = _answer(world, "patient-1", offers["nie"]["offer_id"], "decline")
    assert declined.status_code == 200, declined.get_json()
    # The hotline calls the fourth and answers for them (with a reason, audited).
    no_reason = _answer(world, "agent", offers["hotline"]["offer_id"], "accept")
    assert no_reason.status_code == 400
    by_agent = _answer(world, "agent", offers["hotline"]["offer_id"], "accept", reason="call")
    assert by_agent.status_code == 200, by_agent.get_json()
    # Silence: past its time the offer lapses and the next is offered.
    # (At the silent one's deadline: the NIE's new offer, made just now, runs till later.)
    assert _service(told).expire(offers["silent"]["expires_at"])["expired"] == 1

    after = {n: world.db.collection(OFFERS).document(o["offer_id"]).get().to_dict()
             for n, o in offers.items()}  # fmt: skip
    assert after["tak"]["status"] == after["hotline"]["status"] == "accepted"
    for name in ("nie", "silent"):
        assert after[name]["status"] == "offered" and after[name]["attempt"] == 2, name
        assert after[name]["seats"][0]["slot_id"] != offers[name]["seats"][0]["slot_id"]
        assert date.fromisoformat(after[name]["seats"][0]["day"]) >= opens
    assert after["nie"]["declined"] == 1 and after["silent"]["expired"] == 1
    _check_no_seat_twice(world)
    # The valid bookings were never touched.
    assert {i: world.appointment(i) for i in seeded["valid"]} == before
    progress = _progress(world, dry_run)
    assert progress["status"] == "done" and progress["progress"]["cases_done"] == 4
    assert progress["counts"]["accepted"] == 2 and progress["counts"]["offered"] == 2
    assert progress["counts"]["declined"] == 1 and progress["counts"]["expired"] == 1
    # A second dry run of the same rules: the moved are valid now; the others still listed.
    rerun = _dry_run(world, change)
    still = {c.series_id for c in _jobs(_service(told)).impact.cases(rerun)}
    series = {n: world.appointment(ids[0])["series_id"] for n, ids in cases.items()}
    assert still == {series["nie"], series["silent"]}
    # No PESEL in clear in any offer.
    text = str([d.to_dict() for d in world.db.collection(OFFERS).stream()])
    assert not any(p in text for p in world.pesels)


def test_after_the_last_offer_the_case_goes_to_the_hotline(april) -> None:
    world, seeded = april
    change = {"kind": "rules", "effective_from": today_warsaw().isoformat(),
              "cohorts": _correction(seeded["opens"])}  # fmt: skip
    dry_run = _dry_run(world, change)
    _start(world, dry_run, max_offers=2)
    told = Told()
    _jobs(_service(told)).run(dry_run, clock.now())
    series = world.appointment(seeded["cases"]["nie"][0])["series_id"]
    the_id = offer_id(dry_run, series)
    for _ in range(2):
        assert _answer(world, "patient-1", the_id, "decline").status_code == 200
    offer = world.db.collection(OFFERS).document(the_id).get().to_dict()
    assert offer["status"] == "escalated" and offer["declined"] == 2 and offer["seats"] == []
    listed = world.call("GET", "/v1/offers", "agent", query={"list": "hotline"}).get_json()
    assert the_id in {o["offer_id"] for o in listed["offers"]}
    # Its booking stands until someone acts: nothing was cancelled.
    assert world.appointment(seeded["cases"]["nie"][0])["status"] == "booked"
    # A closed offer cannot be accepted any more.
    late = _answer(world, "patient-1", the_id, "accept")
    assert late.status_code == 409 and late.get_json()["error"]["code"] == "offer_closed"
    _check_no_seat_twice(world)


def test_bad_input_changes_nothing(april) -> None:
    world, _ = april
    for body in ({}, {"impact_job_id": "x"}, {"impact_job_id": "0" * 32, "max_offers": 9}):
        response = world.write("POST", "/v1/admin/replans", "admin", body)
        assert response.status_code in (400, 404), (body, response.get_json())
    assert world.write("POST", "/v1/admin/replans", "patient-0",
                       {"impact_job_id": "0" * 32}).status_code == 403  # fmt: skip
    assert world.call("GET", f"/v1/admin/replans/{'0' * 32}", "admin").status_code == 404
    assert _answer(world, "patient-0", "0" * 32, "maybe").status_code == 400
    assert _answer(world, "patient-0", "0" * 32, "accept").status_code == 404
    assert world.db.collection(REPLAN_JOBS).count().get()[0][0].value == 0
    assert world.db.collection(OFFERS).count().get()[0][0].value == 0


# -- an SDS shortfall, re-homed instead of cancelled ------------------------------------------


def test_an_sds_shortfall_re_homes_instead_of_cancelling(project: str) -> None:
    today = today_warsaw()
    monday = today + timedelta(days=14 - today.weekday())
    slot = SlotRef(POINT_X, monday, dtime(9, 0), "jcovden")
    world = make_world(
        project,
        patients=5,
        slots={
            POINT_X: [(slot.day, slot.start, slot.product, 5)],
            POINT_Z: [(monday + timedelta(days=1), dtime(9, 0), "jcovden", 5)],
        },
    )
    booked = []
    for patient in range(5):
        response = world.book(patient, slot.slot_id)
        assert response.status_code == 201, response.get_json()
        booked.append(response.get_json()["appointments"][0]["appointment_id"])
    sds = FakeSds()
    sds.feed.append(delivery("D-J", "jcovden", 5, monday, 1))
    assert sync(sds).run(clock.now())["lowered"] == 0
    shortfall = [delivery("D-J", "jcovden", 3, monday, 2)]  # two doses short
    change = {"kind": "supply", "deliveries": [d.model_dump(mode="json") for d in shortfall]}
    dry_run = _dry_run(world, change)
    _start(world, dry_run)
    _jobs(_service(Told())).run(dry_run, clock.now())
    offers = [d.to_dict() for d in world.db.collection(OFFERS).stream()]
    assert len(offers) == 2 and {o["status"] for o in offers} == {"offered"}
    for offer in offers:  # not at X that week: its doses are not coming
        assert {s["point_id"] for s in offer["seats"]} == {POINT_Z}
        patient = next(i for i, p in enumerate(world.pesels) if key_of(p) == offer["patient_key"])
        response = _answer(world, f"patient-{patient}", offer["offer_id"], "accept")
        assert response.status_code == 200, response.get_json()
    # SDS's real message arrives: nobody is cancelled, the two are at Z.
    sds.feed += shortfall
    sync(sds).run(clock.now())
    live = _booked(world)
    assert set(booked) <= set(live)
    assert Counter(a["point_id"] for a in live.values()) == {POINT_X: 3, POINT_Z: 2}
    _check_no_seat_twice(world)


@pytest.fixture
def frozen_firestore(monkeypatch: pytest.MonkeyPatch):
    proxy = FreezableProxy(os.environ["FIRESTORE_EMULATOR_HOST"])
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", proxy.address)
    wiring.reset()
    yield proxy
    proxy.close()


def test_firestore_down_is_a_503_and_the_answer_is_all_or_nothing(april, frozen_firestore) -> None:
    world, seeded = april  # its own client reaches the emulator directly
    change = {"kind": "rules", "effective_from": today_warsaw().isoformat(),
              "cohorts": _correction(seeded["opens"])}  # fmt: skip
    dry_run = _dry_run(world, change)
    with frozen_firestore.frozen():
        refused = world.write("POST", "/v1/admin/replans", "admin", {"impact_job_id": dry_run})
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    time.sleep(0.5)
    assert world.db.collection(REPLAN_JOBS).count().get()[0][0].value == 0
    _start(world, dry_run)
    _jobs(_service(Told())).run(dry_run, clock.now())
    series = world.appointment(seeded["cases"]["tak"][0])["series_id"]
    the_id = offer_id(dry_run, series)
    before = snapshot(world.db)
    with frozen_firestore.frozen():
        answer = _answer(world, "patient-0", the_id, "accept")
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1
    time.sleep(0.5)  # what the frozen proxy held flows on: it must change nothing
    assert snapshot(world.db) == before
    accepted = _answer(world, "patient-0", the_id, "accept")
    assert accepted.status_code == 200, accepted.get_json()
    _check_no_seat_twice(world)


def test_a_narrowed_interval_moves_dose_2_alone_into_its_new_window(project: str) -> None:
    """A vaccines version narrows comirnaty's interval to 21-28 days: the dose 2 booked at 35
    days is the case, alone; it is offered a seat in the new window at its own point."""
    today = today_warsaw()
    first = today + timedelta(days=3)
    world = make_world(
        project,
        patients=1,
        slots={
            POINT_X: [
                (first, dtime(10, 0), "comirnaty", 2),
                (first + timedelta(days=35), dtime(10, 0), "comirnaty", 2),
                (first + timedelta(days=24), dtime(10, 0), "comirnaty", 2),
            ],
        },
    )
    booked = world.book(0, sid(POINT_X, first, dtime(10, 0), "comirnaty"))
    assert booked.status_code == 201, booked.get_json()
    dose1, dose2 = (a["appointment_id"] for a in booked.get_json()["appointments"])
    if world.appointment(dose2)["day"] != (first + timedelta(days=35)).isoformat():
        dose1, dose2 = dose2, dose1
    AvailabilityFolder(world.db).fold_all()
    vaccines = yaml.safe_load((RULES_DIR / "vaccines.yaml").read_text(encoding="utf-8"))
    vaccines["version"] = f"test-{uuid.uuid4().hex[:8]}"
    for product in vaccines["products"]:
        if product["code"] == "comirnaty":
            product |= {"min_interval_days": 21, "planned_interval_days": 24,
                        "max_interval_days": 28}  # fmt: skip
    change = {"kind": "rules", "effective_from": today.isoformat(),
              "vaccines": yaml.safe_dump(vaccines, sort_keys=False)}  # fmt: skip
    dry_run = _dry_run(world, change)
    (case,) = list(_jobs(_service(Told())).impact.cases(dry_run))
    assert case.appointment_ids == (dose2,) and case.visits[0].reasons == ("interval",)
    _start(world, dry_run)
    _jobs(_service(Told())).run(dry_run, clock.now())
    (offer,) = _offers(world, "patient-0")
    assert [s["day"] for s in offer["to"]] == [(first + timedelta(days=24)).isoformat()]
    assert _answer(world, "patient-0", offer["offer_id"], "accept").status_code == 200
    assert world.appointment(dose2)["day"] == (first + timedelta(days=24)).isoformat()
    assert world.appointment(dose1)["day"] == first.isoformat()  # dose 1 untouched
    _check_no_seat_twice(world)
