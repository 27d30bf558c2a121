"""docs/reliability.md item 8: bad input gets a clear 4xx, and nothing is written.

Every case goes through the real gateway and functions against a seeded project (a point with
slots, a patient with a referral and one booked appointment), and checks four things:
- the status is the expected 4xx and the body is the documented `{"error": {code, message}}`
  with the expected code;
- the body carries no stack trace and no PESEL in clear (neither does any log line);
- every collection holds the same number of documents as before (a refused write may create
  and delete its idempotency record, but must leave nothing behind).
Inputs that once reached a bug (a 500 or an HTML page) stay as regression cases.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from common import structured_log
from common.domain.pesel import make_pesel
from emulator.identities import mint_id_token
from tests.support.identity import claims_of, id_token
from tests.support.stack import Api, add_patient, add_point, firestore_client, today_warsaw

# What a leak looks like: a traceback, or an internal path of ours.
_TRACE_MARKERS = ("Traceback", 'File "', "site-packages", "/common/", "/functions/")


@dataclass
class Ctx:
    project: str
    api: Api
    db: firestore.Client
    day: date
    pesel: str
    patient: str
    agent: str
    staff: str
    slot: str
    appointment_id: str

    @property
    def pesels(self) -> list[str]:
        """Every PESEL-like value the cases send: none may come back or reach a log."""
        return [self.pesel, _VALID_OTHER, *_BAD_PESELS.values()]


def _with_check_digit(first_ten: str) -> str:
    weights = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
    total = sum(int(d) * w for d, w in zip(first_ten, weights, strict=True))
    return first_ten + str((10 - total % 10) % 10)


def _bad_checksum(pesel: str) -> str:
    return pesel[:10] + str((int(pesel[10]) + 1) % 10)


_VALID_OTHER = make_pesel(date(1975, 3, 9), "M", 77)
_BAD_PESELS = {
    "checksum": _bad_checksum(_VALID_OTHER),
    # 30 February 1980 with a correct check digit: only the date is wrong.
    "impossible_date": _with_check_digit("8002300001"),
    # Month field 13: no century encodes it.
    "impossible_month": _with_check_digit("8013100001"),
    "future_birth": make_pesel(date(2099, 1, 1), "F", 5),
    "letters": "8005170A029",
    "arabic_digits": "٨٠٠٥١٧٠٠٠٢٩",
}
_NONE_ALG = '{"alg":"none"}'


@pytest.fixture
def ctx(project: str) -> Ctx:
    db = firestore_client(project)
    day = today_warsaw() + timedelta(days=3)
    add_point(
        db,
        "pt-00001",
        products=("comirnaty", "jcovden"),
        slots=[
            (day, time(9, 0), "jcovden", 3),
            (day, time(11, 0), "jcovden", 3),
            (day, time(10, 0), "comirnaty", 3),
            (day + timedelta(days=35), time(10, 0), "comirnaty", 3),
        ],
    )
    pesel = add_patient(db)
    api = Api(project)
    patient = api.token("patient-1", "patient", pesel=pesel)
    slot = f"pt-00001_{day:%Y%m%d}_0900_jcovden"
    booked = api.call("POST", "/v1/appointments", token=patient, body={"slot_id": slot}, key="k0")
    assert booked.status_code == 201, booked.get_data(as_text=True)
    return Ctx(
        project=project,
        api=api,
        db=db,
        day=day,
        pesel=pesel,
        patient=patient,
        agent=api.token("agent-1", "agent"),
        staff=api.token("staff-1", "staff", point_id="pt-00001"),
        slot=slot,
        appointment_id=booked.get_json()["appointments"][0]["appointment_id"],
    )


def snapshot(db: firestore.Client) -> dict[str, int]:
    """Documents per collection, for every collection the project has."""
    return {c.id: sum(1 for _ in c.stream()) for c in db.collections()}


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every line the structured logger writes, formatted exactly as in production."""
    structured_log.configure()
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(structured_log._JsonFormatter())
    logger = logging.getLogger("erejestracja")
    logger.addHandler(handler)
    try:
        yield sink
    finally:
        logger.removeHandler(handler)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _cursor(payload: str) -> str:
    return _b64(payload)


@dataclass(frozen=True)
class Case:
    method: str
    path: Callable[[Ctx], str]
    request: Callable[[Ctx], dict[str, Any]]
    status: int
    code: str
    message: str = ""  # a part of the message the case must get, when it matters


