"""Impact dry runs against the Firestore emulator (issue 15 item 1, common/services/impact.py).

Three changes, each given as the real one is, through the public API as an admin:
- a cohort opened by mistake: a rules version whose cohorts close a birth-year band again;
- a capacity cut of a slot (and a block of a dose-1 slot): the dry run's list is then compared
  with what the real PATCH cancels, exactly;
- an SDS shortfall over three weeks (a dose-2 week included): compared with what the real
  sync cancels, exactly.
Each checks the exact affected set, that valid bookings are not listed, that nothing was
written outside the job's own documents (a snapshot of every collection before and after), and
that the report's counts equal its list. A job whose worker is dropped after one page, or
killed before its commit, resumes and ends with the same list, without duplicates; two workers
on one job cannot both commit a page; Firestore frozen gives 503 with Retry-After and nothing
half-written; and the job runs as deployed, through the Cloud Tasks emulator.
Dates follow the one clock (common/clock.py): any hour of any day.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from datetime import time as dtime
from typing import Any

import pytest
import yaml
from werkzeug.serving import make_server

from common import clock, wiring
from common.adapters.firestore_store import APPOINTMENTS, AUDIT_LOG, SEATS
from common.declarations import load_declarations
from common.domain.calendar import SlotRef
from common.domain.rulebook import RULES_DIR
from common.domain.supply import iso_week
from common.services.availability import AvailabilityFolder
from common.services.impact import (
    IMPACT_CASES,
    IMPACT_JOBS,
    ImpactJobs,
    _Lost,
    parse_change,
)
from tests.support.freezer import FreezableProxy
from tests.support.points import POINT_X, POINT_Y, World, make_world, seed_visit, sid, snapshot
from tests.support.stack import add_patient, gateway, today_warsaw
from tests.support.supply import FakeSds
from tests.support.supply import delivery as _delivery
from tests.support.supply import sync as _sync


@functools.cache
def _no_publisher() -> None:
    return None


@pytest.fixture(autouse=True)
def events_stay_in_outbox(project: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "publisher", _no_publisher)
    monkeypatch.delenv("CLOUD_TASKS_EMULATOR_HOST", raising=False)
    wiring.reset()


class RecordingQueue:
    """Cloud Tasks as a list: the test drives the worker itself."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, str]] = []

    def enqueue(self, job_id: str, suffix: str) -> str:
        self.tasks.append((job_id, suffix))
        return "created"


def _worker(units: Any = None, **options: Any) -> ImpactJobs:
    """A worker of its own (a fresh instance: nothing carried over from another)."""
    options.setdefault("min_page_interval_s", 0)
    return ImpactJobs(
        units or wiring.units(),
        wiring.firestore_client(),
        wiring.rule_book(),
        RecordingQueue(),
        **options,
    )


class DiesAtCommit:
    """Units of work of a worker killed after reading a page, before committing it."""

    def __init__(self, units: Any) -> None:
        self.units = units

    def reader(self) -> Any:
        return self.units.reader()

    def run(self, attempt: Any, **options: Any) -> Any:
        if options.get("gave_up") is _Lost:  # the page's commit
            raise RuntimeError("worker killed")
        return self.units.run(attempt, **options)


def _ask(world: World, change: dict[str, Any]):
    return world.write("POST", "/v1/admin/impact", "admin", {"change": change})


def _create(world: World, change: dict[str, Any]) -> str:
    response = _ask(world, change)
    assert response.status_code == 202, response.get_json()
    job = response.get_json()["job"]
    assert job["status"] == "queued" and job["progress"]["pages"] == 0
    return job["job_id"]


def _finish(job_id: str, *, worker_per_page: bool = False, **options: Any) -> dict[str, Any]:
    """Run the job to its end: one worker, or a fresh worker for every page (each resumes
    from what the job's documents say, nothing carried over in memory)."""
    jobs = _worker(**options)
    for _ in range(200):
        if worker_per_page:
            outcome = _worker(**options).run(job_id, clock.now(), max_pages=1)
        else:
            outcome = jobs.run(job_id, clock.now())
        if outcome["outcome"] in ("done", "failed"):
            return outcome
    raise AssertionError("the job did not finish")


def _job(world: World, job_id: str) -> dict[str, Any]:
    response = world.call("GET", f"/v1/admin/impact/{job_id}", "admin")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["job"]


