"""The OpenAPI document matches the running API.

api/openapi.yaml is what Terraform turns into the API Gateway config and what the dev gateway
routes by, so a drift between it and the functions is a production outage, not a docs bug.
This file checks, in order: the document is valid OpenAPI 3.0; it names exactly the public
functions; the gateway routes every documented operation to its function (405 for other
methods, 404 for unknown paths); real responses of every operation, success and refusal,
validate against the documented schemas; and schemathesis, fuzzing every operation through
the in-process gateway with a valid patient token, finds no 5xx.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema_rs
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from common import wiring
from common.declarations import load_declarations
from emulator.gateway import OPENAPI_PATH, Gateway, discover_functions, load_routes
from tests.support.stack import Api, add_patient, add_point, firestore_client, gateway, today_warsaw

ROOT = Path(__file__).resolve().parents[2]
SPEC: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Functions reached only by Pub/Sub push or Cloud Scheduler, under /_functions/<name>.
# Functions that are not behind the public API (push targets, scheduled jobs, webhooks): the
# declarations say which (public: false), the same list Terraform deploys from.
NOT_PUBLIC = {
    name for name, function in load_declarations().functions.items() if not function.public
}
FUZZ_EXAMPLES = 15  # per operation and mode (positive, negative): 25 took 2 min of CI


def _operations(spec: dict[str, Any] = SPEC) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for template, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield template, method, item[method]


def _concrete(template: str) -> str:
    # Any value that the parameter schemas accept; the routing does not look at it.
    return re.sub(r"\{[^}/]+\}", "pt-00001", template)


def _resolve(node: Any, spec: dict[str, Any] = SPEC) -> Any:
    """The node with every local $ref inlined (the document has no recursive schemas)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _resolve(target, spec)
        return {k: _resolve(v, spec) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, spec) for v in node]
    return node


def _to_json_schema(schema: Any) -> Any:
    """OpenAPI 3.0 schema object -> JSON Schema draft 4 (what 3.0 is based on).

    The only 3.0-specific keyword the document uses is `nullable`; draft 4 already reads
    `exclusiveMinimum: true` as a boolean. `example` and `x-*` are annotations.
    """
    if isinstance(schema, list):
        return [_to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: _to_json_schema(v)
        for k, v in schema.items()
        if k not in ("nullable", "example", "description") and not k.startswith("x-")
    }
    if schema.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


# -- the document ---------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_0() -> None:
    # The official OpenAPI 3.0 meta-schema, as shipped (and used) by schemathesis.
    from schemathesis.specs.openapi.definitions import OPENAPI_30_VALIDATOR

    errors = [str(e) for e in OPENAPI_30_VALIDATOR.iter_errors(SPEC)]
    assert errors == []
    assert SPEC["openapi"].startswith("3.0.")


def test_every_ref_resolves_and_operation_ids_are_unique() -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(SPEC)
    for ref in refs:
        assert ref.startswith("#/"), ref
        _resolve({"$ref": ref})  # a KeyError names the dangling reference
    ids = [op["operationId"] for _, _, op in _operations()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("template", "method"), [(t, m) for t, m, _ in _operations()])
def test_path_parameters_match_the_template(template: str, method: str) -> None:
    operation = SPEC["paths"][template][method]
    declared = {
        p["name"]
        for p in _resolve(operation.get("parameters", []))
        if p["in"] == "path" and p.get("required")
    }
    assert declared == set(re.findall(r"\{([^}/]+)\}", template))


def test_every_operation_documents_its_errors_with_the_error_schema() -> None:
    error_schema = _resolve({"$ref": "#/components/schemas/Error"})
    for template, method, operation in _operations():
        responses = _resolve(operation["responses"])
        # Every operation needs a token, so 401 and 503 can always happen.
        assert {"401", "503"} <= set(responses), (method, template)
        for status, response in responses.items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == error_schema, (method, template, status)


# -- the document and the functions -----------------------------------------------------------


def _http_functions() -> set[str]:
    found = set()
    for main in (ROOT / "functions").glob("*/main.py"):
        if "@functions_framework.http" in main.read_text(encoding="utf-8"):
            found.add(main.parent.name)
    return found


