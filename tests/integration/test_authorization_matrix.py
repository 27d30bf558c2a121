"""The whole authorisation matrix: every role x every operation of api/openapi.yaml.

The operations are read from the OpenAPI document, so a new endpoint without a row here
fails `test_every_operation_has_a_matrix_row` (and its own parametrised case). For each
operation, every role calls it on a resource of patient A / point X (the "own" resource of
patient A, of the guardian's child, of X's staff; "other" for patient B, for staff of Y);
the status must be the expected one, and every refusal (4xx) must leave every document of
every collection exactly as it was.

Roles: anonymous, a bad token, patient A, patient B, a guardian (a parent whose child under
18 has bookings), staff of X, staff of Y, an agent with a reason, an agent without one, an
admin. An agent's reason travels in the body (writes, the look-up) or in X-Access-Reason.
"""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any

import pytest
import yaml

from common import wiring
from common.adapters.firestore_store import CALLBACKS
from emulator.gateway import OPENAPI_PATH
from tests.support.points import (
    POINT_X,
    POINT_Y,
    World,
    add_child,
    key_of,
    make_world,
    seed_visit,
    sid,
    snapshot,
)
from tests.support.stack import add_patient, today_warsaw

SPEC = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
OPERATIONS = {
    op["operationId"]: (method.upper(), template)
    for template, item in SPEC["paths"].items()
    for method, op in item.items()
    if method in ("get", "post", "put", "patch", "delete")
}
ROLES = (
    "anonymous",
    "bad_token",
    "patient_a",
    "patient_b",
    "guardian",
    "staff_x",
    "staff_y",
    "agent_reason",
    "agent_no_reason",
    "admin",
)
REASON = "caller on the 989 line"
# Roles that act with a reason (an admin gives one too where one is asked).
WITH_REASON = frozenset({"agent_reason", "admin"})


@functools.cache
def _no_publisher() -> None:
    return None


@pytest.fixture(autouse=True)
def events_stay_in_outbox(project: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "publisher", _no_publisher)
    wiring.reset()


@dataclass
class Ctx:
    """The world of one operation's row, and fresh resources for the calls that succeed."""

    world: World
    child: str
    serials: itertools.count = field(default_factory=lambda: itertools.count(200))
    minutes: itertools.count = field(default_factory=lambda: itertools.count(0))
    seats: itertools.count = field(default_factory=lambda: itertools.count(10))

    @property
    def day(self) -> date:
        return self.world.day

    def token(self, role: str) -> str | None:
        w = self.world
        return {
            "anonymous": None,
            "bad_token": "not-a-token",
            "patient_a": w.api.token("patient-a", "patient", pesel=w.pesels[0]),
            "patient_b": w.api.token("patient-b", "patient", pesel=w.pesels[1]),
            "guardian": w.api.token("guardian", "patient", pesel=w.pesels[2]),
            "staff_x": w.api.token("staff-x", "staff", point_id=POINT_X),
            "staff_y": w.api.token("staff-y", "staff", point_id=POINT_Y),
            "agent_reason": w.api.token("agent-1", "agent"),
            "agent_no_reason": w.api.token("agent-2", "agent"),
            "admin": w.api.token("admin-1", "admin"),
        }[role]

    def fresh_patient(self) -> str:
        return add_patient(self.world.db, serial=next(self.serials))

    def visit_of_a(self, day: date | None = None, start: time = time(9, 0)) -> str:
        return seed_visit(
            self.world.db, self.world.pesels[0], day=day or self.day, start=start,
            seat=next(self.seats),
        )  # fmt: skip

    def visit_of_child(self) -> str:
        return seed_visit(
            self.world.db, self.child, day=self.day, start=time(10, 0),
            product="comirnaty_paediatric", seat=next(self.seats),
        )  # fmt: skip

    def new_slot(self) -> str:
        """A slot of X that exists (written as admin), to be changed or removed."""
        start = self._start()
        body = {"day": self.day.isoformat(), "start": start, "product": "jcovden", "capacity": 2}
        response = self.world.api.call(
            "POST", f"/v1/points/{POINT_X}/slots", token=self.token("admin"), body=body,
            key=uuid.uuid4().hex,
        )  # fmt: skip
        assert response.status_code == 201, response.get_json()
        return response.get_json()["slot"]["slot_id"]

    def _start(self) -> str:
        minute = 14 * 60 + next(self.minutes) * 5
        return f"{minute // 60:02d}:{minute % 60:02d}"

    def new_callback(self) -> str:
        callback_id = uuid.uuid4().hex
        self.world.db.collection(CALLBACKS).document(callback_id).set(
            {
                "callback_id": callback_id,
                "status": "open",
                "pesel": self.world.pesels[0],
                "patient_key": key_of(self.world.pesels[0]),
                "phone": "+48600000000",
                "created_at": today_warsaw().isoformat(),
            }
        )
        return callback_id