def _rows(world: World, job_id: str) -> list[dict[str, str]]:
    response = world.call("GET", f"/v1/admin/impact/{job_id}/cases", "admin")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert int(response.headers["X-Impact-Rows"]) == len(rows)
    ids = [r["appointment_id"] for r in rows]
    assert len(ids) == len(set(ids)), "an appointment listed twice"
    return rows


def _check_counts_equal_the_list(job: dict[str, Any], rows: list[dict[str, str]]) -> None:
    counts = job["counts"]
    affected = [r for r in rows if r["verdict"] == "affected"]
    unknown = [r for r in rows if r["verdict"] == "unknown"]
    assert counts["affected_bookings"] == len(affected) == job["progress"]["rows"] - len(unknown)
    assert counts["unknown_bookings"] == len(unknown)
    assert counts["affected_cases"] == len({r["series_id"] for r in affected})
    assert counts["by_county"] == dict(Counter(r["county"] or "unknown" for r in affected))
    assert counts["by_point"] == dict(Counter(r["point_id"] for r in affected))
    assert counts["by_product"] == dict(Counter(r["product"] for r in affected))
    assert counts["by_day"] == dict(Counter(r["day"] for r in affected))
    reasons = Counter(reason for r in rows for reason in r["reasons"].split(";"))
    assert counts["by_reason"] == dict(reasons)


def _only_the_jobs_documents_changed(before: dict, after: dict) -> None:
    """Nothing was written outside the job's own documents: its job and chunks, its audit
    entries and the POST's idempotency record."""

    def outside(snap: dict) -> dict:
        return {k: v for k, v in snap.items() if not k.startswith((IMPACT_JOBS, IMPACT_CASES))}

    was, now = outside(before), outside(after)
    assert {k: now.get(k) for k in was} == was, "a document outside the job changed"
    for key in set(now) - set(was):
        if key.startswith(AUDIT_LOG + "/"):
            assert now[key]["action"] in ("impact.create", "impact.cases"), now[key]
        else:
            assert key.startswith("idempotency_keys/"), key


def _booked(db) -> set[str]:
    return {d.id for d in db.collection(APPOINTMENTS).stream() if d.to_dict()["status"] == "booked"}


def _book(world: World, patient: int, slot_id: str) -> list[str]:
    response = world.book(patient, slot_id)
    assert response.status_code == 201, response.get_json()
    return [a["appointment_id"] for a in response.get_json()["appointments"]]


# -- a cohort opened by mistake ---------------------------------------------------------------


def _correction(effective_from: date) -> str:
    """The cohorts file that closes again the birth years 1961-1980 (opened by mistake): they
    open only in more than a year, everyone else as before. As an admin would send it: the
    new file's YAML text."""
    current = yaml.safe_load((RULES_DIR / "cohorts.yaml").read_text(encoding="utf-8"))
    later = (effective_from + timedelta(days=400)).isoformat()
    current["version"] = f"test-{uuid.uuid4().hex[:8]}"
    current["cohorts"] = [
        {"born_to": 1960, "opens_at": "2021-01-15T00:00:00"},
        {"born_from": 1961, "born_to": 1980, "opens_at": f"{later}T00:00:00"},
        {"born_from": 1981, "born_to": 2009, "opens_at": "2021-05-01T00:00:00"},
        {"born_from": 2010, "opens_at": "2021-12-13T00:00:00"},
    ]
    return yaml.safe_dump(current, sort_keys=False)