def test_every_x_function_exists_and_every_public_http_function_has_an_operation() -> None:
    named = {op["x-function"] for _, _, op in _operations()}
    for name in named:
        assert (ROOT / "functions" / name / "main.py").is_file(), name
    assert named.isdisjoint(NOT_PUBLIC)
    assert _http_functions() - NOT_PUBLIC == named
    assert set(discover_functions()) == named | NOT_PUBLIC


# -- the gateway routes by the document -------------------------------------------------------


def _echo(name: str) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        body = json.dumps({"function": name, "method": request.method, "path": request.path})
        return Response(body, mimetype="application/json")(environ, start_response)

    return app


@pytest.fixture(scope="module")
def echo_gateway() -> Client:
    """The gateway's routing over the real document, with functions that say who they are."""
    names = discover_functions()
    return Client(Gateway({n: _echo(n) for n in names}, load_routes()))


@pytest.mark.parametrize(
    ("template", "method", "function"),
    [(t, m.upper(), op["x-function"]) for t, m, op in _operations()],
)
def test_the_gateway_routes_each_operation_to_its_function(
    echo_gateway: Client, template: str, method: str, function: str
) -> None:
    response = echo_gateway.open(_concrete(template), method=method)
    assert response.status_code == 200
    assert response.get_json()["function"] == function
    # The function sees the full path: path_param() reads the id out of it.
    assert response.get_json()["path"] == _concrete(template)


@pytest.mark.parametrize("template", list(SPEC["paths"]))
def test_undocumented_methods_on_documented_paths_are_405(
    echo_gateway: Client, template: str
) -> None:
    documented = {m.upper() for m in SPEC["paths"][template] if m in METHODS}
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        if method in documented:
            continue
        response = echo_gateway.open(_concrete(template), method=method)
        assert response.status_code == 405, (method, template)
        assert response.get_json()["error"]["code"] == "method_not_allowed"


_UNKNOWN_PATHS = [
    "/v1/",
    "/v1/nothing",
    "/v1/slot",
    "/v1/slots/extra",
    "/v1/points",
    "/v1/points/pt-00001/nothing",
    "/v1/points/pt-00001/slots/x/y",
    "/v1/appointments/a/b",
    "/v1/appointments/a/delete",
    "/v1/me",
    "/v1/relay_outbox",
    "/v1/_functions/relay_outbox",
]


@pytest.mark.parametrize("path", _UNKNOWN_PATHS)
def test_unknown_v1_paths_are_404(echo_gateway: Client, path: str) -> None:
    # The document grows: a path it starts to document must leave this list, not be skipped.
    documented = [r.template for r in load_routes() if r.pattern.match(path)]
    assert not documented, f"{path} is documented now ({documented}): remove it from this list"
    for method in ("GET", "POST"):
        response = echo_gateway.open(path, method=method)
        assert response.status_code == 404, (method, path)
        assert response.get_json()["error"]["code"] == "not_found"


def test_the_real_gateway_serves_the_document_and_refuses_the_same_way(project: str) -> None:
    client = Client(gateway())
    served = client.get("/openapi.yaml")
    assert served.status_code == 200
    assert yaml.safe_load(served.get_data(as_text=True)) == SPEC
    assert client.delete("/v1/slots").status_code == 405
    assert client.get("/v1/nothing").status_code == 404


# -- real responses validate against the documented schemas ------------------------------------


# The patient journey, driven with seeded data below; every other operation gets the generic
# checks (test_every_operation_answers_per_its_document) and the fuzzer's schema checks.
CORE_OPERATIONS = (
    "searchSlots",
    "getPointSlots",
    "bookAppointment",
    "listMyAppointments",
    "getAppointment",
    "rescheduleAppointment",
    "cancelAppointment",
)


