"""Fault switches for the P1, SDS and SMS simulators, and the small harness that applies them.

The external systems sit across a failing network; our adapters and the retries around them
(Cloud Tasks, Pub/Sub redelivery) are only trustworthy if tests can make a peer slow, flaky or
gone on demand. Every simulator therefore serves the same operator endpoints:

    GET /_health              liveness, never faulted
    GET /_faults              the current switches
    PUT /_faults              replace all switches (fields left out take their defaults)
    DELETE /_faults           reset to no faults

Switches (``FaultConfig``): ``latency_ms``; ``error_rate`` (0..1) answered with
``error_status`` (503, or 429 / another 5xx) and ``Retry-After: retry_after_s``;
``fail_next`` (the next N requests get 503); ``duplicate_rate`` (SMS webhook deliveries sent
twice); ``down`` with ``down_mode`` "close" (the TCP connection is dropped unanswered, as a
dead peer looks to a client) or "503"; ``seed`` (every PUT reseeds, so runs repeat).

The first part of this module is pure (``FaultConfig``, ``decide``, ``should_duplicate``), the
rest wires it into a Flask app: faults first (a dead or slow server never gets as far as
checking credentials), then the bearer token, then the handler. Simulation-only endpoints
(marked with ``@simulation_only``) skip faults, so test set-up is never eaten by ``fail_next``.

The harness (JSON errors, in-process server, CLI runner, JSON state file) lives here too
because it is what every simulator shares with the fault switches; production never imports
this package.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import random
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, Self, TypeVar

from flask import Flask, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

# --- the pure fault logic --------------------------------------------------------------


class FaultConfig(BaseModel):
    """The switches. Deterministic: the same seed and request sequence give the same faults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_ms: int = Field(default=0, ge=0, le=60_000)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # 503 by default; 429 and other 5xx let tests cover every branch of the clients' mapping.
    error_status: int = 503
    retry_after_s: int = Field(default=1, ge=0, le=3600)
    fail_next: int = Field(default=0, ge=0, le=1_000_000)
    duplicate_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    down: bool = False
    # "close" drops the TCP connection (what a client sees from a dead peer behind a load
    # balancer); "503" answers at once, for clients that cannot tell the difference anyway.
    down_mode: Literal["close", "503"] = "close"
    seed: int = 0

    @field_validator("error_status")
    @classmethod
    def _failure_status(cls, value: int) -> int:
        if value != 429 and not 500 <= value <= 599:
            raise ValueError("error_status must be 429 or a 5xx status")
        return value


FaultReason = Literal["down", "fail_next", "error_rate"]


@dataclass(frozen=True)
class FaultDecision:
    """What to do with one request: wait ``delay_s``, then fail with ``status`` or pass."""

    delay_s: float
    status: int | None = None
    reason: FaultReason | None = None
    retry_after_s: int = 0
    close_connection: bool = False

    @property
    def passes(self) -> bool:
        return self.status is None


def decide(config: FaultConfig, rng: random.Random) -> tuple[FaultDecision, FaultConfig]:
    """Decide the fate of one request; returns the decision and the config to keep
    (``fail_next`` counts down). ``rng`` is consumed only when ``error_rate`` is in play."""
    if config.down:
        # A dead peer answers immediately (or not at all): no latency on top.
        decision = FaultDecision(
            delay_s=0.0,
            status=503,
            reason="down",
            retry_after_s=config.retry_after_s,
            close_connection=config.down_mode == "close",
        )
        return decision, config
    delay_s = config.latency_ms / 1000
    if config.fail_next > 0:
        remaining = config.model_copy(update={"fail_next": config.fail_next - 1})
        return FaultDecision(delay_s, 503, "fail_next", config.retry_after_s), remaining
    if config.error_rate > 0 and rng.random() < config.error_rate:
        return FaultDecision(
            delay_s, config.error_status, "error_rate", config.retry_after_s
        ), config
    return FaultDecision(delay_s), config