@dataclass(frozen=True)
class Call:
    path: str
    body: Any = None
    query: dict[str, Any] | None = None
    headers: dict[str, str] | None = None


# A row: how each role calls the operation (on A's / X's resource), and the expected status.
# `build` may create a fresh resource first; it runs before the "before" snapshot.
Build = Callable[[Ctx, str], Call]


@dataclass(frozen=True)
class Row:
    build: Build
    expect: dict[str, int]
    extra: tuple[tuple[str, Build, int], ...] = ()  # (role, build, status): more targets


def _statuses(default: int, **overrides: int) -> dict[str, int]:
    table = {role: default for role in ROLES}
    table.update({"anonymous": 401, "bad_token": 401})
    table.update(overrides)
    return table


STAFF_ONLY = {"staff_x": 0, "admin": 0}  # filled with the success status per row


def _staff_row(build: Build, ok: int, **more: int) -> Row:
    return Row(build, _statuses(403, staff_x=ok, admin=ok, **more))


def _reason(role: str) -> dict[str, str]:
    return {"reason": REASON} if role in WITH_REASON else {}


def _book(ctx: Ctx, role: str) -> Call:
    slot = sid(POINT_X, ctx.day, time(11, 0), "jcovden")
    if role == "patient_a":
        return Call("/v1/appointments", {"slot_id": slot})
    if role in ("patient_b", "guardian"):  # someone else's PESEL: not their child
        return Call("/v1/appointments", {"slot_id": slot, "pesel": ctx.world.pesels[0]})
    if role == "staff_y":
        return Call("/v1/appointments", {"slot_id": slot, "pesel": ctx.fresh_patient()})
    pesel = ctx.fresh_patient() if role not in ("anonymous", "bad_token") else ctx.world.pesels[0]
    return Call("/v1/appointments", {"slot_id": slot, "pesel": pesel} | _reason(role))


def _child_book(ctx: Ctx, role: str) -> Call:
    slot = sid(POINT_X, ctx.day, time(10, 0), "comirnaty_paediatric")
    return Call("/v1/appointments", {"slot_id": slot, "pesel": ctx.child})


def _appointment_op(suffix: str, body: Callable[[Ctx, str], dict[str, Any]]) -> Build:
    def build(ctx: Ctx, role: str) -> Call:
        return Call(f"/v1/appointments/{ctx.visit_of_a()}{suffix}", body(ctx, role))

    return build


def _child_op(suffix: str, body: Callable[[Ctx, str], dict[str, Any]]) -> Build:
    def build(ctx: Ctx, role: str) -> Call:
        return Call(f"/v1/appointments/{ctx.visit_of_child()}{suffix}", body(ctx, role))

    return build


def _get_appointment(ctx: Ctx, role: str) -> Call:
    headers = {"X-Access-Reason": REASON} if role in WITH_REASON else None
    return Call(f"/v1/appointments/{ctx.visit_of_a()}", headers=headers)


