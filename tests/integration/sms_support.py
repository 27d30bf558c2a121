"""Shared set-up of the SMS tests: the SMS simulator, the Cloud Tasks emulator, the gateway on
a free port, the notify-patient push subscription, and a patient with a phone."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any

import pytest
import requests
from google.cloud import firestore, pubsub_v1
from werkzeug.serving import make_server

from common import clock, wiring
from common.adapters.cloud_tasks import make_tasks_client
from common.adapters.firestore_store import OUTBOX, PATIENTS
from common.config import Settings
from common.declarations import Declarations, Subscription, load_declarations
from common.domain.calendar import WARSAW
from common.domain.pesel import parse_pesel, pesel_key
from emulator.cloudtasks import CloudTasksEmulator
from emulator.faults import FaultConfig, RunningServer
from emulator.provision import provision_pubsub, provision_queues
from emulator.sms import DEFAULT_TOKEN, start_sms
from tests.support.stack import add_patient, add_point, gateway, today_warsaw

WEBHOOK_SECRET = "test-webhook-secret"


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return predicate()


@pytest.fixture(scope="module")
def tasks_emulator() -> Iterator[CloudTasksEmulator]:
    with CloudTasksEmulator(port=0) as running:
        yield running


@pytest.fixture
def gateway_url(project: str) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, gateway(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@dataclass
class SmsWorld:
    project: str
    db: firestore.Client
    sms: RunningServer
    gateway_url: str
    tasks: Any  # tasks_v2.CloudTasksClient

    # -- the SMS gateway simulator -------------------------------------------------------
    def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        state = self.sms.app.extensions["sms"]
        with state.lock:
            found = [dict(m) for m in state.messages.values()]
        return [m for m in found if to is None or m["to"] == to]

    def faults(self, **switches: Any) -> None:
        self.sms.app.extensions["faults"].replace(FaultConfig(**switches))

    # -- data ------------------------------------------------------------------------------
    def patient(self, phone: str | None, serial: int, **kwargs: Any) -> tuple[str, str]:
        """A patient with a referral (and a phone); returns (PESEL, patient_key)."""
        pesel = add_patient(self.db, serial=serial, **kwargs)
        key = pesel_key(parse_pesel(pesel, today_warsaw()), Settings.from_env().pesel_hash_key)
        if phone is not None:
            self.db.collection(PATIENTS).document(key).update({"phone": phone})
        return pesel, key

    # -- Pub/Sub ---------------------------------------------------------------------------
    def outbox(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.db.collection(OUTBOX).stream()]

    def push(self, document: dict[str, Any], attempt: int = 1) -> requests.Response:
        """Deliver one outbox event to notify_patient as a Pub/Sub push would."""
        envelope = {
            "message": {
                "data": base64.b64encode(document["payload"].encode()).decode(),
                "attributes": {
                    "event_type": document["event_type"],
                    "event_id": document["event_id"],
                },
                "messageId": f"{document['event_id']}-{attempt}",
                "publishTime": "2026-01-01T00:00:00Z",
            },
            "subscription": f"projects/{self.project}/subscriptions/notify-patient",
        }
        return requests.post(
            f"{self.gateway_url}/_functions/notify_patient", json=envelope, timeout=30
        )

    def publish(self, document: dict[str, Any]) -> None:
        publisher = pubsub_v1.PublisherClient()
        publisher.publish(
            publisher.topic_path(self.project, "appointment-events"),
            document["payload"].encode(),
            event_type=document["event_type"],
            event_id=document["event_id"],
        ).result(timeout=10)

    def push_reminder(self, appointment_id: str, starts_at: datetime) -> dict[str, Any]:
        """What a reminder task delivers to send_reminder."""
        response = requests.post(
            f"{self.gateway_url}/_functions/send_reminder",
            json={"appointment_id": appointment_id, "starts_at": starts_at.isoformat()},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def notification(self, notification_id: str) -> dict[str, Any] | None:
        snapshot = self.db.collection("notifications").document(notification_id).get()
        return snapshot.to_dict() if snapshot.exists else None


def notify_declarations(with_push: bool) -> Declarations:
    """The declared topics, the notify-patient subscription (fast backoff for tests), the
    notifications queue."""
    declared = load_declarations()
    subscriptions: dict[str, Subscription] = {}
    if with_push:
        # Five deliveries (Pub/Sub's least before a dead letter) instead of ten: the tests
        # that wait for the subscription to give up wait half as long.
        fast = declared.subscriptions["notify-patient"].model_copy(
            update={
                "min_retry_backoff": "0.2s",
                "max_retry_backoff": "1s",
                "max_delivery_attempts": 5,
            }
        )
        subscriptions = {
            "notify-patient": fast,
            "notifications-dead-letter-inspect": declared.subscriptions[
                "notifications-dead-letter-inspect"
            ],
        }
    return declared.model_copy(
        update={
            "subscriptions": subscriptions,
            "queues": {"notifications": declared.queues["notifications"]},
        }
    )


def _world(
    project: str,
    gateway_url: str,
    tasks_emulator: CloudTasksEmulator,
    monkeypatch: pytest.MonkeyPatch,
    with_push: bool,
) -> Iterator[SmsWorld]:
    # The provider signs every webhook call; the webhook refuses any other (issue 13).
    sms = start_sms(
        webhook_url=f"{gateway_url}/_functions/receive_sms", webhook_secret=WEBHOOK_SECRET
    )
    state = sms.app.extensions["sms"]
    state.config = state.config.model_copy(update={"backoff_s": 0.2})
    monkeypatch.setenv("SMS_BASE_URL", sms.base_url)
    monkeypatch.setenv("SMS_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", tasks_emulator.address)
    monkeypatch.setenv("FUNCTIONS_BASE_URL", f"{gateway_url}/_functions")
    monkeypatch.setenv("SMS_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.delenv("P1_BASE_URL", raising=False)  # phones on file only, unless a test adds P1
    wiring.reset()
    provision_pubsub(project, f"{gateway_url}/_functions", notify_declarations(with_push))
    tasks = make_tasks_client(tasks_emulator.address)
    provision_queues(tasks, project, "europe-central2", notify_declarations(False))
    try:
        yield SmsWorld(project, firestore.Client(project=project), sms, gateway_url, tasks)
    finally:
        sms.stop()
        wiring.reset()


@pytest.fixture
def world(
    project: str,
    gateway_url: str,
    tasks_emulator: CloudTasksEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[SmsWorld]:
    """Events are pushed by the test itself (no subscription on appointment-events)."""
    yield from _world(project, gateway_url, tasks_emulator, monkeypatch, with_push=False)


@pytest.fixture
def push_world(
    project: str,
    gateway_url: str,
    tasks_emulator: CloudTasksEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[SmsWorld]:
    """The notify-patient push subscription delivers to the gateway (fast retry backoff)."""
    yield from _world(project, gateway_url, tasks_emulator, monkeypatch, with_push=True)


def point_with_slots(
    db: firestore.Client,
    days: list[int],
    product: str = "jcovden",
    at: dtime = dtime(10, 0),
    capacity: int = 2,
    point_id: str = "pt-00001",
    extra_times: tuple[dtime, ...] = (),
) -> list[str]:
    """A point in Kraków with slots `days` from today; returns the slot ids."""
    today = today_warsaw()
    slots = []
    for offset in days:
        day = today + timedelta(days=offset)
        for start in (at, *extra_times):
            slots.append((day, start, product, capacity))
    add_point(db, point_id, slots=slots, products=(product,))
    return [f"{point_id}_{d:%Y%m%d}_{t:%H%M}_{p}" for d, t, p, _ in slots]


def visit_start(slot_id: str) -> datetime:
    _, day, hhmm, _ = slot_id.split("_", 3)
    return datetime.combine(
        date(int(day[:4]), int(day[4:6]), int(day[6:])),
        dtime(int(hhmm[:2]), int(hhmm[2:])),
        tzinfo=WARSAW,
    )


def payload_of(document: dict[str, Any]) -> dict[str, Any]:
    return json.loads(document["payload"])


def sign(body: bytes) -> str:
    """The SMS provider's signature of a webhook call."""
    return "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


def webhook_sms(
    world: SmsWorld, text: str, phone: str, message_id: str | None = None, signed: bool = True
) -> requests.Response:
    """An incoming SMS delivered to receive_sms as the provider's webhook does."""
    body = json.dumps(
        {
            "message_id": message_id or f"IN-{uuid.uuid4().hex[:10]}",
            "from": phone,
            "text": text,
            "received_at": clock.now().isoformat(),
        }
    ).encode()
    headers = {"Content-Type": "application/json"}
    if signed:
        headers["X-Sms-Signature"] = sign(body)
    return requests.post(
        f"{world.gateway_url}/_functions/receive_sms", data=body, headers=headers, timeout=30
    )