class Contract:
    """Checks a real response against its operation's documented responses."""

    def __init__(self) -> None:
        self.seen: dict[str, set[int]] = {op["operationId"]: set() for _, _, op in _operations()}
        self._ops = {op["operationId"]: op for _, _, op in _operations()}

    def check(self, operation_id: str, response: Any) -> Any:
        operation = self._ops[operation_id]
        responses = _resolve(operation["responses"])
        status = str(response.status_code)
        body = response.get_data(as_text=True)
        assert status in responses, f"{operation_id}: undocumented status {status}: {body}"
        assert response.mimetype == "application/json", operation_id
        schema = _to_json_schema(responses[status]["content"]["application/json"]["schema"])
        validator = jsonschema_rs.Draft4Validator(schema, validate_formats=True)
        errors = [str(e) for e in validator.iter_errors(json.loads(body))]
        assert errors == [], f"{operation_id} {status}: {errors}\n{body}"
        self.seen[operation_id].add(response.status_code)
        return response


def test_the_validator_catches_a_response_that_breaks_the_schema() -> None:
    # Guards the converter above: a validation that passes everything proves nothing.
    schema = _to_json_schema(
        _resolve(SPEC["paths"]["/v1/slots"]["get"]["responses"]["200"]["content"])[
            "application/json"
        ]["schema"]
    )
    validator = jsonschema_rs.Draft4Validator(schema, validate_formats=True)
    good = {
        "items": [],
        "next_cursor": None,
        "center": {"lat": 50.0, "lon": 20.0},
        "date_from": "2026-01-01",
        "date_to": "2026-01-31",
        "points_scanned": 0,
    }
    assert validator.is_valid(good)
    for broken in (
        {k: v for k, v in good.items() if k != "center"},
        good | {"date_from": "2026-02-30"},
        good | {"points_scanned": -1},
        good | {"next_cursor": 5},
    ):
        assert not validator.is_valid(broken), broken