def _book(body: Callable[[Ctx], Any], token: str = "patient", **extra: Any) -> Case:
    def request(c: Ctx) -> dict[str, Any]:
        return {"token": getattr(c, token), "body": body(c), "key": "bad-1"} | extra

    return Case("POST", lambda c: "/v1/appointments", request, 400, "invalid_request")


def _raw_book(raw: bytes, headers: dict[str, str] | None = None, message: str = "") -> Case:
    return Case(
        "POST",
        lambda c: "/v1/appointments",
        lambda c: {"token": c.patient, "raw": raw, "key": "bad-1", "headers": headers or {}},
        400,
        "invalid_request",
        message,
    )


def _search(query: dict[str, Any] | str, status: int = 400, code: str = "invalid_request") -> Case:
    return Case(
        "GET", lambda c: "/v1/slots", lambda c: {"token": c.patient, "query": query}, status, code
    )


def _near(**more: Any) -> dict[str, Any]:
    return {"lat": 50.06, "lon": 19.94} | more


def _agent_books(pesel: str, status: int = 400, code: str = "invalid_pesel") -> Case:
    return Case(
        "POST",
        lambda c: "/v1/appointments",
        lambda c: {
            "token": c.agent,
            "body": {"slot_id": c.slot.replace("0900", "1100"), "pesel": pesel, "reason": "989"},
            "key": "bad-1",
        },
        status,
        code,
    )


def _slot(slot_id: str, status: int = 400, code: str = "invalid_request") -> Case:
    case = _book(lambda c: {"slot_id": slot_id})
    return Case(case.method, case.path, case.request, status, code)


def _cancel(body: Any, status: int = 400, code: str = "invalid_request") -> Case:
    return Case(
        "POST",
        lambda c: f"/v1/appointments/{c.appointment_id}/cancel",
        lambda c: {"token": c.patient, "body": body, "key": "bad-1"},
        status,
        code,
    )


def _reschedule(body: Callable[[Ctx], Any], status: int = 400, code: str = "invalid_request"):
    return Case(
        "POST",
        lambda c: f"/v1/appointments/{c.appointment_id}/reschedule",
        lambda c: {"token": c.patient, "body": body(c), "key": "bad-1"},
        status,
        code,
    )


def _authed(token: Callable[[Ctx], str | None], status: int, code: str, **headers: str) -> Case:
    return Case(
        "GET",
        lambda c: "/v1/slots",
        lambda c: {"token": token(c), "query": _near(), "headers": headers},
        status,
        code,
    )


def _mint(c: Ctx, **kwargs: Any) -> str:
    """A token the Auth emulator issues (to this or another project), with these claims."""
    kwargs.setdefault("role", "patient")
    kwargs.setdefault("pesel", c.pesel)
    project = kwargs.pop("project", c.project)
    if "lifetime_s" in kwargs or "extra_claims" in kwargs:
        # A broken expiry no issuer hands out: forged (unsigned, as the emulator's tokens are),
        # to show it is checked even where the signature is not (emulator mode).
        return mint_id_token(project, "u-bad", **kwargs)
    return id_token(project, "u-bad", claims_of(kwargs.pop("role"), **kwargs))


def _forged_expired(c: Ctx) -> str:
    # No issuer hands out an expired token: this one is forged (unsigned, as the emulator's
    # are), to show the expiry is checked even where the signature is not (emulator mode).
    return mint_id_token(c.project, "u-bad", role="patient", pesel=c.pesel, lifetime_s=-60)


