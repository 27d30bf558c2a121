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
import hashlib
import hmac
import itertools
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any, ClassVar

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


class _QuietSms:
    """The SMS gateway for the matrix: accepts and keeps (one-time codes are read back)."""

    sent: ClassVar[list[dict[str, str]]] = []

    def send(self, to: str, text: str, client_message_id: str) -> str:
        self.sent.append({"to": to, "text": text, "id": client_message_id})
        return f"SMS-{len(self.sent)}"


@functools.cache
def _quiet_sms() -> _QuietSms:
    return _QuietSms()


WEBHOOK_SECRET = "matrix-webhook-secret"


@pytest.fixture(autouse=True)
def events_stay_in_outbox(project: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "publisher", _no_publisher)
    monkeypatch.setattr(wiring, "sms_client", _quiet_sms)
    monkeypatch.setenv("SMS_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.delenv("P1_BASE_URL", raising=False)
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


def _create_account(ctx: Ctx, role: str) -> Call:
    email = f"new-{uuid.uuid4().hex[:10]}@example.org"
    body = {"email": email, "display_name": "Nowa osoba", "role": "staff", "point_id": POINT_X}
    return Call("/v1/admin/accounts", body)


def _update_account(ctx: Ctx, role: str) -> Call:
    """An agent's account (in the Auth emulator, as the admin API makes one) re-roled."""
    from common.adapters.identity_platform import IdentityPlatformAdmin

    admin = IdentityPlatformAdmin(ctx.world.project)
    record = admin.create_user(f"agent-{uuid.uuid4().hex[:10]}@example.org", "Konsultant")
    admin.set_claims(record.uid, {"role": "agent"})
    return Call(f"/v1/admin/accounts/{record.uid}", {"role": "staff", "point_id": POINT_Y})


def _opening(ctx: Ctx) -> str:
    """An opening whose waiting room is open now (its moment in ten minutes), for anyone."""
    from common import clock
    from common.services.waiting_room import OPENINGS

    opening_id = f"op-{next(ctx.serials)}"
    opens_at = clock.now() + timedelta(minutes=10)
    ctx.world.db.collection(OPENINGS).document(opening_id).set(
        {
            "opening_id": opening_id,
            "opens_at": opens_at.isoformat(),
            "window_minutes": 30,
            "turn_minutes": 10,
            "queue_hours": 12,
            "rates": [{"at": opens_at.isoformat(), "per_minute": 100}],
        }
    )
    return opening_id


def _publish_opening(ctx: Ctx, role: str) -> Call:
    from common import clock

    opens_at = (clock.now() + timedelta(days=2)).isoformat()
    return Call(
        f"/v1/openings/op-new-{next(ctx.serials)}",
        {"opens_at": opens_at, "born_from": 1970, "born_to": 1979, "admit_per_minute": 50},
    )


def _join(ctx: Ctx, role: str) -> Call:
    body: dict[str, Any] = {}
    if role.startswith("agent") or role == "admin":
        body = {"pesel": ctx.world.pesels[0]} | _reason(role)
    return Call(f"/v1/openings/{_opening(ctx)}/queue", body)


def _position(ctx: Ctx, role: str) -> Call:
    """Patient A's ticket, asked about by each role."""
    opening_id = _opening(ctx)
    token = ctx.token("patient_a")
    joined = ctx.world.api.call("POST", f"/v1/openings/{opening_id}/queue", token=token, body={})
    assert joined.status_code == 200, joined.get_json()
    ticket = joined.get_json()["ticket"]
    return Call(f"/v1/openings/{opening_id}/queue", headers={"X-Queue-Ticket": ticket})


def _held(ctx: Ctx, role: str) -> str:
    """Patient A's hold for A; for everyone else a hold of someone not yet booked (made by an
    admin for them), so that each case can confirm a fresh one."""
    slot = sid(POINT_X, ctx.day, time(13, 0), "jcovden")
    if role == "patient_a":
        token, body = ctx.token("patient_a"), {"slot_id": slot}
    else:
        body = {"slot_id": slot, "pesel": ctx.fresh_patient(), "reason": REASON}
        token = ctx.token("admin")
    response = ctx.world.api.call("POST", "/v1/holds", token=token, body=body, key=uuid.uuid4().hex)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["hold"]["hold_id"]


def _hold_op(suffix: str) -> Build:
    def build(ctx: Ctx, role: str) -> Call:
        path = f"/v1/holds/{_held(ctx, role)}{suffix}"
        if not suffix:  # a read: the reason travels in a header
            headers = {"X-Access-Reason": REASON} if role in WITH_REASON else None
            return Call(path, headers=headers)
        return Call(path, _reason(role))

    return build


_HOLDERS = {"patient_b": 404, "guardian": 404, "agent_no_reason": 400}

_QUOTAS = {
    "version": "test",
    "limits": {"search": [{"seconds": 60, "max": 100}]},
}


def _phone_code(ctx: Ctx, role: str) -> Call:
    return Call("/v1/me/phone", {"phone": f"+486005{next(ctx.serials):05d}"})


def _verify_phone(ctx: Ctx, role: str) -> Call:
    """Patient A has asked for a code (and got it by SMS); the others have none waiting."""
    if role != "patient_a":
        return Call("/v1/me/phone/verify", {"code": "000000"})
    phone = f"+486005{next(ctx.serials):05d}"
    asked = ctx.world.api.call(
        "POST", "/v1/me/phone", token=ctx.token("patient_a"), body={"phone": phone},
        key=uuid.uuid4().hex,
    )  # fmt: skip
    assert asked.status_code == 202, asked.get_json()
    text = next(m["text"] for m in reversed(_QuietSms.sent) if m["to"] == phone)
    return Call("/v1/me/phone/verify", {"code": re.search(r"(\d{6})", text).group(1)})


def _set_phone(ctx: Ctx, role: str) -> Call:
    body = {"pesel": ctx.world.pesels[0], "phone": "+48600555444"}
    return Call("/v1/patients/phone", body | _reason(role))


def _sms_body(ctx: Ctx) -> dict[str, Any]:
    return {
        "message_id": uuid.uuid4().hex,
        "from": "+48600555333",
        "text": f"{ctx.world.pesels[0]} 31-001",
        "received_at": "2026-12-01T10:00:00+00:00",
    }


def _unsigned_sms(ctx: Ctx, role: str) -> Call:
    """Whatever the caller's token: without the provider's signature, nothing gets in."""
    return Call("/v1/sms/inbound", _sms_body(ctx))


def _signed_sms(ctx: Ctx, role: str) -> Call:
    """The provider's signed call: no ID token needed (the signature is the credential)."""
    body = _sms_body(ctx)
    raw = json.dumps(body).encode()  # as Api.call sends it
    digest = hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return Call("/v1/sms/inbound", body, headers={"X-Sms-Signature": f"sha256={digest}"})


_PATIENT_OWN = {"patient_a": 200, "patient_b": 404, "guardian": 404}
_PEOPLE_WHO_ACT = {"staff_x": 200, "staff_y": 403, "agent_reason": 200, "agent_no_reason": 400}


def _impact_change(ctx: Ctx, role: str) -> Call:
    """A dry run of cutting a slot of X (admins only; it changes nothing but its own job)."""
    change = {"kind": "capacity", "point_id": POINT_X, "slot_id": ctx.new_slot()}
    return Call("/v1/admin/impact", {"change": change | {"change": {"capacity": 1}}})


def _impact_job(ctx: Ctx) -> str:
    """A dry run asked for by the admin (queued: nothing runs it here)."""
    response = ctx.world.api.call(
        "POST", "/v1/admin/impact", token=ctx.token("admin"),
        body=_impact_change(ctx, "admin").body, key=uuid.uuid4().hex,
    )  # fmt: skip
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job"]["job_id"]


def _finished_dry_run(ctx: Ctx) -> str:
    """A dry run asked for by the admin and run to its end (by the test, as a task would)."""
    from common import clock
    from common.services.impact import ImpactJobs

    job_id = _impact_job(ctx)
    jobs = ImpactJobs(
        wiring.units(), wiring.firestore_client(), wiring.rule_book(), _NoQueue(),
        min_page_interval_s=0,
    )  # fmt: skip
    for _ in range(50):
        if jobs.run(job_id, clock.now(), queue_next=False)["outcome"] == "done":
            return job_id
    raise AssertionError("the dry run did not finish")


class _NoQueue:
    def enqueue(self, job_id: str, suffix: str) -> str:
        return "created"


def _replan(ctx: Ctx, role: str) -> Call:
    return Call("/v1/admin/replans", {"impact_job_id": _finished_dry_run(ctx)})


def _replan_job(ctx: Ctx) -> str:
    response = ctx.world.api.call(
        "POST", "/v1/admin/replans", token=ctx.token("admin"),
        body=_replan(ctx, "admin").body, key=uuid.uuid4().hex,
    )  # fmt: skip
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job"]["job_id"]


def _offer_to_a(ctx: Ctx, role: str) -> Call:
    """A re-plan offer made to patient A (a visit of A unseated by a cut, offered another
    slot at X), answered NIE by each role; a fresh offer for every call."""
    from common import clock
    from common.domain.impact import AffectedCase, AffectedVisit

    appointment_id = ctx.visit_of_a()
    visit = ctx.world.appointment(appointment_id)
    case = AffectedCase(
        series_id=visit["series_id"],
        patient_key=visit["patient_key"],
        product=visit["product"],
        visits=(
            AffectedVisit(
                appointment_id=appointment_id, dose=1, dose_kind="primary",
                day=date.fromisoformat(visit["day"]), point_id=visit["point_id"],
                slot_id=visit["slot_id"], county=None, voivodeship=None, reasons=("capacity",),
            ),
        ),
    )  # fmt: skip
    job = {"job_id": uuid.uuid4().hex, "max_offers": 3, "offer_hours": 24}
    service = wiring.replan_service()
    assert service.open_case(job, case, {}, clock.now()) == "offered"
    from common.domain.replan import offer_id

    return Call(f"/v1/offers/{offer_id(job['job_id'], case.series_id)}",
                {"answer": "decline", **_reason(role)})  # fmt: skip


_KRAKOW = {"lat": 50.0614, "lon": 19.9366, "radius_km": 10}


def _waitlist_body(ctx: Ctx, role: str, pesel: str | None = None) -> dict[str, Any]:
    """A patient joins themself; anyone else names the patient (a fresh one) and a reason."""
    if role in ("patient_a", "patient_b", "guardian"):
        return dict(_KRAKOW)
    return {**_KRAKOW, "pesel": pesel or ctx.fresh_patient(), **_reason(role)}


def _join_waitlist(ctx: Ctx, role: str) -> Call:
    return Call("/v1/waitlist", _waitlist_body(ctx, role))


def _a_on_the_waitlist(ctx: Ctx) -> None:
    joined = ctx.world.api.call(
        "POST", "/v1/waitlist", token=ctx.token("patient_a"), body=dict(_KRAKOW),
        key=uuid.uuid4().hex,
    )  # fmt: skip
    assert joined.status_code == 201, joined.get_json()


def _my_waitlist(ctx: Ctx, role: str) -> Call:
    _a_on_the_waitlist(ctx)
    return Call("/v1/waitlist")


def _leave_waitlist(ctx: Ctx, role: str) -> Call:
    """Patient A leaves their own place; the others take someone off who is on the list."""
    if role in ("patient_a", "patient_b", "guardian"):
        _a_on_the_waitlist(ctx)
        return Call("/v1/waitlist/leave", {})
    pesel = ctx.fresh_patient()
    joined = ctx.world.api.call(
        "POST", "/v1/waitlist", token=ctx.token("admin"),
        body=_waitlist_body(ctx, "admin", pesel), key=uuid.uuid4().hex,
    )  # fmt: skip
    assert joined.status_code == 201, joined.get_json()
    return Call("/v1/waitlist/leave", {"pesel": pesel, **_reason(role)})


def _reservation_body(ctx: Ctx) -> dict[str, Any]:
    from common import clock

    until = (clock.now() + timedelta(hours=1)).isoformat()
    return {"percent": 5, "born_to": 1950, "until": until, "date_from": ctx.day.isoformat()}


def _reservation_of_x(ctx: Ctx, role: str) -> str:
    """A reservation at X (made by an admin): a fresh one for those who may cancel it, one
    shared by the roles refused (a point holds at most eight in force)."""
    shared = getattr(ctx, "shared_reservation", None)
    if role not in ("staff_x", "admin") and shared is not None:
        return shared
    made = ctx.world.api.call(
        "POST", f"/v1/points/{POINT_X}/reservations", token=ctx.token("admin"),
        body=_reservation_body(ctx), key=uuid.uuid4().hex,
    )  # fmt: skip
    assert made.status_code == 201, made.get_json()
    reservation_id = made.get_json()["reservation"]["reservation_id"]
    if role not in ("staff_x", "admin"):
        ctx.shared_reservation = reservation_id  # type: ignore[attr-defined]
    return reservation_id


def _cancel_reservation(ctx: Ctx, role: str) -> Call:
    path = f"/v1/points/{POINT_X}/reservations/{_reservation_of_x(ctx, role)}/cancel"
    return Call(path, {})


def _reserve_voivodeship(ctx: Ctx, role: str) -> Call:
    return Call("/v1/admin/reservations", {"voivodeship": "małopolskie"} | _reservation_body(ctx))


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
        # Not checked in: the override and its reason (a check-in first is test_visits' case).
        _today_visit(
            "/complete",
            lambda c, r: {
                "product": "jcovden",
                "lot_number": "LOT-1",
                "check_in_override_reason": "no identity document at hand",
            },
        ),
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
    "listMyEligibleProducts": Row(
        lambda c, r: Call("/v1/me/eligible-products"),
        _statuses(403, patient_a=200, patient_b=200, guardian=200),
    ),
    "listEligibleProductsForPatient": Row(
        lambda c, r: Call(
            "/v1/patients/eligible-products", {"pesel": c.world.pesels[0]} | _reason(r)
        ),
        _statuses(403, agent_reason=200, agent_no_reason=400, admin=200),
    ),
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
    "requestPhoneCode": Row(
        _phone_code, _statuses(403, patient_a=202, patient_b=202, guardian=202)
    ),
    "verifyPhoneCode": Row(
        _verify_phone, _statuses(403, patient_a=200, patient_b=409, guardian=409)
    ),
    "setPatientPhone": Row(
        _set_phone, _statuses(403, agent_reason=200, agent_no_reason=400, admin=200)
    ),
    "receiveSms": Row(
        _unsigned_sms,
        {role: 401 for role in ROLES},
        extra=(("anonymous", _signed_sms, 200),),
    ),
    "createAccount": Row(_create_account, _statuses(403, admin=201)),
    "updateAccount": Row(_update_account, _statuses(403, admin=200)),
    "listOpenings": Row(lambda c, r: Call("/v1/openings"), _statuses(200)),
    "publishOpening": Row(_publish_opening, _statuses(403, admin=201)),
    "setOpeningRate": Row(
        lambda c, r: Call(f"/v1/openings/{_opening(c)}/rate", {"admit_per_minute": 200}),
        _statuses(403, admin=200),
    ),
    "joinQueue": Row(
        _join,
        _statuses(
            403,
            patient_a=200,
            patient_b=200,
            guardian=200,
            agent_reason=200,
            agent_no_reason=400,
        ),
    ),
    "getQueuePosition": Row(
        _position,
        # Another patient holding A's ticket learns nothing; an agent holds the caller's.
        _statuses(403, patient_a=200, agent_reason=200, agent_no_reason=200),
    ),
    "holdSeries": Row(
        _book, _statuses(201, patient_b=403, guardian=403, staff_y=403, agent_no_reason=400)
    ),
    "getHold": Row(
        _hold_op(""),
        _statuses(
            403,
            patient_a=200,
            patient_b=404,
            guardian=404,
            agent_reason=200,
            agent_no_reason=400,
            admin=200,
        ),
    ),
    "bookHold": Row(
        _hold_op("/book"),
        _statuses(403, patient_a=201, agent_reason=201, admin=201, **_HOLDERS),
    ),
    "releaseHold": Row(
        _hold_op("/release"),
        _statuses(403, patient_a=200, agent_reason=200, admin=200, **_HOLDERS),
    ),
    "getQuotas": Row(lambda c, r: Call("/v1/admin/quotas"), _statuses(403, admin=200)),
    "setQuotas": Row(lambda c, r: Call("/v1/admin/quotas", _QUOTAS), _statuses(403, admin=200)),
    "getPoint": Row(lambda c, r: Call(f"/v1/points/{POINT_X}"), _statuses(200)),
    "listReservations": _staff_row(lambda c, r: Call(f"/v1/points/{POINT_X}/reservations"), 200),
    "createReservation": _staff_row(
        lambda c, r: Call(f"/v1/points/{POINT_X}/reservations", _reservation_body(c)), 201
    ),
    "cancelReservation": _staff_row(_cancel_reservation, 200),
    "reserveVoivodeship": Row(_reserve_voivodeship, _statuses(403, admin=201)),
    "getExpectedWait": Row(
        lambda c, r: Call("/v1/admin/expected-wait", query={"county": "Kraków"}),
        _statuses(403, admin=200),
    ),
    "createImpactJob": Row(_impact_change, _statuses(403, admin=202)),
    "getImpactJob": Row(
        lambda c, r: Call(f"/v1/admin/impact/{_impact_job(c)}"), _statuses(403, admin=200)
    ),
    "listImpactCases": Row(
        lambda c, r: Call(f"/v1/admin/impact/{_impact_job(c)}/cases"), _statuses(403, admin=200)
    ),
    "createReplanJob": Row(_replan, _statuses(403, admin=202)),
    "getReplanJob": Row(
        lambda c, r: Call(f"/v1/admin/replans/{_replan_job(c)}"), _statuses(403, admin=200)
    ),
    "listOffers": Row(
        lambda c, r: Call("/v1/offers", query={"list": "hotline"}),
        _statuses(
            403,
            patient_a=200,
            patient_b=200,
            guardian=200,
            agent_reason=200,
            agent_no_reason=200,
            admin=200,
        ),
    ),
    "answerOffer": Row(
        _offer_to_a, _statuses(403, patient_a=200, agent_reason=200, admin=200, **_HOLDERS)
    ),
    "joinWaitlist": Row(
        _join_waitlist,
        _statuses(
            403,
            patient_a=201,
            patient_b=201,
            guardian=201,
            agent_reason=201,
            agent_no_reason=400,
            admin=201,
        ),
    ),
    "getWaitlist": Row(_my_waitlist, _statuses(403, patient_a=200, patient_b=404, guardian=404)),
    "leaveWaitlist": Row(
        _leave_waitlist,
        _statuses(
            403,
            patient_a=200,
            patient_b=404,
            guardian=404,
            agent_reason=200,
            agent_no_reason=400,
            admin=200,
        ),
    ),
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
    # Who may call what is the question here, not how often: quotas out of the way.
    generous = {"version": "matrix", "limits": {}}
    world.db.collection("settings").document("quotas").set({"policy": generous})
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