@pytest.fixture
def cohort_world(project: str) -> tuple[World, dict[str, Any]]:
    """Patients born 1980 (the band opened by mistake) and 1950 (open all along) booked; one
    visit of the band made before bookings kept the birth date; one booking cancelled."""
    day = today_warsaw() + timedelta(days=3)
    world = make_world(
        project,
        patients=3,  # born 1980
        slots={
            POINT_X: [
                (day, dtime(9, 0), "jcovden", 10),
                (day, dtime(10, 0), "comirnaty", 10),
                (day + timedelta(days=35), dtime(10, 0), "comirnaty", 10),
            ],
            POINT_Y: [(day, dtime(9, 0), "jcovden", 10)],
        },
    )
    world.pesels += [add_patient(world.db, born=date(1950, 3, 3), serial=20 + i) for i in range(2)]
    jcovden_x = sid(POINT_X, day, dtime(9, 0), "jcovden")
    comirnaty_x = sid(POINT_X, day, dtime(10, 0), "comirnaty")
    jcovden_y = sid(POINT_Y, day, dtime(9, 0), "jcovden")
    series_1980 = _book(world, 0, comirnaty_x)  # both doses
    single_1980 = _book(world, 1, jcovden_y)
    (cancelled,) = _book(world, 2, jcovden_x)
    cancel = world.write("POST", f"/v1/appointments/{cancelled}/cancel", "patient-2", {})
    assert cancel.status_code == 200, cancel.get_json()
    valid = _book(world, 3, comirnaty_x) + _book(world, 4, jcovden_y)
    old = seed_visit(
        world.db, add_patient(world.db, born=date(1975, 1, 1), serial=40), day=day, seat=9
    )
    AvailabilityFolder(world.db).fold_all()
    assert len(series_1980) == 2 and len(valid) == 3
    return world, {
        "affected": set(series_1980 + single_1980),
        "unknown": {old},
        "valid": set(valid),
        "cancelled": cancelled,
        "series_1980": series_1980,
    }


def _rules_change(effective_from: date | None = None) -> dict[str, Any]:
    effective_from = effective_from or today_warsaw()
    return {
        "kind": "rules",
        "effective_from": effective_from.isoformat(),
        "cohorts": _correction(effective_from),
    }


def test_a_cohort_opened_by_mistake_lists_exactly_its_bookings(cohort_world) -> None:
    world, expected = cohort_world
    # Bookings made now keep the birth date (it is what age and cohort rules are judged on).
    stored = world.appointment(expected["series_1980"][0])
    assert stored["birth_date"] == "1980-05-17"
    before = snapshot(world.db)
    job_id = _create(world, _rules_change())
    assert _finish(job_id, page_size=3)["outcome"] == "done"
    job = _job(world, job_id)
    rows = _rows(world, job_id)
    _only_the_jobs_documents_changed(before, snapshot(world.db))

    affected = {r["appointment_id"] for r in rows if r["verdict"] == "affected"}
    unknown = {r["appointment_id"] for r in rows if r["verdict"] == "unknown"}
    assert affected == expected["affected"]
    assert unknown == expected["unknown"]
    listed = affected | unknown
    assert not listed & expected["valid"] and expected["cancelled"] not in listed
    assert {r["reasons"] for r in rows if r["verdict"] == "affected"} == {"cohort"}
    assert {r["reasons"] for r in rows if r["verdict"] == "unknown"} == {"unknown"}
    series = {r["series_id"] for r in rows if r["appointment_id"] in expected["series_1980"]}
    assert len(series) == 1  # both doses of the series, as one case
    assert job["status"] == "done" and job["progress"]["pages"] > 1
    assert job["progress"]["scanned"] == len(_booked(world.db))  # every live booking, once
    assert job["counts"]["affected_cases"] == 2 and job["counts"]["unknown_cases"] == 1
    assert job["counts"]["by_point"] == {POINT_X: 2, POINT_Y: 1}
    assert job["counts"]["by_county"] == {"Kraków": 3}
    _check_counts_equal_the_list(job, rows)
    # No PESEL in clear, nor a birth date, in the list or the job (appointment ids only).
    text = str(rows) + str(job) + str(snapshot(world.db).get(f"{IMPACT_JOBS}/{job_id}"))
    assert not any(pesel in text for pesel in world.pesels)
    assert "1980-05-17" not in text
    # The same cases, for the re-plan that will build on them.
    cases = list(_worker().cases(job_id))
    assert {i for c in cases for i in c.appointment_ids} == listed
    assert sum(c.certain for c in cases) == 2


def test_a_job_dropped_after_one_page_resumes_with_the_same_list(cohort_world) -> None:
    world, _ = cohort_world
    whole = _create(world, _rules_change())
    _finish(whole, page_size=3)
    interrupted = _create(world, _rules_change())
    first = _worker(page_size=3).run(interrupted, clock.now(), max_pages=1)
    assert first["outcome"] == "continues" and _job(world, interrupted)["status"] == "running"
    # That worker is gone. Another one, killed after reading its page but before committing
    # it, leaves nothing behind either.
    with pytest.raises(RuntimeError, match="killed"):
        _worker(DiesAtCommit(wiring.units()), page_size=3).run(interrupted, clock.now())
    assert _job(world, interrupted)["progress"]["pages"] == 1
    assert _finish(interrupted, page_size=3)["outcome"] == "done"

    def listed(job_id: str) -> list[tuple[str, str, str]]:
        return sorted(
            (r["appointment_id"], r["verdict"], r["reasons"]) for r in _rows(world, job_id)
        )

    assert listed(interrupted) == listed(whole)
    assert _job(world, interrupted)["counts"] == _job(world, whole)["counts"]