def should_duplicate(config: FaultConfig, rng: random.Random) -> bool:
    """Whether a webhook delivery should be sent twice (at-least-once delivery)."""
    return config.duplicate_rate > 0 and rng.random() < config.duplicate_rate


class FaultInjector:
    """Thread-safe holder of the switches and their random streams.

    Two streams (errors, duplicates) so that turning on duplicates does not change which
    requests fail. Every ``replace`` reseeds both: the sequence after a PUT is reproducible.
    """

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._default_seed = seed
        self._config = FaultConfig(seed=seed)
        self._errors = random.Random()
        self._duplicates = random.Random()
        self._reseed(seed)

    def _reseed(self, seed: int) -> None:
        self._errors.seed(f"{seed}:errors")
        self._duplicates.seed(f"{seed}:duplicates")

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def replace(self, config: FaultConfig) -> FaultConfig:
        with self._lock:
            self._config = config
            self._reseed(config.seed)
            return config

    def reset(self) -> FaultConfig:
        return self.replace(FaultConfig(seed=self._default_seed))

    def next_decision(self) -> FaultDecision:
        with self._lock:
            decision, self._config = decide(self._config, self._errors)
            return decision

    def duplicate(self) -> bool:
        with self._lock:
            return should_duplicate(self._config, self._duplicates)


# --- JSON errors -----------------------------------------------------------------------


def json_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The project's error shape; messages never echo request values (PESEL, phone)."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def validation_error(exc: ValidationError) -> Response:
    # include_input=False: the offending value may be a PESEL or a phone number.
    problems = [
        {"loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"]}
        for err in exc.errors(include_input=False, include_url=False, include_context=False)
    ]
    error = {"code": "invalid_request", "message": "The request body is invalid."}
    response = jsonify({"error": error | {"details": problems}})
    response.status_code = 400
    return response


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_body(model: type[ModelT]) -> ModelT:
    """Parse the JSON body into ``model``; a ValidationError becomes a 400 via the handler."""
    data = request.get_json(silent=True)
    if data is None:
        raise BadJsonError()
    return model.model_validate(data)


class BadJsonError(Exception):
    """The body is not JSON."""