CASES: dict[str, Case] = {
    # -- the body as a whole
    "malformed_json": _raw_book(b'{"slot_id": '),
    "json_array": _raw_book(b'["pt-00001_20300101_0900_jcovden"]'),
    "json_string": _raw_book(b'"slot"'),
    "json_null": _raw_book(b"null"),
    "empty_body": _raw_book(b""),
    "not_utf8": _raw_book(b'{"slot_id": "\xff\xfe"}'),
    "huge_body": _raw_book(
        json.dumps({"slot_id": "x", "reason": "a" * 70_000}).encode(), message="larger than"
    ),
    "huge_body_no_content_length": Case(
        "POST",
        lambda c: "/v1/appointments",
        lambda c: {
            "token": c.patient,
            "key": "bad-1",
            "headers": {"Content-Type": "application/json"},
            "stream": b'{"reason": "' + b"a" * 70_000 + b'"}',
        },
        400,
        "invalid_request",
        "larger than",
    ),
    "content_type_text": _raw_book(b'{"slot_id": "x"}', {"Content-Type": "text/plain"}),
    "content_type_form": _raw_book(
        b"slot_id=x", {"Content-Type": "application/x-www-form-urlencoded"}
    ),
    "content_type_missing": _raw_book(b'{"slot_id": "x"}', {"Content-Type": ""}),
    # -- fields
    "slot_id_wrong_type": _book(lambda c: {"slot_id": 12}),
    "slot_id_null": _book(lambda c: {"slot_id": None}),
    "slot_id_list": _book(lambda c: {"slot_id": [c.slot]}),
    "slot_id_missing": _book(lambda c: {}),
    "unknown_field": _book(lambda c: {"slot_id": c.slot, "slotId": c.slot}),
    "reason_too_short": _book(lambda c: {"slot_id": c.slot, "reason": "a"}),
    "pesel_wrong_type": _book(lambda c: {"slot_id": c.slot, "pesel": 80051700029}),
    # -- PESEL in an agent's body
    **{f"pesel_{name}": _agent_books(value) for name, value in _BAD_PESELS.items()},
    "pesel_too_short": _agent_books(_VALID_OTHER[:10], code="invalid_request"),
    "pesel_too_long": _agent_books(_VALID_OTHER + "1", code="invalid_request"),
    "agent_without_reason": Case(
        "POST",
        lambda c: "/v1/appointments",
        lambda c: {"token": c.agent, "body": {"slot_id": c.slot, "pesel": c.pesel}, "key": "b"},
        400,
        "invalid_request",
    ),
    "agent_without_pesel": Case(
        "POST",
        lambda c: "/v1/appointments",
        lambda c: {"token": c.agent, "body": {"slot_id": c.slot, "reason": "989"}, "key": "b"},
        400,
        "invalid_request",
    ),
    # -- slot ids
    "slot_id_malformed": _slot("pt-00001-20300101-0900-jcovden"),
    "slot_id_uppercase": _slot("PT-00001_20300101_0900_jcovden"),
    "slot_id_impossible_date": _slot("pt-00001_20260230_0900_jcovden"),
    "slot_id_month_13": _slot("pt-00001_20261301_0900_jcovden"),
    "slot_id_impossible_time": _slot("pt-00001_20300101_2460_jcovden"),
    "slot_id_unknown_product": _slot("pt-00001_20300101_0900_sputnik", code="unknown_product"),
    "slot_id_no_such_slot": _slot(
        "pt-00001_20300101_0900_jcovden", status=409, code="slot_unavailable"
    ),
    "slot_id_in_the_past": _slot(
        "pt-00001_20200101_0900_jcovden", status=409, code="slot_unavailable"
    ),
    "second_slot_id_malformed": _book(lambda c: {"slot_id": c.slot, "second_slot_id": "x_y"}),
    # -- search
    "search_impossible_date": _search(_near(date_from="2026-02-30")),
    "search_not_a_date": _search(_near(date_to="tomorrow")),
    "search_reversed_range": _search(_near(date_from="2030-05-02", date_to="2030-05-01")),
    "search_range_too_long": _search(_near(date_from="2030-01-01", date_to="2030-12-31")),
    "search_unknown_product": _search(_near(product="sputnik"), code="unknown_product"),
    "search_lat_too_low": _search(_near(lat=48.9)),
    "search_lat_too_high": _search(_near(lat=55.1)),
    "search_lon_too_low": _search(_near(lon=13.9)),
    "search_lon_too_high": _search(_near(lon=24.6)),
    "search_lat_nan": _search(_near(lat="nan")),
    "search_lon_infinite": _search(_near(lon="inf")),
    "search_lat_not_a_number": _search(_near(lat="north")),
    "search_lat_without_lon": _search({"lat": 50.06}),
    "search_both_lat_lon_and_postcode": _search(_near(postcode="31-001")),
    "search_nowhere": _search({}),
    "search_malformed_postcode": _search({"postcode": "31-0O1"}),
    "search_radius_zero": _search(_near(radius_km=0)),
    "search_radius_negative": _search(_near(radius_km=-5)),
    "search_radius_too_large": _search(_near(radius_km=301)),
    "search_limit_zero": _search(_near(limit=0)),
    "search_limit_too_large": _search(_near(limit=21)),
    "search_limit_fraction": _search(_near(limit=2.5)),
    "search_accessible_not_bool": _search(_near(accessible="maybe")),
    "search_unknown_parameter": _search(_near(pesel=_VALID_OTHER)),
    "search_repeated_parameter": _search("lat=50.06&lon=19.94&lat=51.0"),
    "search_repeated_product": _search("lat=50.06&lon=19.94&product=comirnaty&product=jcovden"),
    "search_cursor_not_base64": _search(_near(cursor="!!!")),
    "search_cursor_not_json": _search(_near(cursor=_cursor("nope"))),
    "search_cursor_json_list": _search(_near(cursor=_cursor("[1]"))),
    "search_cursor_no_offset": _search(_near(cursor=_cursor("{}"))),
    "search_cursor_negative": _search(_near(cursor=_cursor('{"o": -1}'))),
    "search_cursor_text_offset": _search(_near(cursor=_cursor('{"o": "x"}'))),
    "search_cursor_too_long": _search(_near(cursor="A" * 101)),
    "point_slots_reversed_range": Case(
        "GET",
        lambda c: "/v1/points/pt-00001/slots",
        lambda c: {
            "token": c.patient,
            "query": {"date_from": "2030-05-02", "date_to": "2030-05-01"},
        },
        400,
        "invalid_request",
    ),
    "point_slots_unknown_product": Case(
        "GET",
        lambda c: "/v1/points/pt-00001/slots",
        lambda c: {"token": c.patient, "query": {"product": "sputnik"}},
        400,
        "unknown_product",
    ),
    "point_slots_bad_point_id": Case(
        "GET",
        lambda c: "/v1/points/PT_1/slots",
        lambda c: {"token": c.patient},
        404,
        "not_found",
    ),
    # -- cancel and reschedule bodies
    "cancel_unknown_field": _cancel({"why": "moved"}),
    "cancel_reason_wrong_type": _cancel({"reason": 42}),
    "cancel_body_array": _cancel([]),
    "reschedule_slot_missing": _reschedule(lambda c: {}),
    "reschedule_slot_malformed": _reschedule(lambda c: {"slot_id": "tomorrow"}),
    "reschedule_impossible_date": _reschedule(
        lambda c: {"slot_id": "pt-00001_20270229_0900_jcovden"}
    ),
    "reschedule_same_slot": _reschedule(lambda c: {"slot_id": c.slot}),
    "reschedule_other_product": _reschedule(
        lambda c: {"slot_id": c.slot.replace("0900_jcovden", "1000_comirnaty")}
    ),
    "missing_idempotency_key": Case(
        "POST",
        lambda c: "/v1/appointments",
        lambda c: {"token": c.patient, "body": {"slot_id": c.slot.replace("0900", "1100")}},
        400,
        "invalid_request",
    ),
    "idempotency_key_too_long": Case(
        "POST",
        lambda c: "/v1/appointments",
        lambda c: {
            "token": c.patient,
            "body": {"slot_id": c.slot.replace("0900", "1100")},
            "key": "k" * 201,
        },
        400,
        "invalid_request",
    ),
    "appointment_id_too_long": Case(
        "GET",
        lambda c: "/v1/appointments/" + "a" * 65,
        lambda c: {"token": c.patient},
        404,
        "appointment_not_found",
    ),
    # -- who calls
    "no_token": _authed(lambda c: None, 401, "unauthenticated"),
    "not_bearer": _authed(lambda c: None, 401, "unauthenticated", Authorization="Basic dTpw"),
    "bearer_without_token": _authed(
        lambda c: None, 401, "unauthenticated", Authorization="Bearer "
    ),
    "garbage_token": _authed(lambda c: "garbage", 401, "unauthenticated"),
    "three_dots_token": _authed(lambda c: "a.b.c", 401, "unauthenticated"),
    "expired_token": _authed(_forged_expired, 401, "unauthenticated"),
    "token_of_another_project": _authed(
        lambda c: _mint(c, project="someone-else"), 401, "unauthenticated"
    ),
    "token_claims_not_an_object": _authed(
        lambda c: f"{_b64(_NONE_ALG)}.{_b64('[]')}.", 401, "unauthenticated"
    ),
    "unknown_role": _authed(lambda c: _mint(c, role="root"), 403, "forbidden"),
    # The token itself is at fault (no valid PESEL claim): sign in again, 401.
    "patient_token_without_pesel": _authed(lambda c: _mint(c, pesel=None), 401, "unauthenticated"),
    "patient_token_with_invalid_pesel": _authed(
        lambda c: _mint(c, pesel="44051401358"),
        401,
        "unauthenticated",
    ),
    "staff_token_without_point": _authed(
        lambda c: _mint(c, role="staff", pesel=None), 403, "forbidden"
    ),
    "agent_lists_my_appointments": Case(
        "GET", lambda c: "/v1/me/appointments", lambda c: {"token": c.agent}, 403, "forbidden"
    ),
    "staff_lists_my_appointments": Case(
        "GET", lambda c: "/v1/me/appointments", lambda c: {"token": c.staff}, 403, "forbidden"
    ),
    "patient_books_for_someone_else": Case(
        "POST",
        lambda c: "/v1/appointments",
        lambda c: {
            "token": c.patient,
            "body": {"slot_id": c.slot.replace("0900", "1100"), "pesel": _VALID_OTHER},
            "key": "b",
        },
        403,
        "forbidden",
    ),
    "expired_token_on_a_write": Case(
        "POST",
        lambda c: f"/v1/appointments/{c.appointment_id}/cancel",
        lambda c: {"token": _mint(c, lifetime_s=-1), "body": {}, "key": "b"},
        401,
        "unauthenticated",
    ),
    "no_token_on_a_write": Case(
        "POST",
        lambda c: "/v1/appointments",
        lambda c: {"body": {"slot_id": c.slot.replace("0900", "1100")}, "key": "b"},
        401,
        "unauthenticated",
    ),
    # -- the gateway
    "undocumented_method": Case(
        "DELETE", lambda c: "/v1/slots", lambda c: {}, 405, "method_not_allowed"
    ),
    "unknown_path": Case(
        "GET", lambda c: f"/v1/pesel/{_VALID_OTHER}", lambda c: {}, 404, "not_found"
    ),
}