def test_two_workers_cannot_both_commit_a_page(cohort_world) -> None:
    world, _ = cohort_world
    job_id = _create(world, _rules_change())
    slow, fast = _worker(page_size=3), _worker(page_size=3)
    stale = slow._read(job_id)  # both read the job; the fast one commits its page first
    fast.run(job_id, clock.now(), max_pages=1)
    change, as_of = parse_change(stale.data["change"]), stale.data["as_of"]
    page = slow.scanner.page(change, None, as_of, slow.scanner.context(change, as_of))
    with pytest.raises(_Lost):
        slow._commit_page(job_id, stale, page, None, clock.now())
    assert _finish(job_id, page_size=3)["outcome"] == "done"
    rows = _rows(world, job_id)
    assert len(rows) == 4  # listed once, whoever ran which page


def test_a_version_taking_effect_later_judges_from_its_day(cohort_world) -> None:
    world, _ = cohort_world
    # In force only after every booked visit: it judges none of them.
    later = today_warsaw() + timedelta(days=60)
    job_id = _create(world, _rules_change(later))
    _finish(job_id)
    job = _job(world, job_id)
    assert job["change"]["judged_at"].startswith(later.isoformat())
    assert job["progress"]["judged"] == 0 and _rows(world, job_id) == []


# -- bad input, and Firestore down ---------------------------------------------------------------


def test_bad_input_is_a_clear_4xx_and_writes_nothing(cohort_world) -> None:
    world, _ = cohort_world
    today = today_warsaw()
    slot = sid(POINT_X, today + timedelta(days=3), dtime(9, 0), "jcovden")
    cases: list[tuple[Any, int, str]] = [
        ({"kind": "nothing"}, 400, "invalid_request"),
        ({"kind": "rules", "effective_from": today.isoformat()}, 400, "invalid_request"),
        (_rules_change(today - timedelta(days=1)), 400, "invalid_request"),
        (_rules_change() | {"cohorts": "version: [unclosed"}, 400, "invalid_request"),
        (_rules_change() | {"cohorts": "a: &x [1]\nb: *x\n"}, 400, "invalid_request"),
        (_rules_change() | {"cohorts": "[" * 5000}, 400, "invalid_request"),
        (_rules_change() | {"cohorts": {"version": "x"}}, 400, "invalid_request"),
        (
            _rules_change() | {"cohorts": (RULES_DIR / "cohorts.yaml").read_text()},
            400,
            "invalid_request",
        ),  # a version already in the book: a rule change is a new version
        ({"kind": "capacity", "point_id": POINT_X, "slot_id": slot}, 400, "invalid_request"),
        (
            {
                "kind": "capacity",
                "point_id": POINT_X,
                "slot_id": slot,
                "remove": True,
                "change": {"capacity": 1},
            },
            400,
            "invalid_request",
        ),
        (
            {"kind": "capacity", "point_id": POINT_X, "slot_id": slot, "change": {}},
            400,
            "invalid_request",
        ),
        (
            {
                "kind": "capacity",
                "point_id": POINT_X,
                "slot_id": slot.replace("0900", "1900"),
                "remove": True,
            },
            404,
            "slot_not_found",
        ),
        (
            {"kind": "capacity", "point_id": "pt-09999", "slot_id": slot, "remove": True},
            404,
            "point_not_found",
        ),
        ({"kind": "supply", "deliveries": []}, 400, "invalid_request"),
        (
            {
                "kind": "supply",
                "deliveries": [
                    {
                        "delivery_id": "D",
                        "point_id": POINT_X,
                        "product": "jcovden",
                        "doses": 0,
                        "delivery_date": "2031-01-01",
                        "sequence": 1,
                    }
                ],
            },
            400,
            "invalid_request",
        ),
    ]
    before = snapshot(world.db)
    for change, status, code in cases:
        response = _ask(world, change)
        assert response.status_code == status, (change, response.get_json())
        assert response.get_json()["error"]["code"] == code, response.get_json()
    for body in (None, {"change": _rules_change(), "extra": 1}):
        response = world.write("POST", "/v1/admin/impact", "admin", body)
        assert response.status_code == 400
    assert world.call("GET", "/v1/admin/impact/" + "0" * 32, "admin").status_code == 404
    assert world.call("GET", "/v1/admin/impact/nope/cases", "admin").status_code == 404
    assert snapshot(world.db) == before