def _reschedule_body(ctx: Ctx, role: str) -> dict[str, Any]:
    return {"slot_id": sid(POINT_X, ctx.day, time(13, 0), "jcovden")} | _reason(role)


def _child_reschedule_body(ctx: Ctx, role: str) -> dict[str, Any]:
    return {
        "slot_id": sid(POINT_X, ctx.day + timedelta(days=1), time(10, 0), "comirnaty_paediatric")
    }


def _today_visit(suffix: str, body: Callable[[Ctx, str], dict[str, Any]]) -> Build:
    def build(ctx: Ctx, role: str) -> Call:
        return Call(f"/v1/appointments/{ctx.visit_of_a(today_warsaw())}{suffix}", body(ctx, role))

    return build


def _past_visit(ctx: Ctx, role: str) -> Call:
    visit = ctx.visit_of_a(today_warsaw() - timedelta(days=1))
    return Call(f"/v1/appointments/{visit}/no-show", {})


def _publish(ctx: Ctx, role: str) -> Call:
    start = ctx.day + timedelta(days=2)
    return Call(
        f"/v1/points/{POINT_X}/calendar/publish",
        {
            "date_from": start.isoformat(),
            "date_to": (start + timedelta(days=2)).isoformat(),
            "weekdays": [0, 1, 2, 3, 4, 5, 6],
            "opens": "16:00",
            "closes": "17:00",
            "slot_minutes": 30,
            "capacity": 2,
            "product": "jcovden",
        },
    )


def _add_slot(ctx: Ctx, role: str) -> Call:
    body = {"day": ctx.day.isoformat(), "start": ctx._start(), "product": "jcovden", "capacity": 1}
    return Call(f"/v1/points/{POINT_X}/slots", body)


def _change_slot(ctx: Ctx, role: str) -> Call:
    return Call(f"/v1/points/{POINT_X}/slots/{ctx.new_slot()}", {"capacity": 1})


def _remove_slot(ctx: Ctx, role: str) -> Call:
    return Call(f"/v1/points/{POINT_X}/slots/{ctx.new_slot()}")


def _walk_in(ctx: Ctx, role: str) -> Call:
    pesel = ctx.fresh_patient()
    return Call(
        f"/v1/points/{POINT_X}/walk-ins",
        {"pesel": pesel, "product": "jcovden", "lot_number": "LOT-1"},
    )


def _lookup(ctx: Ctx, role: str) -> Call:
    return Call("/v1/patients/lookup", {"pesel": ctx.world.pesels[0]} | _reason(role))


def _request_callback(ctx: Ctx, role: str) -> Call:
    body: dict[str, Any] = {"phone": "+48600123456"}
    if role != "patient_a":
        body["pesel"] = ctx.world.pesels[0]
    return Call("/v1/callbacks", body)


def _close_callback(ctx: Ctx, role: str) -> Call:
    return Call(f"/v1/callbacks/{ctx.new_callback()}/done", {"outcome": "booked"})


def _upsert_point(ctx: Ctx, role: str) -> Call:
    return Call(
        f"/v1/points/{POINT_X}",
        {
            "name": "Punkt X",
            "street": "ul. Długa 1",
            "postcode": "31-001",
            "place": "Kraków",
            "lat": 50.0614,
            "lon": 19.9366,
            "products": ["comirnaty", "jcovden", "comirnaty_paediatric"],
        },
    )


_PATIENT_OWN = {"patient_a": 200, "patient_b": 404, "guardian": 404}
_PEOPLE_WHO_ACT = {"staff_x": 200, "staff_y": 403, "agent_reason": 200, "agent_no_reason": 400}