# Once bugs (reported and fixed): each stays here as a regression case.
FORMER_BUGS: dict[str, tuple[Case, str]] = {
    # common/services/search.py _decode_cursor: int(inf) raises OverflowError, not caught.
    "search_cursor_infinite_offset": (
        _search(_near(cursor=_cursor('{"o": Infinity}'))),
        "search.py _decode_cursor: OverflowError from int(inf) is not caught",
    ),
    "search_cursor_huge_float_offset": (
        _search(_near(cursor=_cursor('{"o": 1e999}'))),
        "search.py _decode_cursor: OverflowError from int(inf) is not caught",
    ),
    # common/services/search.py search()/point_slots(): date_from + 30 days past date.max.
    "search_date_from_at_the_end_of_time": (
        _search(_near(date_from="9999-12-31")),
        "search.py: date_from + timedelta(days=30) raises OverflowError",
    ),
    "point_slots_date_from_at_the_end_of_time": (
        Case(
            "GET",
            lambda c: "/v1/points/pt-00001/slots",
            lambda c: {"token": c.patient, "query": {"date_from": "9999-12-31"}},
            400,
            "invalid_request",
        ),
        "search.py point_slots: date_from + timedelta(days=30) raises OverflowError",
    ),
    # common/http.py parse_json: json.loads raises RecursionError on deep nesting.
    "deeply_nested_json": (
        _raw_book(b"[" * 50_000),
        "http.py parse_json: RecursionError from json.loads is not caught",
    ),
    # common/services/booking.py _load: reserved Firestore ids reach the client.
    "appointment_id_reserved": (
        Case(
            "GET",
            lambda c: "/v1/appointments/__x__",
            lambda c: {"token": c.patient},
            404,
            "not_found",
        ),
        "booking.py _load: Firestore InvalidArgument for a reserved id",
    ),
    "appointment_id_dot_dot_cancel": (
        Case(
            "POST",
            lambda c: "/v1/appointments/../cancel",
            lambda c: {"token": c.patient, "body": {}, "key": "b"},
            404,
            "not_found",
        ),
        "booking.py _load: Firestore InvalidArgument for '..'",
    ),
    # common/auth.py verify_principal: int(claims["exp"]) on a non-number.
    "token_exp_not_a_number": (
        _authed(lambda c: _mint(c, extra_claims={"exp": "soon"}), 401, "unauthenticated"),
        "auth.py verify_principal: int() of a non-numeric exp raises",
    ),
    "token_exp_null": (
        _authed(lambda c: _mint(c, extra_claims={"exp": None}), 401, "unauthenticated"),
        "auth.py verify_principal: int(None) raises TypeError",
    ),
    # emulator/gateway.py _template_regex uses `$`, and functions-framework's Flask routes
    # cannot match a newline: the answer is Flask's HTML 404, not the error body.
    "newline_in_path_segment": (
        Case(
            "GET",
            lambda c: "/v1/appointments/abc%0A",
            lambda c: {"token": c.patient},
            404,
            "not_found",
        ),
        "gateway + functions-framework: HTML 404 for a path segment ending in a newline",
    ),
}