def test_a_started_slot_is_refused_as_the_real_change_would_be(project: str) -> None:
    day = today_warsaw() - timedelta(days=1)
    world = make_world(project, patients=1, slots={POINT_X: [(day, dtime(9, 0), "jcovden", 2)]})
    slot = sid(POINT_X, day, dtime(9, 0), "jcovden")
    change = {"kind": "capacity", "point_id": POINT_X, "slot_id": slot, "change": {"capacity": 0}}
    response = _ask(world, change)
    real = world.write("PATCH", f"/v1/points/{POINT_X}/slots/{slot}", "admin", {"capacity": 0})
    assert response.status_code == real.status_code == 409
    assert response.get_json()["error"]["code"] == real.get_json()["error"]["code"]


@pytest.fixture
def frozen_firestore(monkeypatch: pytest.MonkeyPatch) -> Iterator[FreezableProxy]:
    proxy = FreezableProxy(os.environ["FIRESTORE_EMULATOR_HOST"])
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", proxy.address)
    wiring.reset()
    yield proxy
    proxy.close()


def test_firestore_down_is_a_503_with_retry_after_and_nothing_half_written(
    cohort_world, frozen_firestore: FreezableProxy
) -> None:
    world, _ = cohort_world  # its own client reaches the emulator directly
    before = snapshot(world.db)
    with frozen_firestore.frozen():
        response = _ask(world, _rules_change())
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    time.sleep(0.5)  # what the frozen proxy held flows on: it must change nothing
    assert snapshot(world.db) == before
    job_id = _create(world, _rules_change())
    with frozen_firestore.frozen():
        answer = world.api.call(
            "POST", "/_functions/run_impact_job", body={"job_id": job_id}
        )  # the worker, as Cloud Tasks calls it
    assert answer.status_code == 503
    time.sleep(0.5)
    assert _job(world, job_id)["progress"]["pages"] == 0
    assert _finish(job_id)["outcome"] == "done"
    assert len(_rows(world, job_id)) == 4


# -- a capacity cut at a point -------------------------------------------------------------------


@pytest.fixture
def slot_world(project: str) -> tuple[World, dict[str, str]]:
    day = today_warsaw() + timedelta(days=3)
    world = make_world(
        project,
        patients=6,
        slots={
            POINT_X: [
                (day, dtime(9, 0), "jcovden", 5),
                (day, dtime(10, 0), "comirnaty", 5),
                (day + timedelta(days=35), dtime(10, 0), "comirnaty", 5),
            ],
            POINT_Y: [(day, dtime(9, 0), "jcovden", 5)],
        },
    )
    slots = {
        "jcovden": sid(POINT_X, day, dtime(9, 0), "jcovden"),
        "comirnaty": sid(POINT_X, day, dtime(10, 0), "comirnaty"),
    }
    for patient in range(4):
        _book(world, patient, slots["jcovden"])
    for patient in (4, 5):
        _book(world, patient, slots["comirnaty"])
    return world, slots


def _holding(db, slot_id: str, from_index: int) -> set[str]:
    """The visits on seats >= from_index of a slot, and their dose 2s (read independently)."""
    found = set()
    for seat in db.collection(SEATS).where("slot_id", "==", slot_id).stream():
        data = seat.to_dict()
        if int(seat.id.rsplit("_", 1)[1]) >= from_index and not data.get("blocker"):
            found.add(data["appointment_id"])
            appointment = db.collection(APPOINTMENTS).document(data["appointment_id"]).get()
            linked = appointment.to_dict().get("linked_appointment_id")
            if appointment.to_dict()["dose_number"] == 1 and linked:
                found.add(linked)
    return found


