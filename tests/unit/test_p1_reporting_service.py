"""P1Reporter against the in-memory unit of work, a stand-in P1 and a stand-in publisher.

The stand-in P1 keeps one record per vaccination id (a repeat gets the first back with
`duplicate: true`), as the real one does. Checked: one record per vaccination under
redelivery, the claim already done, a 4xx dead-lettered then recorded, P1 down (the 503-type
error, nothing recorded as reported), and Firestore down before and after the call to P1.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from common.adapters.firestore_store import PATIENTS
from common.adapters.http_errors import PeerAuthError, PeerProtocolError
from common.adapters.p1_client import P1Ack, P1VaccinationRecord
from common.domain.errors import DependencyUnavailableError
from common.domain.events import AppointmentBooked, VaccinationCompleted
from common.domain.pesel import make_pesel
from common.services.p1_reporting import P1_DEAD_LETTER_TOPIC, P1_REPORTS, P1Reporter
from tests.support.fake_store import FakeUnitsOfWork

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
PESEL = make_pesel(date(1944, 5, 14), "M", 135)
PATIENT = "patient-key-1"


class FakeP1:
    def __init__(self) -> None:
        self.records: dict[str, P1VaccinationRecord] = {}
        self.calls = 0
        self.fault: Exception | None = None
        self.after_call: Any = None

    def report_vaccination(self, record: P1VaccinationRecord) -> P1Ack:
        self.calls += 1
        if self.fault is not None:
            raise self.fault
        duplicate = record.vaccination_id in self.records
        self.records.setdefault(record.vaccination_id, record)
        if self.after_call is not None:
            hook, self.after_call = self.after_call, None
            hook()
        return P1Ack(
            vaccination_id=record.vaccination_id,
            p1_record_id=f"P1-{record.vaccination_id[:8]}",
            received_at=NOW,
            duplicate=duplicate,
        )


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        self.published.append((topic, data, attributes))
        return str(len(self.published))


class World:
    def __init__(self) -> None:
        self.units = FakeUnitsOfWork(now=lambda: NOW)
        self.store = self.units.store
        self.p1 = FakeP1()
        self.publisher = FakePublisher()
        self.reporter = P1Reporter(self.units, self.p1, self.publisher)  # type: ignore[arg-type]
        self.store.put(PATIENTS, PATIENT, {"patient_key": PATIENT, "pesel": PESEL})

    def report(self, vaccination_id: str) -> dict[str, Any]:
        return self.store.data(P1_REPORTS, vaccination_id) or {}

    def dead_letters(self) -> list[dict[str, str]]:
        return [a for topic, _, a in self.publisher.published if topic == P1_DEAD_LETTER_TOPIC]


@pytest.fixture
def world() -> World:
    return World()


def completed(patient_key: str = PATIENT) -> VaccinationCompleted:
    return VaccinationCompleted(
        event_id=uuid.uuid4().hex,
        occurred_at=NOW,
        appointment_id=uuid.uuid4().hex,
        patient_key=patient_key,
        product="comirnaty",
        lot_number="FK1234",
        dose_number=1,
        dose_kind="primary",
        point_id="pt-00001",
        given_on=date(2026, 12, 2),
    )


def push(event: Any, **attributes: str) -> dict[str, Any]:
    return {
        "message": {
            "data": base64.b64encode(json.dumps(event.envelope()).encode()).decode(),
            "attributes": {
                "event_type": event.event_type,
                "event_id": event.event_id,
                **attributes,
            },
        }
    }


# -- the decisions ------------------------------------------------------------------------------
def test_a_completion_is_reported_once_however_often_it_is_delivered(world: World):
    event = completed()
    outcomes = [world.reporter.handle(push(event), NOW) for _ in range(3)]
    assert outcomes == ["reported", "already_reported", "already_reported"]
    assert world.p1.calls == 1
    (record,) = world.p1.records.values()
    assert (record.pesel, record.lot_number, record.vaccination_id) == (
        PESEL,
        "FK1234",
        event.appointment_id,
    )
    report = world.report(event.appointment_id)
    assert report["status"] == "reported" and report["attempts"] == 1
    assert report["p1_ack"]["duplicate"] is False
    assert PESEL not in json.dumps(report, default=str)  # never stored


def test_other_event_types_are_acknowledged_untouched(world: World):
    other = AppointmentBooked(
        event_id="e1",
        occurred_at=NOW,
        appointment_id="a" * 32,
        series_id="s",
        patient_key=PATIENT,
        point_id="pt-00001",
        slot_id="pt-00001_20261210_1000_comirnaty",
        product="comirnaty",
        dose_number=1,
        starts_at=NOW,
        channel="portal",
    )
    assert world.reporter.handle(push(other), NOW) == "ignored"
    assert world.p1.calls == 0 and world.store.commits == 0


def test_a_malformed_message_is_dead_lettered_not_retried(world: World):
    data = {"message": {"data": base64.b64encode(b"not json").decode(), "attributes": {}}}
    assert world.reporter.handle(data, NOW) == "malformed"
    assert [a["dead_letter_reason"] for a in world.dead_letters()] == ["malformed_message"]
    assert world.store.commits == 0


def test_a_patient_unknown_to_us_is_dead_lettered_and_rejected_without_calling_p1(world: World):
    event = completed(patient_key="nobody")
    assert world.reporter.handle(push(event), NOW) == "rejected"
    assert world.p1.calls == 0
    assert [a["dead_letter_reason"] for a in world.dead_letters()] == ["patient_unknown"]
    assert world.report(event.appointment_id)["error"] == {
        "code": "patient_unknown",
        "status": None,
    }


# -- a claim already taken ------------------------------------------------------------------------
def test_a_rejected_report_is_acked_and_only_a_replay_tries_again(world: World):
    event = completed()
    world.p1.fault = PeerAuthError("P1", 401, "unauthorized", "bad token")
    assert world.reporter.handle(push(event), NOW) == "rejected"
    (letter,) = world.dead_letters()
    assert (letter["dead_letter_reason"], letter["peer_status"]) == ("unauthorized", "401")
    assert letter["event_id"] == event.event_id
    report = world.report(event.appointment_id)
    assert report["status"] == "rejected" and report["error"]["status"] == 401
    # A plain redelivery: in the dead letters already, P1 not asked again.
    assert world.reporter.handle(push(event), NOW) == "already_rejected"
    assert world.p1.calls == 1
    # The operator's replay, once the token is fixed.
    world.p1.fault = None
    assert world.reporter.handle(push(event, replay="true"), NOW) == "reported"
    assert world.p1.calls == 2 and len(world.p1.records) == 1
    assert world.report(event.appointment_id)["status"] == "reported"


# -- P1 down ---------------------------------------------------------------------------------------
def test_p1_down_raises_and_records_the_attempt_not_a_report(world: World):
    event = completed()
    world.p1.fault = DependencyUnavailableError("P1 is unavailable (timeout)")
    for attempt in (1, 2):
        with pytest.raises(DependencyUnavailableError):
            world.reporter.handle(push(event), NOW)
        report = world.report(event.appointment_id)
        assert report.get("status") == "pending" and report["attempts"] == attempt
        assert report["last_error"]["kind"] == "DependencyUnavailableError"
    assert world.dead_letters() == []  # Pub/Sub redelivers; dead letters only after its limit
    world.p1.fault = None
    assert world.reporter.handle(push(event), NOW) == "reported"
    report = world.report(event.appointment_id)
    assert report["attempts"] == 3 and report["last_error"] is None


def test_an_unreadable_answer_is_a_retryable_error(world: World):
    event = completed()
    world.p1.fault = PeerProtocolError("P1", 200, "invalid_json", "unreadable")
    with pytest.raises(DependencyUnavailableError):
        world.reporter.handle(push(event), NOW)
    assert world.report(event.appointment_id)["last_error"]["kind"] == "PeerProtocolError"
    assert world.dead_letters() == []


# -- Firestore down -----------------------------------------------------------------------------
def test_firestore_down_at_the_claim_calls_no_one(world: World):
    event = completed()
    world.store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        world.reporter.handle(push(event), NOW)
    assert world.p1.calls == 0 and world.report(event.appointment_id) == {}
    assert world.reporter.handle(push(event), NOW) == "reported"


def test_firestore_down_after_p1_took_it_reports_again_and_p1_keeps_one_record(world: World):
    event = completed()
    world.p1.after_call = lambda: setattr(world.store, "fail_next_commits", 1)
    with pytest.raises(gexc.ServiceUnavailable):
        world.reporter.handle(push(event), NOW)
    assert world.report(event.appointment_id).get("status") == "pending"  # not recorded as done
    assert world.reporter.handle(push(event), NOW) == "reported"
    assert world.p1.calls == 2 and len(world.p1.records) == 1
    assert world.report(event.appointment_id)["p1_ack"]["duplicate"] is True
