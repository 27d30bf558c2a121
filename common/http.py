"""The HTTP edge shared by every function: JSON parsing, error mapping, responses.

One table maps failures to statuses (the domain errors carry their own `code` and
`http_status`); a fault in a dependency becomes 503 with Retry-After, bad input a 4xx, and no
request ever sees a stack trace.
"""

from __future__ import annotations

import functools
import json
import os
import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import flask
from google.api_core import exceptions as gexc
from pydantic import BaseModel, ValidationError

from common import structured_log as log
from common.domain.errors import (
    DependencyUnavailableError,
    DomainError,
    NotFoundError,
    ValidationFailedError,
)

MAX_BODY_BYTES = 64 * 1024
_PATH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
M = TypeVar("M", bound=BaseModel)

# Failures of Google Cloud clients that mean "the dependency is not there right now".
_DEPENDENCY_FAULTS: tuple[type[BaseException], ...] = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.RetryError,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.ResourceExhausted,
    ConnectionError,
    TimeoutError,
)


def error_payload(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None):
    response = flask.Response(
        json.dumps(payload, ensure_ascii=False, default=str),
        status=status,
        mimetype="application/json",
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def domain_error_response(err: DomainError):
    headers: dict[str, str] = {}
    # 503 (a dependency, or load shed) and 429 (a quota) say when to come back.
    retry_after = getattr(err, "retry_after_s", None)
    if isinstance(err, DependencyUnavailableError) or (
        err.http_status == 429 and retry_after is not None
    ):
        headers["Retry-After"] = str(retry_after)
    return json_response(
        error_payload(err.code, err.message, err.details), err.http_status, headers
    )


def _validation_details(err: ValidationError) -> list[dict[str, str]]:
    # The input values are left out on purpose: they may hold a PESEL or a phone number.
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "problem": e["msg"]}
        for e in err.errors(include_input=False, include_url=False)
    ]


def parse_model(data: Any, model: type[M]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ValidationFailedError(
            "the request is not valid", details={"errors": _validation_details(err)}
        ) from None


def parse_json(request: flask.Request, model: type[M]) -> M:
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise ValidationFailedError(f"the body is larger than {MAX_BODY_BYTES} bytes")
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY_BYTES:
        raise ValidationFailedError(f"the body is larger than {MAX_BODY_BYTES} bytes")
    if not request.mimetype or request.mimetype != "application/json":
        raise ValidationFailedError("the body must be JSON (Content-Type: application/json)")
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValidationFailedError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValidationFailedError("the body must be a JSON object")
    return parse_model(data, model)


def parse_query(request: flask.Request, model: type[M]) -> M:
    # Repeated query parameters are refused instead of silently picking one of them.
    args = request.args
    for key in args:
        if len(args.getlist(key)) > 1:
            raise ValidationFailedError(f"the query parameter '{key}' is given more than once")
    return parse_model(dict(args), model)


def endpoint(handler: Callable[[flask.Request], Any]) -> Callable[[flask.Request], Any]:
    """Wrap an HTTP entry point: structured logs, trace id, and the error table."""

    @functools.wraps(handler)
    def wrapper(request: flask.Request):
        log.configure()
        log.set_trace(request.headers.get("X-Cloud-Trace-Context"), _project_hint())
        cors = _cors_headers(request.headers.get("Origin"))
        if request.method == "OPTIONS":
            return flask.Response(status=204 if cors else 403, headers=cors)
        response = _handle(handler, request)
        response.headers.extend(cors)
        return response

    return wrapper


def _cors_headers(origin: str | None) -> dict[str, str]:
    """CORS for the web apps' origins (CORS_ALLOWED_ORIGINS); same-origin needs none."""
    allowed = {o.strip() for o in os.environ.get("CORS_ALLOWED_ORIGINS", "").split(",") if o}
    if not origin or origin not in allowed:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
        "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
        "Access-Control-Max-Age": "3600",
        "Vary": "Origin",
    }


def _handle(handler: Callable[[flask.Request], Any], request: flask.Request) -> flask.Response:
    """The error table: domain errors, dependency faults (503), and the unexpected (500)."""
    try:
        return handler(request)
    except DomainError as err:
        if err.http_status >= 500:
            log.warning("dependency unavailable", code=err.code, path=request.path)
        return domain_error_response(err)
    except _DEPENDENCY_FAULTS as err:
        log.warning("dependency fault", fault=type(err).__name__, path=request.path)
        return domain_error_response(DependencyUnavailableError())
    except Exception:  # noqa: BLE001 (the last line of defence: log it, answer 500)
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error", incident=incident, path=request.path)
        return json_response(
            error_payload("internal", f"internal error (incident {incident})"), 500
        )


def _project_hint() -> str:
    return os.environ.get("GOOGLE_CLOUD_PROJECT", "local")


def path_param(request: flask.Request, prefix: str) -> str:
    """The segment after `prefix` in the path (API Gateway appends the full path)."""
    path = request.path
    if not path.startswith(prefix):
        raise ValidationFailedError("unexpected path")
    segment = path[len(prefix) :].split("/", 1)[0]
    if not segment:
        raise ValidationFailedError("missing identifier in the path")
    # Our ids are short [A-Za-z0-9_-] strings; anything else (Firestore's reserved __x__ ids,
    # dots, control characters) names nothing that exists.
    if not _PATH_ID.fullmatch(segment):
        raise NotFoundError("no such resource")
    return segment
