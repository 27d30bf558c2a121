"""Vaccinations reported to P1 exactly once in effect (docs/reliability.md items 4, 5, 10).

Real at-least-once path: the official Pub/Sub emulator pushes `appointment-events` through
the dev gateway (served on a free port) to `report_vaccination_to_p1`, which calls the P1
simulator over HTTP. Backoffs are shortened for the test; everything else is as declared.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import requests
from google.cloud import firestore, pubsub_v1
from werkzeug.serving import make_server
from werkzeug.test import Client

from common import clock, wiring
from common.declarations import load_declarations
from common.domain.events import VaccinationCompleted
from common.services import outbox
from common.services.p1_reporting import P1_REPORTS
from emulator.p1 import start_p1
from emulator.provision import provision_pubsub
from emulator.replay_dead_letters import peek, replay
from tests.support.points import events, key_of, make_world, seed_visit
from tests.support.stack import add_patient, gateway, today_warsaw

TOKEN = "p1-report-token"
REPORTS = "p1-vaccination-reports"
INSPECT = "p1-reports-dead-letter-inspect"
DROPPED = ("event_type", "schema_version")


def _wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return predicate()


@dataclass
class P1Calls:
    """Counts POST /p1/v1/vaccinations per vaccination id (every call, not only records)."""

    by_id: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, app):
        inner = app.wsgi_app

        def counting(environ, start_response):
            if (
                environ["REQUEST_METHOD"] == "POST"
                and environ["PATH_INFO"] == "/p1/v1/vaccinations"
            ):
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(length)
                with self.lock:
                    vid = json.loads(body or b"{}").get("vaccination_id", "?")
                    self.by_id[vid] = self.by_id.get(vid, 0) + 1
                import io

                environ["wsgi.input"] = io.BytesIO(body)
            return inner(environ, start_response)

        app.wsgi_app = counting


@dataclass
class Cloud:
    project: str
    db: firestore.Client
    p1: object
    calls: P1Calls
    publisher: pubsub_v1.PublisherClient

    def records(self, vaccination_id: str) -> int:
        state = self.p1.app.extensions["p1"]
        return sum(1 for v in state.vaccinations if v == vaccination_id)

    def record_count(self) -> int:
        return self.p1.app.extensions["p1"].record_counter

    def report(self, vaccination_id: str) -> dict:
        snapshot = self.db.collection(P1_REPORTS).document(vaccination_id).get()
        return snapshot.to_dict() if snapshot.exists else {}

    def faults(self, **switches) -> None:
        requests.put(f"{self.p1.base_url}/_faults", json=switches, timeout=5).raise_for_status()

    def publish(self, event: VaccinationCompleted) -> None:
        self.publisher.publish(
            self.publisher.topic_path(self.project, "appointment-events"),
            json.dumps(event.envelope()).encode(),
            event_type=event.event_type,
            event_id=event.event_id,
        ).result(timeout=10)


@pytest.fixture
def cloud(project: str, monkeypatch: pytest.MonkeyPatch):
    calls = P1Calls()
    with start_p1(token=TOKEN) as p1:
        calls.wrap(p1.app)
        monkeypatch.setenv("P1_BASE_URL", p1.base_url)
        monkeypatch.setenv("P1_TOKEN", TOKEN)
        wiring.reset()
        server = make_server("127.0.0.1", 0, gateway(), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        declared = load_declarations()
        # The declared subscription, with test-sized backoffs (production: 10 s .. 600 s).
        subscriptions = {
            REPORTS: declared.subscriptions[REPORTS].model_copy(
                update={
                    "min_retry_backoff": "0.5s",
                    "max_retry_backoff": "1s",
                    "max_delivery_attempts": 6,
                }
            ),
            INSPECT: declared.subscriptions[INSPECT],
        }
        provision_pubsub(
            project,
            f"http://127.0.0.1:{server.server_port}/_functions",
            declared.model_copy(update={"subscriptions": subscriptions}),
        )
        try:
            yield Cloud(
                project, firestore.Client(project=project), p1, calls, pubsub_v1.PublisherClient()
            )
        finally:
            server.shutdown()


def _event(db, serial: int, product: str = "jcovden") -> VaccinationCompleted:
    pesel = add_patient(db, serial=serial)
    return VaccinationCompleted(
        event_id=uuid.uuid4().hex,
        occurred_at=clock.now(),
        appointment_id=uuid.uuid4().hex,
        patient_key=key_of(pesel),
        product=product,
        lot_number="LOT-1",
        dose_number=1,
        dose_kind="primary",
        point_id="pt-00001",
        given_on=clock.today_warsaw(),
    )


def _envelope(event: VaccinationCompleted, attempt: int = 1) -> dict:
    return {
        "message": {
            "data": base64.b64encode(json.dumps(event.envelope()).encode()).decode(),
            "attributes": {"event_type": event.event_type, "event_id": event.event_id},
            "messageId": f"{event.event_id}-{attempt}",
            "publishTime": clock.now().isoformat(),
        },
        "subscription": f"projects/x/subscriptions/{REPORTS}",
    }


# -- item 4: crash between commit and publish ------------------------------------------------
def test_a_completion_whose_publish_died_is_reported_once_after_the_sweep(cloud, monkeypatch):
    world = make_world(cloud.project)
    pesel = world.pesels[0]
    visit = seed_visit(world.db, pesel, day=today_warsaw(), product="jcovden")
    # The process "dies" right after the commit: the immediate publish never happens.
    monkeypatch.setattr(outbox, "publish_now", lambda *a, **k: 0)
    world.write("POST", f"/v1/appointments/{visit}/check-in", "staff-x", {"pesel": pesel})
    done = world.write(
        "POST",
        f"/v1/appointments/{visit}/complete",
        "staff-x",
        {"product": "jcovden", "lot_number": "XD-1"},
    )
    assert done.status_code == 200, done.get_json()
    [payload] = events(world.db, "vaccination.completed")
    event = VaccinationCompleted.model_validate(
        {k: v for k, v in payload.items() if not k.startswith("_") and k not in DROPPED}
    )
    time.sleep(1.5)
    assert cloud.calls.by_id.get(visit) is None and cloud.record_count() == 0
    monkeypatch.undo()
    monkeypatch.setenv("P1_BASE_URL", cloud.p1.base_url)
    monkeypatch.setenv("P1_TOKEN", TOKEN)
    # After "restart": the scheduled relay_outbox sweep finds the event and publishes it.
    later = clock.now() + timedelta(minutes=2)
    assert outbox.sweep(world.db, wiring.publisher(), later)["published"] >= 1
    assert _wait_for(lambda: cloud.report(visit).get("status") == "reported")
    assert cloud.records(visit) == 1 and cloud.record_count() == 1
    record = cloud.p1.app.extensions["p1"].vaccinations[visit]["record"]
    assert (record["pesel"], record["lot_number"], record["product"]) == (pesel, "XD-1", "jcovden")
    # The sweep publishing the same event again (a crash between publish and delete): acked,
    # P1 not called again.
    calls = cloud.calls.by_id[visit]
    cloud.publish(event)
    time.sleep(2)
    assert cloud.calls.by_id[visit] == calls and cloud.record_count() == 1
    assert cloud.report(visit)["attempts"] == 1


# -- item 5: duplicates, concurrently and out of order ---------------------------------------
def test_duplicate_concurrent_out_of_order_deliveries_make_one_record_each(cloud):
    events = [_event(cloud.db, serial=i) for i in range(4)]
    deliveries = [e for e in events for _ in range(1 + events.index(e) % 3)]  # 1-3 copies
    deliveries.reverse()  # out of order
    client_app = gateway()

    def push(event):
        return Client(client_app).post(
            "/_functions/report_vaccination_to_p1", json=_envelope(event)
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = [r.status_code for r in pool.map(push, deliveries)]
    assert all(s < 300 for s in statuses), statuses
    for event in events:
        assert cloud.records(event.appointment_id) == 1
        assert cloud.report(event.appointment_id)["status"] == "reported"
    assert cloud.record_count() == len(events)
    # Once reported, a further copy is acknowledged without calling P1.
    before = dict(cloud.calls.by_id)
    assert push(events[0]).status_code < 300
    assert cloud.calls.by_id == before
    assert len(list(cloud.db.collection(P1_REPORTS).stream())) == len(events)


def test_other_event_types_are_acknowledged_untouched(cloud):
    event = _event(cloud.db, serial=9)
    envelope = _envelope(event)
    envelope["message"]["attributes"]["event_type"] = "appointment.booked"
    response = Client(gateway()).post("/_functions/report_vaccination_to_p1", json=envelope)
    assert response.status_code < 300
    assert cloud.calls.by_id == {} and not cloud.report(event.appointment_id)


# -- item 10: P1 down or slow ----------------------------------------------------------------
def test_p1_down_then_back_redelivers_until_one_record(cloud):
    event = _event(cloud.db, serial=1)
    cloud.faults(down=True, down_mode="close")
    cloud.publish(event)
    assert _wait_for(lambda: cloud.report(event.appointment_id).get("attempts", 0) >= 2, 30)
    assert cloud.record_count() == 0
    cloud.faults()  # P1 is back
    assert _wait_for(lambda: cloud.report(event.appointment_id).get("status") == "reported", 30)
    assert cloud.records(event.appointment_id) == 1 and cloud.record_count() == 1


def test_p1_slow_beyond_our_timeout_records_once_despite_the_retry(cloud):
    event = _event(cloud.db, serial=2)
    # Slower than the client's 5 s read timeout: P1 stores the record, we never see the answer.
    cloud.faults(latency_ms=5600)
    cloud.publish(event)
    assert _wait_for(lambda: cloud.report(event.appointment_id).get("last_error"), 20)
    cloud.faults()
    assert _wait_for(lambda: cloud.report(event.appointment_id).get("status") == "reported", 30)
    assert cloud.calls.by_id[event.appointment_id] >= 2  # it was really retried
    assert cloud.records(event.appointment_id) == 1 and cloud.record_count() == 1
    assert cloud.report(event.appointment_id)["p1_ack"]["duplicate"] is True


# -- dead letters and replay -----------------------------------------------------------------
def test_a_4xx_is_dead_lettered_at_once_and_replayed_after_the_fix(cloud, monkeypatch):
    event = _event(cloud.db, serial=3)
    monkeypatch.setenv("P1_TOKEN", "a-wrong-token")  # the cause: our credentials
    wiring.reset()
    cloud.publish(event)
    assert _wait_for(lambda: cloud.report(event.appointment_id).get("status") == "rejected")
    assert cloud.report(event.appointment_id)["error"] == {
        "code": "unauthorized",
        "status": 401,
    } or (cloud.report(event.appointment_id)["error"]["status"] == 401)
    letters = _wait_for(lambda: peek(cloud.project, INSPECT, pull_timeout_s=2), 20)
    assert len(letters) == 1
    assert letters[0].attributes["event_id"] == event.event_id
    assert (
        letters[0].attributes["dead_letter_reason"]
        and letters[0].attributes["peer_status"] == "401"
    )
    assert cloud.record_count() == 0
    monkeypatch.setenv("P1_TOKEN", TOKEN)  # fixed
    wiring.reset()
    assert (
        _wait_for(
            lambda: replay(cloud.project, INSPECT, "appointment-events", pull_timeout_s=2), 20
        )
        == 1
    )
    assert _wait_for(lambda: cloud.report(event.appointment_id).get("status") == "reported")
    assert cloud.records(event.appointment_id) == 1 and cloud.record_count() == 1
    assert replay(cloud.project, INSPECT, "appointment-events", pull_timeout_s=2) == 0  # consumed


def test_exhausted_retries_land_in_the_dead_letter_topic_and_replay_once(cloud):
    event = _event(cloud.db, serial=4)
    cloud.faults(down=True, down_mode="503")
    cloud.publish(event)
    letters = _wait_for(lambda: peek(cloud.project, INSPECT, pull_timeout_s=2), 60, 0.5)
    assert letters and letters[0].attributes["event_id"] == event.event_id
    assert cloud.report(event.appointment_id)["attempts"] >= 5
    cloud.faults()
    assert replay(cloud.project, INSPECT, "appointment-events", pull_timeout_s=2) == 1
    assert _wait_for(lambda: cloud.report(event.appointment_id).get("status") == "reported")
    assert cloud.records(event.appointment_id) == 1 and cloud.record_count() == 1