def test_real_responses_of_every_operation_match_the_document(project: str) -> None:
    db = firestore_client(project)
    day = today_warsaw() + timedelta(days=3)
    products = ("comirnaty", "jcovden")
    add_point(
        db,
        "pt-00001",
        products=products,
        slots=[
            (day, time(9, 0), "jcovden", 1),
            (day, time(11, 0), "jcovden", 2),
            (day, time(10, 0), "comirnaty", 2),
            (day + timedelta(days=35), time(10, 0), "comirnaty", 2),
        ],
    )
    pesel = add_patient(db, serial=1)
    other = add_patient(db, serial=2)
    no_referral = add_patient(db, serial=3, status="cancelled")
    api = Api(project)
    patient = api.token("patient-1", "patient", pesel=pesel)
    stranger = api.token("patient-2", "patient", pesel=other)
    refused = api.token("patient-3", "patient", pesel=no_referral)
    agent = api.token("agent-1", "agent")
    c = Contract()
    slot = f"pt-00001_{day:%Y%m%d}_0900_jcovden"
    later = f"pt-00001_{day:%Y%m%d}_1100_jcovden"
    two_dose = f"pt-00001_{day:%Y%m%d}_1000_comirnaty"

    # searchSlots
    near = {"lat": 50.06, "lon": 19.94}
    found = c.check("searchSlots", api.call("GET", "/v1/slots", token=patient, query=near))
    assert found.get_json()["items"], "the seeded point is near: the 200 must not be empty"
    c.check(
        "searchSlots",
        api.call("GET", "/v1/slots", token=patient, query={"postcode": "31-001", "limit": 1}),
    )
    c.check("searchSlots", api.call("GET", "/v1/slots", token=patient, query={"lat": 50.0}))
    c.check("searchSlots", api.call("GET", "/v1/slots", query=near))
    c.check("searchSlots", api.call("GET", "/v1/slots", token=api.token("x", "root"), query=near))

    # getPointSlots
    c.check("getPointSlots", api.call("GET", "/v1/points/pt-00001/slots", token=patient))
    c.check("getPointSlots", api.call("GET", "/v1/points/pt-99999/slots", token=patient))
    c.check(
        "getPointSlots",
        api.call(
            "GET",
            "/v1/points/pt-00001/slots",
            token=patient,
            query={"date_from": "2026-05-02", "date_to": "2026-05-01"},
        ),
    )
    c.check("getPointSlots", api.call("GET", "/v1/points/pt-00001/slots"))

    # bookAppointment: 201 for one and for two doses, then every refusal it documents
    booked = c.check(
        "bookAppointment",
        api.call("POST", "/v1/appointments", token=patient, body={"slot_id": slot}, key="b1"),
    )
    assert booked.status_code == 201
    appointment_id = booked.get_json()["appointments"][0]["appointment_id"]
    series = c.check(
        "bookAppointment",
        api.call("POST", "/v1/appointments", token=stranger, body={"slot_id": two_dose}, key="b2"),
    )
    assert series.status_code == 201 and len(series.get_json()["appointments"]) == 2
    c.check(  # the same key with another body
        "bookAppointment",
        api.call("POST", "/v1/appointments", token=patient, body={"slot_id": later}, key="b1"),
    )
    c.check(  # already booked for this dose
        "bookAppointment",
        api.call("POST", "/v1/appointments", token=patient, body={"slot_id": later}, key="b3"),
    )
    c.check(
        "bookAppointment",
        api.call("POST", "/v1/appointments", token=refused, body={"slot_id": later}, key="b4"),
    )
    c.check(
        "bookAppointment",
        api.call("POST", "/v1/appointments", token=patient, body={"slot": slot}, key="b5"),
    )
    c.check("bookAppointment", api.call("POST", "/v1/appointments", body={"slot_id": slot}))

    # listMyAppointments
    mine = c.check("listMyAppointments", api.call("GET", "/v1/me/appointments", token=patient))
    assert [a["appointment_id"] for a in mine.get_json()["appointments"]] == [appointment_id]
    c.check("listMyAppointments", api.call("GET", "/v1/me/appointments", token=agent))
    c.check("listMyAppointments", api.call("GET", "/v1/me/appointments"))

    # getAppointment
    path = f"/v1/appointments/{appointment_id}"
    c.check("getAppointment", api.call("GET", path, token=patient))
    c.check("getAppointment", api.call("GET", path, token=stranger))
    c.check("getAppointment", api.call("GET", path, token=agent))  # no X-Access-Reason
    c.check(
        "getAppointment",
        api.call("GET", path, token=agent, headers={"X-Access-Reason": "caller asked"}),
    )
    c.check("getAppointment", api.call("GET", path))

    # rescheduleAppointment
    moved = c.check(
        "rescheduleAppointment",
        api.call("POST", f"{path}/reschedule", token=patient, body={"slot_id": later}, key="r1"),
    )
    assert moved.status_code == 200
    c.check(
        "rescheduleAppointment",
        api.call("POST", f"{path}/reschedule", token=patient, body={"slot_id": later}, key="r2"),
    )
    c.check(
        "rescheduleAppointment",
        api.call("POST", f"{path}/reschedule", token=stranger, body={"slot_id": slot}, key="r3"),
    )
    c.check(
        "rescheduleAppointment",
        api.call("POST", f"{path}/reschedule", token=patient, body={"slot_id": 1}, key="r4"),
    )

    # cancelAppointment
    cancelled = c.check(
        "cancelAppointment",
        api.call("POST", f"{path}/cancel", token=patient, body={}, key="c1"),
    )
    assert cancelled.get_json()["appointments"][0]["status"] == "cancelled"
    c.check(
        "cancelAppointment",
        api.call("POST", f"{path}/cancel", token=patient, body={}, key="c2"),
    )
    c.check(
        "cancelAppointment",
        api.call("POST", "/v1/appointments/nope/cancel", token=patient, body={}, key="c3"),
    )
    c.check(
        "cancelAppointment",
        api.call("POST", f"{path}/cancel", token=patient, body={"reason": 3}, key="c4"),
    )

    # Every operation driven here answered a success and a refusal, both validated.
    for operation_id in CORE_OPERATIONS:
        statuses = c.seen[operation_id]
        assert any(s < 300 for s in statuses), (operation_id, statuses)
        assert any(400 <= s < 500 for s in statuses), (operation_id, statuses)
    assert 409 in c.seen["bookAppointment"] and 422 in c.seen["bookAppointment"]
    assert 403 in c.seen["bookAppointment"] and 404 in c.seen["getAppointment"]