MATRIX: dict[str, Row] = {
    "searchSlots": Row(
        lambda c, r: Call("/v1/slots", query={"lat": 50.06, "lon": 19.94}), _statuses(200)
    ),
    "getPointSlots": Row(lambda c, r: Call(f"/v1/points/{POINT_X}/slots"), _statuses(200)),
    "bookAppointment": Row(
        _book,
        _statuses(201, patient_b=403, guardian=403, staff_y=403, agent_no_reason=400),
        extra=(("guardian", _child_book, 201), ("patient_b", _child_book, 403)),
    ),
    "listMyAppointments": Row(
        lambda c, r: Call("/v1/me/appointments"),
        _statuses(403, patient_a=200, patient_b=200, guardian=200),
    ),
    "listMyDependents": Row(
        lambda c, r: Call("/v1/me/dependents"),
        _statuses(403, patient_a=200, patient_b=200, guardian=200),
    ),
    "getAppointment": Row(
        _get_appointment,
        _statuses(200, **_PATIENT_OWN, **_PEOPLE_WHO_ACT),
        extra=(
            ("guardian", lambda c, r: Call(f"/v1/appointments/{c.visit_of_child()}"), 200),
            ("patient_b", lambda c, r: Call(f"/v1/appointments/{c.visit_of_child()}"), 404),
        ),
    ),
    "cancelAppointment": Row(
        _appointment_op("/cancel", lambda c, r: _reason(r)),
        _statuses(200, **_PATIENT_OWN, **_PEOPLE_WHO_ACT),
        extra=(
            ("guardian", _child_op("/cancel", lambda c, r: {}), 200),
            ("patient_a", _child_op("/cancel", lambda c, r: {}), 404),
        ),
    ),
    "rescheduleAppointment": Row(
        _appointment_op("/reschedule", _reschedule_body),
        _statuses(200, **_PATIENT_OWN, **_PEOPLE_WHO_ACT),
        extra=(
            ("guardian", _child_op("/reschedule", _child_reschedule_body), 200),
            ("patient_b", _child_op("/reschedule", _child_reschedule_body), 404),
        ),
    ),
    "checkInVisit": _staff_row(
        _today_visit("/check-in", lambda c, r: {"pesel": c.world.pesels[0]}), 200
    ),
    "completeVisit": _staff_row(
        _today_visit("/complete", lambda c, r: {"product": "jcovden", "lot_number": "LOT-1"}),
        200,
    ),
    "markNoShow": _staff_row(_past_visit, 200),
    "publishCalendar": _staff_row(_publish, 200),
    "getPointCalendar": _staff_row(lambda c, r: Call(f"/v1/points/{POINT_X}/calendar"), 200),
    "addSlot": _staff_row(_add_slot, 201),
    "changeSlot": _staff_row(_change_slot, 200),
    "removeSlot": _staff_row(_remove_slot, 200),
    "listPointVisits": _staff_row(
        lambda c, r: Call(
            f"/v1/points/{POINT_X}/visits", query={"date": today_warsaw().isoformat()}
        ),
        200,
    ),
    "recordWalkIn": _staff_row(_walk_in, 201),
    "lookupPatient": Row(_lookup, _statuses(403, agent_reason=200, agent_no_reason=400, admin=200)),
    "requestCallback": Row(
        _request_callback,
        _statuses(403, patient_a=201, agent_reason=201, agent_no_reason=201, admin=201),
    ),
    "listCallbacks": Row(
        lambda c, r: Call("/v1/callbacks"),
        _statuses(403, agent_reason=200, agent_no_reason=200, admin=200),
    ),
    "closeCallback": Row(
        _close_callback, _statuses(403, agent_reason=200, agent_no_reason=200, admin=200)
    ),
    "upsertPoint": Row(_upsert_point, _statuses(403, admin=200)),
    "getPoint": Row(lambda c, r: Call(f"/v1/points/{POINT_X}"), _statuses(200)),
}


