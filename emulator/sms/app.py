"""The SMS gateway simulator: outgoing messages (deduped by our id), incoming ones by webhook.

Incoming SMS are delivered at least once, like a real gateway: on a non-2xx answer or a
network error the simulator retries with exponential backoff, and it can deliver a message
twice on purpose (``duplicate`` in the request, or the ``duplicate_rate`` fault switch) so our
webhook's dedupe by ``message_id`` is tested. See README.md for the API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from flask import Flask, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from common import clock as common_clock
from emulator.faults import (
    ApiError,
    FaultInjector,
    StateFile,
    install_simulator,
    parse_body,
    simulation_only,
)

DEFAULT_TOKEN = "local-sms-token"  # noqa: S105 (documented local default, not a secret)
API = "/sms/v1"
PHONE_PATTERN = r"^\+?[0-9]{9,15}$"
MAX_TEXT = 1600  # ~10 concatenated segments; more is a bug on our side, not an SMS
WEBHOOK_TIMEOUT = (2.0, 5.0)
SIGNATURE_HEADER = "X-Sms-Signature"
ATTEMPT_HEADER = "X-Sms-Delivery-Attempt"

Clock = Callable[[], datetime]
_log = logging.getLogger("emulator.sms")


def _utc_now() -> datetime:
    return common_clock.now()  # the one clock, shifted with the rest of the stack


class _Body(BaseModel):
    # hide_input_in_errors: a validation error must not echo a phone number back.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, populate_by_name=True)


class OutgoingSms(_Body):
    to: str = Field(pattern=PHONE_PATTERN)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    client_message_id: str = Field(min_length=1, max_length=128)


class PhoneQuery(_Body):
    to: str = Field(pattern=PHONE_PATTERN)


class InboundSms(_Body):
    sender: str = Field(alias="from", pattern=PHONE_PATTERN)
    text: str = Field(min_length=0, max_length=MAX_TEXT)
    received_at: datetime | None = None
    duplicate: bool = False


class WebhookConfig(_Body):
    webhook_url: HttpUrl | None = None
    # When set, each delivery carries X-Sms-Signature: sha256=<hex HMAC of the raw body>.
    webhook_secret: str | None = Field(default=None, min_length=1, max_length=256)
    max_attempts: int = Field(default=4, ge=1, le=10)
    backoff_s: float = Field(default=0.5, ge=0.0, le=30.0)

    def public(self) -> dict[str, Any]:
        shown = self.model_dump(mode="json", exclude={"webhook_secret"})
        return shown | {"webhook_secret_set": self.webhook_secret is not None}


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class SmsState:
    def __init__(self, clock: Clock, config: WebhookConfig, state_file: StateFile) -> None:
        self.clock = clock
        self.config = config
        self._file = state_file
        self.lock = threading.Lock()
        self.sent_counter = 0
        self.inbound_counter = 0
        self.messages: dict[str, dict[str, Any]] = {}
        self.by_client_id: dict[str, str] = {}
        self.inbound: dict[str, dict[str, Any]] = {}
        data = state_file.load()
        if data:
            self.sent_counter = int(data["sent_counter"])
            self.inbound_counter = int(data["inbound_counter"])
            self.messages = dict(data["messages"])
            self.by_client_id = dict(data["by_client_id"])
            self.inbound = dict(data["inbound"])
            if data.get("config") and config.webhook_url is None:
                self.config = WebhookConfig.model_validate(data["config"])

    def save(self) -> None:
        """Call with ``lock`` held."""
        self._file.save(
            {
                "sent_counter": self.sent_counter,
                "inbound_counter": self.inbound_counter,
                "messages": self.messages,
                "by_client_id": self.by_client_id,
                "inbound": self.inbound,
                "config": self.config.model_dump(mode="json"),
            }
        )

    def send(self, sms: OutgoingSms) -> dict[str, Any]:
        with self.lock:
            known_id = self.by_client_id.get(sms.client_message_id)
            if known_id is not None:
                known = self.messages[known_id]
                if (known["to"], known["text"]) != (sms.to, sms.text):
                    raise ApiError(
                        409,
                        "client_message_id_conflict",
                        "This client_message_id was already used for another message.",
                    )
                # The same message again (our retry): same id, recorded and sent once.
                return dict(known)
            self.sent_counter += 1
            message = {
                "message_id": f"SMS-{self.sent_counter:08d}",
                "client_message_id": sms.client_message_id,
                "to": sms.to,
                "text": sms.text,
                "status": "sent",
                "accepted_at": self.clock().astimezone(UTC).isoformat(),
            }
            self.messages[message["message_id"]] = message
            self.by_client_id[sms.client_message_id] = message["message_id"]
            self.save()
            return dict(message)

    def receive(self, sms: InboundSms, copies: int) -> tuple[dict[str, Any], WebhookConfig]:
        with self.lock:
            self.inbound_counter += 1
            received_at = (sms.received_at or self.clock()).astimezone(UTC).isoformat()
            config = self.config
            record: dict[str, Any] = {
                "message_id": f"IN-{self.inbound_counter:08d}",
                "from": sms.sender,
                "text": sms.text,
                "received_at": received_at,
                "copies": copies,
                "status": "pending" if config.webhook_url else "no_webhook",
                "delivered": 0,
                "attempts": [],
            }
            self.inbound[record["message_id"]] = record
            self.save()
            return dict(record), config

    def record_attempt(self, message_id: str, attempt: dict[str, Any], ok: bool) -> None:
        with self.lock:
            record = self.inbound[message_id]
            record["attempts"].append(attempt)
            if ok:
                record["delivered"] += 1
            self.save()

    def finish(self, message_id: str, status: str) -> None:
        with self.lock:
            self.inbound[message_id]["status"] = status
            self.save()


def webhook_payload(record: dict[str, Any]) -> bytes:
    fields = ("message_id", "from", "text", "received_at")
    return json.dumps({k: record[k] for k in fields}).encode()


def _post_once(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
    try:
        response = requests.post(url, data=body, headers=headers, timeout=WEBHOOK_TIMEOUT)
    except requests.RequestException as exc:
        return None, type(exc).__name__
    return response.status_code, None


def deliver(state: SmsState, record: dict[str, Any], config: WebhookConfig) -> None:
    """Deliver ``record`` ``copies`` times, each with retries; runs on its own thread."""
    assert config.webhook_url is not None
    url = str(config.webhook_url)
    body = webhook_payload(record)
    headers = {"Content-Type": "application/json"}
    if config.webhook_secret:
        headers[SIGNATURE_HEADER] = sign(body, config.webhook_secret)
    attempt_no = 0
    for _copy in range(record["copies"]):
        for attempt in range(config.max_attempts):
            attempt_no += 1
            status, error = _post_once(url, body, headers | {ATTEMPT_HEADER: str(attempt_no)})
            ok = status is not None and 200 <= status < 300
            entry = {"attempt": attempt_no, "status": status, "error": error}
            state.record_attempt(record["message_id"], entry, ok)
            if ok:
                break
            # Only ids and statuses in logs: the payload holds a phone number.
            _log.info("webhook delivery of %s failed (%s)", record["message_id"], status or error)
            if attempt + 1 < config.max_attempts:
                time.sleep(config.backoff_s * 2**attempt)
        else:
            state.finish(record["message_id"], "failed")
            return
    state.finish(record["message_id"], "delivered")


def make_app(
    *,
    token: str = DEFAULT_TOKEN,
    state_path: Path | None = None,
    seed: int = 0,
    clock: Clock = _utc_now,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> Flask:
    """The SMS gateway simulator as a WSGI app; its state is ``app.extensions["sms"]``."""
    app = Flask("sms-simulator")
    config = WebhookConfig.model_validate(
        {"webhook_url": webhook_url, "webhook_secret": webhook_secret}
    )
    state = SmsState(clock, config, StateFile(state_path))
    app.extensions["sms"] = state
    install_simulator(app, name="sms", api_prefix=f"{API}/", token=token, seed=seed)
    injector: FaultInjector = app.extensions["faults"]
    _add_outgoing_routes(app, state)
    _add_inbound_routes(app, state, injector)
    return app


def _add_outgoing_routes(app: Flask, state: SmsState) -> None:
    @app.post(f"{API}/messages")
    def send_message() -> tuple[Response, int]:
        message = state.send(parse_body(OutgoingSms))
        return jsonify({"message_id": message["message_id"], "status": "accepted"}), 202

    @app.get(f"{API}/messages")
    @simulation_only
    def list_messages() -> Response:
        if "to" in request.args:
            # A phone number in a query string ends up in access logs: refuse the shape.
            raise ApiError(
                400,
                "phone_in_url",
                f"Do not put a phone number in a URL; POST {API}/messages:query.",
            )
        with state.lock:
            messages = [dict(m) for m in state.messages.values()]
        return jsonify({"messages": messages})

    @app.post(f"{API}/messages:query")
    def query_messages() -> Response:
        to = parse_body(PhoneQuery).to
        with state.lock:
            messages = [dict(m) for m in state.messages.values() if m["to"] == to]
        return jsonify({"messages": messages})

    @app.get(f"{API}/messages/<message_id>")
    def get_message(message_id: str) -> Response:
        with state.lock:
            message = state.messages.get(message_id)
        if message is None:
            raise ApiError(404, "message_not_found", "No such message.")
        return jsonify(message)


def _add_inbound_routes(app: Flask, state: SmsState, injector: FaultInjector) -> None:
    @app.get(f"{API}/config")
    @simulation_only
    def get_config() -> Response:
        return jsonify(state.config.public())

    @app.put(f"{API}/config")
    @simulation_only
    def put_config() -> Response:
        config = parse_body(WebhookConfig)
        with state.lock:
            state.config = config
            state.save()
        return jsonify(config.public())

    @app.post(f"{API}/inbound")
    @simulation_only
    def receive_sms() -> tuple[Response, int]:
        sms = parse_body(InboundSms)
        copies = 2 if sms.duplicate or injector.duplicate() else 1
        record, config = state.receive(sms, copies)
        if config.webhook_url is not None:
            # Asynchronous like a real gateway: the phone's SMS is accepted before delivery.
            worker = threading.Thread(
                target=deliver, args=(state, record, config), name="sms-webhook", daemon=True
            )
            worker.start()
        return jsonify({"message_id": record["message_id"], "copies": copies}), 202

    @app.get(f"{API}/inbound")
    @simulation_only
    def list_inbound() -> Response:
        with state.lock:
            records = [json.loads(json.dumps(r)) for r in state.inbound.values()]
        return jsonify({"inbound": records})

    @app.get(f"{API}/inbound/<message_id>")
    @simulation_only
    def get_inbound(message_id: str) -> Response:
        with state.lock:
            record = state.inbound.get(message_id)
            copy = json.loads(json.dumps(record)) if record is not None else None
        if copy is None:
            raise ApiError(404, "inbound_not_found", "No such inbound message.")
        return jsonify(copy)