class ApiError(Exception):
    """A refusal with a status and a stable code, rendered as the project's error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def parse_cursor(raw: str | None) -> int:
    """Cursors are opaque to clients; here they are the last change sequence seen."""
    if not raw:
        return 0
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, "invalid_cursor", "The cursor is not one this server issued.")
    return int(raw)


def parse_limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise ApiError(400, "invalid_limit", f"limit must be an integer in 1..{maximum}.")
    return int(raw)


# --- wiring into a Flask app -----------------------------------------------------------

ViewT = TypeVar("ViewT", bound=Callable[..., Any])
_EXEMPT_ATTR = "_simulation_only"


def simulation_only(view: ViewT) -> ViewT:
    """Mark a simulation/admin endpoint: faults do not apply (auth still does)."""
    setattr(view, _EXEMPT_ATTR, True)
    return view


def _drop_connection() -> None:
    sock = request.environ.get("werkzeug.socket")
    if sock is None:
        return
    try:
        # shutdown (not close): the handler still holds file objects on the socket; the
        # client sees the connection end without a response, and werkzeug's own write of
        # our placeholder response fails quietly as a dropped connection.
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _apply_faults(injector: FaultInjector) -> Response | None:
    decision = injector.next_decision()
    if decision.delay_s:
        time.sleep(decision.delay_s)
    if decision.passes:
        return None
    if decision.close_connection:
        _drop_connection()
    assert decision.status is not None and decision.reason is not None
    return json_error(
        decision.status,
        "injected_fault",
        f"Fault injected by the simulator ({decision.reason}).",
        headers={"Retry-After": str(decision.retry_after_s)},
    )


def _authorised(token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    # Constant-time compare: the token is a shared secret even in a simulator.
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token)


def install_simulator(
    app: Flask, *, name: str, api_prefix: str, token: str | None, seed: int
) -> None:
    """Add fault switches, bearer auth on ``api_prefix`` paths, JSON errors and /_health.

    ``token=None``: no bearer token is asked for, because the server itself authenticates its
    clients (mutual TLS: the TLS layer refused anyone without a certificate of our CA)."""
    injector = FaultInjector(seed)
    app.extensions["faults"] = injector

    @app.before_request
    def _guard() -> Response | None:
        if not request.path.startswith(api_prefix):
            return None
        view = app.view_functions.get(request.endpoint or "")
        if view is not None and not getattr(view, _EXEMPT_ATTR, False):
            refusal = _apply_faults(injector)
            if refusal is not None:
                return refusal
        if token is not None and not _authorised(token):
            return json_error(
                401,
                "unauthenticated",
                "A valid bearer token is required.",
                headers={"WWW-Authenticate": f'Bearer realm="{name}"'},
            )
        return None

    @app.get("/_health")
    def _health() -> Response:
        return jsonify({"status": "ok", "service": name})

    @app.get("/_faults")
    def _get_faults() -> Response:
        return jsonify(injector.config.model_dump())

    @app.put("/_faults")
    def _put_faults() -> Response:
        return jsonify(injector.replace(parse_body(FaultConfig)).model_dump())

    @app.delete("/_faults")
    def _delete_faults() -> Response:
        return jsonify(injector.reset().model_dump())

    @app.errorhandler(ValidationError)
    def _invalid(exc: ValidationError) -> Response:
        return validation_error(exc)

    @app.errorhandler(BadJsonError)
    def _bad_json(exc: BadJsonError) -> Response:
        return json_error(400, "invalid_json", "The request body must be a JSON object.")

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return json_error(exc.status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        return json_error(status, code, exc.description or exc.name)


# --- serving ---------------------------------------------------------------------------


_POLL_INTERVAL_S = 0.05


class RunningServer:
    """A simulator served by werkzeug in a background thread (tests and the CLI)."""

    def __init__(
        self,
        app: Flask,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, ssl_context=ssl_context
        )
        self.scheme = "https" if ssl_context is not None else "http"
        self.host = host
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(
            # A short poll keeps stop() fast (tests start and stop dozens of servers).
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_S},
            name=f"sim-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_thread(
    app: Flask, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
) -> RunningServer:
    """Serve ``app`` on ``host:port`` (0 = a free port) until ``.stop()``; over TLS with
    ``ssl_context`` (which may require client certificates: emulator/certs.py)."""
    return RunningServer(app, host, port, ssl_context)


def add_common_arguments(
    parser: argparse.ArgumentParser, default_port: int, token_env: str, default_token: str
) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port, help="0 picks a free port")
    parser.add_argument(
        "--token",
        default=os.environ.get(token_env, default_token),
        help=f"bearer token clients must send (env {token_env}; default {default_token!r})",
    )
    parser.add_argument("--state", type=Path, default=None, help="JSON file that keeps state")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault switches")
    parser.add_argument("--log-level", default="WARNING")


def run_cli(
    label: str, app: Flask, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> int:
    """Serve until SIGINT/SIGTERM; print exactly one ready line once listening."""
    try:
        server = serve_in_thread(app, host, port, ssl_context)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    stop_requested = threading.Event()

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    print(f"{label} simulator listening on {server.base_url}", flush=True)
    # Event.wait with a timeout keeps the main thread responsive to signals.
    while not stop_requested.wait(0.1):
        pass
    server.stop()
    return 0


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


# --- optional JSON state file ----------------------------------------------------------


class StateFile:
    """Whole-state JSON snapshot, rewritten atomically after each change (simulator scale)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        if self.path is None or not self.path.exists():
            return None
        data = json.loads(self.path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None

    def save(self, data: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        # os.replace is atomic: a crash mid-write never leaves a truncated state file.
        os.replace(tmp, self.path)