def test_every_operation_has_a_matrix_row() -> None:
    assert set(MATRIX) == set(OPERATIONS), {
        "operations without a row": sorted(set(OPERATIONS) - set(MATRIX)),
        "rows without an operation": sorted(set(MATRIX) - set(OPERATIONS)),
    }
    for name, row in MATRIX.items():
        assert set(row.expect) == set(ROLES), name


def _world(project: str) -> Ctx:
    day = today_warsaw() + timedelta(days=3)
    world = make_world(
        project,
        patients=3,
        slots={
            POINT_X: [
                (day, time(9, 0), "jcovden", 50),
                (day, time(11, 0), "jcovden", 50),
                (day, time(13, 0), "jcovden", 50),
                (day, time(10, 0), "comirnaty_paediatric", 50),
                (day + timedelta(days=1), time(10, 0), "comirnaty_paediatric", 50),
                (day + timedelta(days=21), time(10, 0), "comirnaty_paediatric", 50),
            ],
            POINT_Y: [(day, time(9, 0), "jcovden", 5)],
        },
    )
    born = date(today_warsaw().year - 10, 2, 2)
    child = add_child(world.db, world.pesels[2], born=born)
    return Ctx(world, child)


@pytest.mark.parametrize("operation_id", sorted(OPERATIONS))
def test_each_role_gets_exactly_its_status_and_refusals_change_nothing(
    project: str, operation_id: str
) -> None:
    assert operation_id in MATRIX, f"{operation_id} has no row in the authorisation matrix"
    ctx = _world(project)
    row = MATRIX[operation_id]
    method, _ = OPERATIONS[operation_id]
    cases = [(role, row.build, row.expect[role]) for role in ROLES] + list(row.extra)
    failures = []
    for role, build, expected in cases:
        call = build(ctx, role)
        before = snapshot(ctx.world.db)
        response = ctx.world.api.call(
            method,
            call.path,
            token=ctx.token(role),
            body=call.body,
            query=call.query,
            headers=call.headers,
            key=uuid.uuid4().hex if method != "GET" else None,
        )
        if response.status_code != expected:
            failures.append((role, expected, response.status_code, response.get_json()))
            continue
        if response.status_code >= 400:
            after = snapshot(ctx.world.db)
            if after != before:
                changed = sorted(
                    k for k in set(before) | set(after) if before.get(k) != after.get(k)
                )
                failures.append((role, "refusal changed documents", changed))
    assert failures == [], failures


def test_a_guardian_books_for_their_child_under_18_and_sees_them(project: str) -> None:
    ctx = _world(project)
    w = ctx.world
    guardian = ctx.token("guardian")
    slot = sid(POINT_X, ctx.day, time(10, 0), "comirnaty_paediatric")
    booked = w.api.call(
        "POST", "/v1/appointments", token=guardian, body={"slot_id": slot, "pesel": ctx.child},
        key="child-1",
    )  # fmt: skip
    assert booked.status_code == 201, booked.get_json()
    assert len(booked.get_json()["appointments"]) == 2  # both doses of the series
    listed = w.api.call("GET", "/v1/me/dependents", token=guardian).get_json()["dependents"]
    assert [d["patient"]["masked_pesel"] for d in listed] == [ctx.child[:6] + "*****"]
    assert len(listed[0]["appointments"]) == 2
    assert ctx.child not in str(listed)
    # Grown up: an adult "child" is no longer someone the parent books for.
    adult = add_child(w.db, w.pesels[2], born=date(today_warsaw().year - 19, 1, 1), serial=78)
    before = snapshot(w.db)
    refused = w.api.call(
        "POST", "/v1/appointments", token=guardian,
        body={"slot_id": sid(POINT_X, ctx.day, time(11, 0), "jcovden"), "pesel": adult},
        key="adult-1",
    )  # fmt: skip
    assert refused.status_code == 403
    assert snapshot(w.db) == before
    assert len(w.api.call("GET", "/v1/me/dependents", token=guardian).get_json()["dependents"]) == 1
