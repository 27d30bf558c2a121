"""The local cloud itself (issue 2): push subscriptions, dead letters, provisioning, scheduler."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from google.cloud import firestore, pubsub_v1
from werkzeug.serving import make_server

from common.adapters.firestore_store import INTEGRATION_LOG
from common.declarations import Declarations, Schedule, Subscription, Topic, load_declarations
from emulator.provision import provision_pubsub
from emulator.scheduler import LocalScheduler
from tests.support.stack import gateway


def _wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return predicate()


@pytest.fixture
def gateway_url(project: str):
    server = make_server("127.0.0.1", 0, gateway(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class _Recorder(BaseHTTPRequestHandler):
    """A push endpoint or job target that records requests and answers a fixed status."""

    status = 200
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        type(self).received.append(
            {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": self.rfile.read(length),
            }
        )
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def _recorder(status: int):
    handler = type("Recorder", (_Recorder,), {"status": status, "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


def test_event_published_to_topic_reaches_function_through_push(project: str, gateway_url: str):
    provision_pubsub(project, f"{gateway_url}/_functions", load_declarations())
    publisher = pubsub_v1.PublisherClient()
    event = {"event_id": "evt-push-1", "event_type": "appointment.booked", "appointment_id": "a1"}
    publisher.publish(
        publisher.topic_path(project, "appointment-events"),
        json.dumps(event).encode(),
        event_type="appointment.booked",
    ).result(timeout=10)
    db = firestore.Client(project=project)
    stored = _wait_for(lambda: db.collection(INTEGRATION_LOG).document("evt-push-1").get().exists)
    assert stored, "the push subscription did not deliver the event to record_integration_event"
    document = db.collection(INTEGRATION_LOG).document("evt-push-1").get().to_dict()
    assert document["payload"]["appointment_id"] == "a1"


def test_message_that_keeps_failing_lands_in_dead_letter_topic(project: str):
    server, handler = _recorder(status=500)
    declarations = Declarations(
        topics={"work": Topic(), "work-dead-letter": Topic()},
        subscriptions={
            "work-push": Subscription(
                topic="work",
                push_function="always_fails",
                max_delivery_attempts=5,
                dead_letter_topic="work-dead-letter",
                min_retry_backoff="0.1s",
                max_retry_backoff="0.5s",
            ),
            "work-dead-letter-inspect": Subscription(topic="work-dead-letter"),
        },
        queues={},
        schedules={},
    )
    try:
        provision_pubsub(project, f"http://127.0.0.1:{server.server_port}", declarations)
        publisher = pubsub_v1.PublisherClient()
        publisher.publish(
            publisher.topic_path(project, "work"), b'{"event_id": "poison"}', event_type="x"
        ).result(timeout=10)
        subscriber = pubsub_v1.SubscriberClient()
        dead_letters = subscriber.subscription_path(project, "work-dead-letter-inspect")

        def pull():
            response = subscriber.pull(subscription=dead_letters, max_messages=5, timeout=5)
            return list(response.received_messages)

        received = _wait_for(pull, timeout_s=60, interval_s=0.5)
        assert received, "the failing message never reached the dead-letter topic"
        assert received[0].message.data == b'{"event_id": "poison"}'
        attempts = [r for r in handler.received if r["path"] == "/always_fails"]
        assert len(attempts) >= 5  # delivered max_delivery_attempts times before dead-lettering
    finally:
        server.shutdown()


def test_provisioning_twice_is_harmless(project: str):
    declarations = load_declarations()
    first = provision_pubsub(project, "http://127.0.0.1:9/_functions", declarations)
    second = provision_pubsub(project, "http://127.0.0.1:9/_functions", declarations)
    assert len(first) == len(declarations.topics) + len(declarations.subscriptions)
    assert second == []


def test_local_scheduler_fires_declared_job_with_cloud_scheduler_headers():
    server, handler = _recorder(status=200)
    declarations = Declarations(
        topics={},
        subscriptions={},
        queues={},
        schedules={"tick": Schedule(schedule="* * * * *", function="relay_outbox")},
    )
    # A clock that starts a second before a minute boundary: the job fires on the boundary.
    started = time.monotonic()
    base = datetime(2026, 11, 26, 10, 0, 59, tzinfo=UTC)

    def clock() -> datetime:
        return base + timedelta(seconds=time.monotonic() - started)

    scheduler = LocalScheduler(declarations, f"http://127.0.0.1:{server.server_port}", clock)
    scheduler.start()
    try:
        assert _wait_for(lambda: handler.received, timeout_s=10)
    finally:
        scheduler.stop()
        server.shutdown()
    request = handler.received[0]
    assert request["path"] == "/relay_outbox"
    assert request["headers"]["x-cloudscheduler"] == "true"
    assert request["headers"]["x-cloudscheduler-jobname"] == "tick"
    # Fired at the cron time in the job's zone: 10:01 UTC is 11:01 in Warsaw in November.
    assert request["headers"]["x-cloudscheduler-scheduletime"].startswith("2026-11-26T11:01:00")
    assert len(handler.received) == 1