@pytest.mark.parametrize(("template", "method"), [(t, m) for t, m, _ in _operations()])
def test_every_operation_answers_per_its_document(project: str, template: str, method: str) -> None:
    """Without a token, and with each role's token and an empty body: documented answers."""
    db = firestore_client(project)
    add_point(db, "pt-00001", slots=[(today_warsaw() + timedelta(days=3), time(9), "jcovden", 2)])
    pesel = add_patient(db)
    api = Api(project)
    operation = SPEC["paths"][template][method]
    c = Contract()
    path = _concrete(template)
    body = {} if "requestBody" in operation else None
    anonymous = api.call(method.upper(), path, body=body, key="k-anon")
    c.check(operation["operationId"], anonymous)
    assert anonymous.status_code == 401
    for i, token in enumerate(
        (
            api.token("p", "patient", pesel=pesel),
            api.token("a", "agent"),
            api.token("s", "staff", point_id="pt-00001"),
            api.token("ad", "admin"),
        )
    ):
        response = api.call(method.upper(), path, token=token, body=body, key=f"k-{i}")
        c.check(operation["operationId"], response)
        assert response.status_code < 500


# -- schemathesis ------------------------------------------------------------------------------

# Inputs that reach bugs already reported (each pinned by an xfail test in test_bad_input.py);
# the fuzzer skips them so that it keeps hunting for new ones. Remove an entry with its fix.
_FAR_FUTURE = date(9999, 1, 1).isoformat()


def _fuzz_schema(signed: bool = False) -> schemathesis.BaseSchema:
    app = _signing(gateway()) if signed else gateway()
    return schemathesis.openapi.from_wsgi("/openapi.yaml", app)


# Operations with no ID token (`security: []`): the SMS provider's webhook, whose credential is
# its HMAC signature of the body. The fuzzer cannot sign what it sends, so the harness signs it
# on the way in, as the provider would (unsigned calls are test_sms_channel_safety's business).
_SIGNED = {"receiveSms"}
_FUZZ_WEBHOOK_SECRET = "fuzz-webhook-secret"