@pytest.mark.parametrize(
    ("slot", "body", "reason"),
    [
        ("jcovden", {"capacity": 1}, None),
        ("comirnaty", {"blocked": True}, None),
        ("jcovden", None, "remove"),
    ],
)
def test_a_capacity_cut_lists_exactly_what_the_real_change_cancels(
    slot_world, slot: str, body: dict | None, reason: str | None
) -> None:
    world, slots = slot_world
    slot_id = slots[slot]
    change: dict[str, Any] = {"kind": "capacity", "point_id": POINT_X, "slot_id": slot_id}
    change |= {"remove": True} if reason == "remove" else {"change": body}
    new_capacity = 0 if reason == "remove" or (body or {}).get("blocked") else body["capacity"]
    expected = _holding(world.db, slot_id, new_capacity)
    assert expected
    before = snapshot(world.db)
    job_id = _create(world, change)
    assert _finish(job_id)["outcome"] == "done"
    job, rows = _job(world, job_id), _rows(world, job_id)
    _only_the_jobs_documents_changed(before, snapshot(world.db))
    assert {r["appointment_id"] for r in rows} == expected
    assert {r["reasons"] for r in rows} == {"capacity"} and {r["verdict"] for r in rows} == {
        "affected"
    }
    _check_counts_equal_the_list(job, rows)
    if slot == "comirnaty":
        assert job["counts"]["affected_cases"] == 2 and len(rows) == 4  # dose 2s go along

    # The real change cancels exactly those.
    booked = _booked(world.db)
    path = f"/v1/points/{POINT_X}/slots/{slot_id}"
    real = (
        world.write("DELETE", path, "admin")
        if reason == "remove"
        else world.write("PATCH", path, "admin", body)
    )
    assert real.status_code == 200, real.get_json()
    assert booked - _booked(world.db) == expected


# -- an SDS shortfall ------------------------------------------------------------------------


def _monday() -> date:
    today = today_warsaw()
    return today + timedelta(days=14 - today.weekday())


@pytest.fixture
def supply_world(project: str) -> tuple[World, FakeSds, dict[str, Any]]:
    monday = _monday()
    jcovden = [
        SlotRef(POINT_X, monday, dtime(9, 0), "jcovden"),
        SlotRef(POINT_X, monday, dtime(10, 0), "jcovden"),
        SlotRef(POINT_X, monday + timedelta(days=1), dtime(9, 0), "jcovden"),
        SlotRef(POINT_X, monday + timedelta(days=1), dtime(10, 0), "jcovden"),
    ]
    dose1 = SlotRef(POINT_X, monday, dtime(12, 0), "comirnaty")
    dose2 = SlotRef(POINT_X, monday + timedelta(days=35), dtime(12, 0), "comirnaty")
    # A week earlier, untouched by the shortfall: its dose 2 shares the slot of the others'.
    earlier = SlotRef(POINT_X, monday - timedelta(days=7), dtime(12, 0), "comirnaty")
    world = make_world(
        project,
        patients=12,
        slots={
            POINT_X: [(r.day, r.start, r.product, 5) for r in jcovden]
            + [(r.day, r.start, r.product, 3) for r in (dose1, dose2)]
            + [(earlier.day, earlier.start, earlier.product, 1)]
        },
    )
    patient = 0
    for ref, count in zip(jcovden, (3, 3, 2, 1), strict=True):
        for _ in range(count):
            _book(world, patient, ref.slot_id)
            patient += 1
    series = _book(world, 9, dose1.slot_id) + _book(world, 10, dose1.slot_id)
    kept = _book(world, 11, earlier.slot_id)
    assert len(series) == 4 and len(kept) == 2
    assert world.appointment(kept[1])["slot_id"] == dose2.slot_id
    sds = FakeSds()
    week, later = iso_week(monday), iso_week(dose2.day)
    for delivery_id, product, doses, day in (
        ("D-J", "jcovden", 20, monday),
        ("D-C1", "comirnaty", 10, monday),
        ("D-C2", "comirnaty", 10, dose2.day),
    ):
        sds.feed.append(_delivery(delivery_id, product, doses, day, len(sds.feed) + 1))
    summary = _sync(sds).run(clock.now())
    assert summary["reconciled"] == 3 and summary["lowered"] == 0  # enough for everyone
    return world, sds, {"jcovden": jcovden, "series": series, "kept": kept, "weeks": (week, later)}