def _send(c: Ctx, case: Case):
    request = case.request(c)
    stream = request.pop("stream", None)
    if stream is None:
        return c.api.call(case.method, case.path(c), **request)
    # A body without Content-Length (chunked): the size check cannot trust a header, it has
    # to count what it reads. wsgi.input_terminated tells werkzeug to read to the end.
    headers = dict(request.pop("headers", {}))
    headers["Authorization"] = f"Bearer {request.pop('token')}"
    headers["Idempotency-Key"] = request.pop("key")
    headers["Transfer-Encoding"] = "chunked"
    return c.api.client().open(
        case.path(c),
        method=case.method,
        headers=headers,
        input_stream=io.BytesIO(stream),
        environ_overrides={"wsgi.input_terminated": True},
    )


def _assert_refused_cleanly(
    c: Ctx,
    case: Case,
    logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(c.db)
    response = _send(c, case)
    text = response.get_data(as_text=True)
    assert response.status_code == case.status, text
    assert response.mimetype == "application/json", text
    body = json.loads(text)
    assert set(body) == {"error"}, text
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "details"}, text
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], text
    assert body["error"]["code"] == case.code, text
    assert case.message in body["error"]["message"], text
    for marker in _TRACE_MARKERS:
        assert marker not in text
    assert snapshot(c.db) == before
    written = logs.getvalue() + caplog.text + "".join(capfd.readouterr())
    for pesel in c.pesels:
        assert pesel not in text, "a PESEL in the response"
        assert pesel not in written, "a PESEL in the logs"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_and_writes_nothing(
    ctx: Ctx,
    name: str,
    logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    _assert_refused_cleanly(ctx, CASES[name], logs, caplog, capfd)


@pytest.mark.parametrize("name", list(FORMER_BUGS))
def test_former_bugs_are_refused_cleanly(
    ctx: Ctx,
    name: str,
    logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    _assert_refused_cleanly(ctx, FORMER_BUGS[name][0], logs, caplog, capfd)


def test_a_refused_booking_leaves_the_key_free_for_a_retry(ctx: Ctx, logs: io.StringIO) -> None:
    # The idempotency record of a refused request is deleted, not kept as a failure: the
    # same key with a corrected body then books (and is the only write of the two).
    before = snapshot(ctx.db)
    refused = ctx.api.call(
        "POST",
        "/v1/appointments",
        token=ctx.agent,
        key="retry",
        body={"slot_id": ctx.slot, "pesel": _BAD_PESELS["checksum"], "reason": "989"},
    )
    assert refused.status_code == 400
    assert snapshot(ctx.db) == before
    other = add_patient(ctx.db, serial=9)
    accepted = ctx.api.call(
        "POST",
        "/v1/appointments",
        token=ctx.agent,
        key="retry",
        body={"slot_id": ctx.slot, "pesel": other, "reason": "989"},
    )
    assert accepted.status_code == 201, accepted.get_data(as_text=True)
    # The capture works (this project has no topics, so the booking logs that its event
    # waits for the sweep), and what it caught names no patient.
    assert logs.getvalue(), "the structured log capture caught nothing"
    assert other not in logs.getvalue() and other not in accepted.get_data(as_text=True)


def test_an_agent_booking_puts_no_pesel_in_the_answer_or_the_logs(
    ctx: Ctx, logs: io.StringIO, capfd: pytest.CaptureFixture[str]
) -> None:
    # A refusal that talks about the patient (already booked) must name the appointment,
    # not the person; the PESEL came in the body and must not go out anywhere.
    body = {"slot_id": ctx.slot.replace("0900", "1100"), "pesel": ctx.pesel, "reason": "989"}
    response = ctx.api.call(
        "POST",
        "/v1/appointments",
        token=ctx.agent,
        body=body,
        key="x",
        headers={"X-Cloud-Trace-Context": "abc/1"},
    )
    assert response.status_code == 409, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "already_booked"
    written = logs.getvalue() + "".join(capfd.readouterr())
    assert ctx.pesel not in written
    assert ctx.pesel not in response.get_data(as_text=True)