def _signing(app: Callable[..., Any]) -> Callable[..., Any]:
    import hashlib
    import hmac
    import io

    def signed(environ: dict[str, Any], start_response: Callable[..., Any]):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        digest = hmac.new(_FUZZ_WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        environ = {**environ, "wsgi.input": io.BytesIO(body)}
        environ["HTTP_X_SMS_SIGNATURE"] = f"sha256={digest}"
        return app(environ, start_response)

    return signed


class _QuietSms:
    def send(self, to: str, text: str, client_message_id: str) -> str:
        return f"SMS-{client_message_id[:8]}"


@functools.cache
def _quiet_sms() -> _QuietSms:
    return _QuietSms()


@dataclass(frozen=True)
class FuzzStack:
    # One valid token per role: each example picks one, so staff and admin operations get
    # past their role check as often as patient ones.
    tokens: dict[str, str]
    # Per operation, values that reach past "no such point / slot / appointment": a fuzzer
    # left alone rarely guesses an existing id, and would only ever test the 404 path.
    focus: dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def fuzz_project(local_cloud: object) -> Iterator[str]:
    """One project for every fuzz run: seeding it once saves a second per operation."""
    with pytest.MonkeyPatch.context() as patch:
        project_id = f"test-fuzz-{uuid.uuid4().hex[:8]}"
        patch.setenv("GOOGLE_CLOUD_PROJECT", project_id)
        patch.delenv("PESEL_HASH_KEY", raising=False)
        wiring.reset()
        yield project_id
    wiring.reset()


@pytest.fixture
def fuzz_env(fuzz_project: str, monkeypatch: pytest.MonkeyPatch) -> str:
    # Tests that ran in between pointed the environment at their own project: point it back.
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", fuzz_project)
    monkeypatch.delenv("PESEL_HASH_KEY", raising=False)
    wiring.reset()
    return fuzz_project


@pytest.fixture(scope="module")
def fuzz_stack(fuzz_project: str) -> FuzzStack:
    project = fuzz_project
    db = firestore_client(project)
    day = today_warsaw() + timedelta(days=3)
    add_point(
        db,
        "pt-00001",
        products=("comirnaty", "jcovden"),
        slots=[
            (day, time(9, 0), "jcovden", 50),
            (day, time(11, 0), "jcovden", 50),
            (day, time(10, 0), "comirnaty", 50),
            (day + timedelta(days=35), time(10, 0), "comirnaty", 50),
        ],
    )
    pesel = add_patient(db)
    api = Api(project)
    token = api.token("fuzz", "patient", pesel=pesel)
    first = f"pt-00001_{day:%Y%m%d}_0900_jcovden"
    second = f"pt-00001_{day:%Y%m%d}_1100_jcovden"
    booked = api.call("POST", "/v1/appointments", token=token, body={"slot_id": first}, key="k")
    assert booked.status_code == 201, booked.get_data(as_text=True)
    appointment = {"appointment_id": booked.get_json()["appointments"][0]["appointment_id"]}
    return FuzzStack(
        tokens={
            "patient": token,
            "agent": api.token("fuzz-agent", "agent"),
            "staff": api.token("fuzz-staff", "staff", point_id="pt-00001"),
            "admin": api.token("fuzz-admin", "admin"),
        },
        focus={
            "searchSlots": [{"query": {"lat": 50.06, "lon": 19.94}}],
            "getPointSlots": [{"path_parameters": {"point_id": "pt-00001"}}],
            "bookAppointment": [
                {"body": {"slot_id": second}},
                {"body": {"slot_id": f"pt-00001_{day:%Y%m%d}_1000_comirnaty"}},
            ],
            "listMyAppointments": [],
            "getAppointment": [{"path_parameters": appointment}],
            "rescheduleAppointment": [
                {"path_parameters": appointment, "body": {"slot_id": second}},
                {"path_parameters": appointment, "body": {"slot_id": first}},
            ],
            "cancelAppointment": [{"path_parameters": appointment}],
        },
    )


_OPERATION_IDS = [op["operationId"] for _, _, op in _operations()]


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("operation_id", _OPERATION_IDS)
def test_schemathesis_finds_no_server_error(
    fuzz_env: str,
    fuzz_stack: FuzzStack,
    operation_id: str,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signed = operation_id in _SIGNED
    if signed:
        monkeypatch.setenv("SMS_WEBHOOK_SECRET", _FUZZ_WEBHOOK_SECRET)
        monkeypatch.setattr(wiring, "sms_client", _quiet_sms)
        wiring.reset()
    schema = _fuzz_schema(signed)
    operation = next(
        r.ok()
        for r in schema.get_all_operations()
        if r.ok().definition.raw.get("operationId") == operation_id
    )
    generation = (
        schemathesis.GenerationMode.POSITIVE
        if mode == "positive"
        else schemathesis.GenerationMode.NEGATIVE
    )
    strategy = st.one_of(
        operation.as_strategy(generation_mode=generation),
        *(
            operation.as_strategy(generation_mode=generation, **focus)
            for focus in fuzz_stack.focus.get(operation_id, [])
        ),
    )
    # Valid input must also get a documented status, content type and body; invalid input
    # only has to be refused without a 5xx (what it gets is test_bad_input's business).
    checks = [not_a_server_error]
    if mode == "positive":
        checks += [status_code_conformance, content_type_conformance, response_schema_conformance]
    statuses: Counter[int] = Counter()

    @hypothesis.settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @given(case=strategy, role=st.sampled_from(sorted(fuzz_stack.tokens)))
    def run(case: schemathesis.Case, role: str) -> None:
        # The scheme is bearer, so schemathesis makes up a token of its own: replace it, or
        # every example stops at 401 (bad tokens are test_bad_input's business).
        auth = {"Authorization": f"Bearer {fuzz_stack.tokens[role]}"}
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        case.headers = headers | auth
        response = case.call()
        statuses[response.status_code] += 1
        case.validate_response(response, checks=checks, headers=auth)

    run()
    # The token is accepted: the fuzzer got past authentication, into the functions.
    assert sum(n for code, n in statuses.items() if code != 401) > 0, statuses