def test_an_sds_shortfall_lists_exactly_what_the_real_sync_cancels(supply_world) -> None:
    world, sds, seeded = supply_world
    monday = _monday()
    dose2_day = monday + timedelta(days=35)
    shortfall = [
        _delivery("D-J", "jcovden", 5, monday, 4),  # 9 booked, 5 doses
        _delivery("D-C1", "comirnaty", 10, monday, 5, status="cancelled"),  # dose 1s: none
        _delivery("D-C2", "comirnaty", 1, dose2_day, 6),  # the dose 2 week: 1 dose
    ]
    change = {"kind": "supply", "deliveries": [d.model_dump(mode="json") for d in shortfall]}
    before = snapshot(world.db)
    job_id = _create(world, change)
    assert _finish(job_id, groups_per_page=1, worker_per_page=True)["outcome"] == "done"
    job, rows = _job(world, job_id), _rows(world, job_id)
    _only_the_jobs_documents_changed(before, snapshot(world.db))
    listed = {r["appointment_id"] for r in rows}
    assert {r["reasons"] for r in rows} == {"supply"}
    # Both series (dose 1 unseated, dose 2 with it: listed once, though its own week is cut
    # too), and the latest jcovden visits of the week: one of the second slot (its kept visits
    # move down first), the two of the third, the one of the fourth. The dose 2 week's one
    # dose goes to the series booked a week earlier: the cancelled dose 2s freed their seats.
    assert set(seeded["series"]) <= listed
    assert not set(seeded["kept"]) & listed
    jcovden_rows = [r for r in rows if r["product"] == "jcovden"]
    by_slot = Counter(r["slot_id"] for r in jcovden_rows)
    slots = [r.slot_id for r in seeded["jcovden"]]
    assert by_slot == {slots[1]: 1, slots[2]: 2, slots[3]: 1}
    assert job["counts"]["affected_cases"] == 2 + 4
    assert job["change"]["weeks"] == sorted(job["change"]["weeks"])
    _check_counts_equal_the_list(job, rows)

    # The real sync, given the same deliveries, cancels exactly those.
    booked = _booked(world.db)
    sds.feed += shortfall
    summary = _sync(sds).run(clock.now())
    assert summary["reconciled"] == 3, summary
    assert booked - _booked(world.db) == listed


# -- as deployed: through Cloud Tasks --------------------------------------------------------------


def test_the_job_runs_through_the_cloud_tasks_emulator(
    cohort_world, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.adapters.cloud_tasks import make_tasks_client
    from emulator.cloudtasks import CloudTasksEmulator
    from emulator.provision import provision_queues

    world, expected = cohort_world
    server = make_server("127.0.0.1", 0, gateway(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with CloudTasksEmulator(port=0) as tasks:
            monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", tasks.address)
            monkeypatch.setenv(
                "FUNCTIONS_BASE_URL", f"http://127.0.0.1:{server.server_port}/_functions"
            )
            wiring.reset()
            provision_queues(
                make_tasks_client(tasks.address),
                world.project,
                "europe-central2",
                load_declarations(),
            )
            job_id = _create(world, _rules_change())
            deadline = time.monotonic() + 90
            while _job(world, job_id)["status"] != "done" and time.monotonic() < deadline:
                time.sleep(0.5)
            # Its re-plan runs the same way (run_replan_job's tasks). The correction opens the
            # band in 400 days, past what can be booked: both cases go to the hotline's list.
            replan = world.write("POST", "/v1/admin/replans", "admin", {"impact_job_id": job_id})
            assert replan.status_code == 202, replan.get_json()
            path = f"/v1/admin/replans/{job_id}"
            deadline = time.monotonic() + 90
            while (
                world.call("GET", path, "admin").get_json()["job"]["status"] != "done"
                and time.monotonic() < deadline
            ):
                time.sleep(0.5)
    finally:
        server.shutdown()
    assert _job(world, job_id)["status"] == "done"
    rows = _rows(world, job_id)
    assert {r["appointment_id"] for r in rows} == expected["affected"] | expected["unknown"]
    replanned = world.call("GET", f"/v1/admin/replans/{job_id}", "admin").get_json()["job"]
    assert replanned["status"] == "done" and replanned["counts"]["escalated"] == 2, replanned
