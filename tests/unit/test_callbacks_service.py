"""CallbackService against the in-memory unit of work: leave, list and close callbacks.

Pure tests (no emulator): leaving a callback is one commit of the callback and its audit entry
(none for a patient acting for themself); closing one updates it only as it was read, and a
callback closed meanwhile by another agent is read again and refused; refusals and outages
write nothing; a request racing its twin answers with the twin's stored response.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from common.adapters.firestore_store import AUDIT_LOG, CALLBACKS, IDEMPOTENCY
from common.domain.errors import (
    CallbackNotFoundError,
    ForbiddenError,
    InvalidStateTransitionError,
    UnknownProductError,
    ValidationFailedError,
)
from common.domain.pesel import make_pesel, parse_pesel, pesel_key
from common.domain.rulebook import load_rule_book
from common.services.booking import Actor
from common.services.callbacks import (
    CallbackQuery,
    CallbackRequest,
    CallbackService,
    CloseCallbackRequest,
)
from common.services.idempotency import IdempotencyScope, IdempotentReplay, replay
from tests.support.fake_store import FakeFirestore, FakeUnitsOfWork

SECRET = b"unit-test-pesel-secret"
NOW = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
TODAY = date(2026, 12, 2)
PESEL = make_pesel(date(1980, 5, 17), "F", 1)
OTHER = make_pesel(date(1980, 5, 17), "F", 2)
AGENT = Actor(uid="agent-1", role="agent", reason="mornings only")
AGENT_2 = Actor(uid="agent-2", role="agent", reason="booked")
PATIENT = Actor(uid="patient-1", role="patient")


def key_of(pesel: str) -> str:
    return pesel_key(parse_pesel(pesel, TODAY), SECRET)


def before_next_commit(store: FakeFirestore, change: Callable[[], None]) -> None:
    """Another request's change lands between the service's reads and its commit."""
    original = store.commit

    def racing(writes: Any, now: datetime) -> None:
        store.commit = original  # type: ignore[method-assign]
        change()
        original(writes, now)

    store.commit = racing  # type: ignore[method-assign]


@pytest.fixture
def units() -> FakeUnitsOfWork:
    return FakeUnitsOfWork(now=lambda: NOW)


@pytest.fixture
def service(units: FakeUnitsOfWork) -> CallbackService:
    return CallbackService(units, load_rule_book(), SECRET)


def _leave(service: CallbackService, **fields: Any) -> dict[str, Any]:
    body = CallbackRequest(pesel=PESEL, phone="+48 600 123 456", **fields)
    return service.request(AGENT, None, body, NOW).body["callback"]


def test_an_agent_leaves_a_callback_in_one_commit_with_its_audit_entry(
    units: FakeUnitsOfWork, service: CallbackService
) -> None:
    body = CallbackRequest(
        pesel=PESEL, phone="+48 600 123 456", product="comirnaty", preferred_postcode="31-001"
    )
    response = service.request(AGENT, None, body, NOW)
    assert response.status == 201
    callback = response.body["callback"]
    assert callback["phone"] == "+48600123456" and callback["masked_pesel"] == PESEL[:6] + "*****"
    assert units.store.commits == 1
    [(doc_id, document)] = units.store.collection(CALLBACKS).items()
    assert doc_id == callback["callback_id"] and PESEL not in doc_id
    # Never the whole PESEL (issue 13): the keyed id and the masked form only.
    assert "pesel" not in document and PESEL not in str(document)
    assert document["masked_pesel"] == PESEL[:6] + "*****"
    assert document["patient_key"] == key_of(PESEL) and document["expires_at"] > NOW
    [entry] = units.store.collection(AUDIT_LOG).values()
    assert entry["action"] == "callback.request" and entry["patient_keys"] == [key_of(PESEL)]
    assert entry["details"] == {"callback": doc_id} and entry["appointment_ids"] == []


def test_a_patient_asks_for_themself_only_and_is_not_audited(
    units: FakeUnitsOfWork, service: CallbackService
) -> None:
    mine = service.request(PATIENT, PESEL, CallbackRequest(phone="+48600123456"), NOW)
    assert mine.status == 201
    [document] = units.store.collection(CALLBACKS).values()
    assert document["patient_key"] == key_of(PESEL)
    assert units.store.collection(AUDIT_LOG) == {}
    before = copy.deepcopy(units.store.documents)
    with pytest.raises(ForbiddenError):
        service.request(PATIENT, PESEL, CallbackRequest(pesel=OTHER, phone="+48600123456"), NOW)
    assert units.store.documents == before


@pytest.mark.parametrize(
    ("actor", "fields", "error"),
    [
        (AGENT, {"pesel": None}, ValidationFailedError),
        (AGENT, {"product": "sputnik"}, UnknownProductError),
        (Actor(uid="staff-x", role="staff", point_id="pt-00001"), {}, ForbiddenError),
    ],
)
def test_refused_callbacks_write_nothing(
    units: FakeUnitsOfWork, service: CallbackService, actor, fields, error
) -> None:
    body = CallbackRequest(**({"pesel": PESEL, "phone": "+48600123456"} | fields))
    with pytest.raises(error):
        service.request(actor, None, body, NOW)
    assert units.store.documents == {} and units.store.commits == 0


def test_the_list_shows_open_callbacks_oldest_first_to_agents_only(
    units: FakeUnitsOfWork, service: CallbackService
) -> None:
    first = _leave(service)
    second = service.request(
        AGENT,
        None,
        CallbackRequest(pesel=OTHER, phone="+48600123457"),
        NOW.replace(hour=12),
    ).body["callback"]
    listed = service.list(AGENT, CallbackQuery())
    assert [c["callback_id"] for c in listed["callbacks"]] == [
        first["callback_id"],
        second["callback_id"],
    ]
    assert PESEL not in str(listed)
    assert service.list(AGENT, CallbackQuery(status="done")) == {"callbacks": []}
    with pytest.raises(ForbiddenError):
        service.list(PATIENT, CallbackQuery())
    assert units.store.commits == 2  # the two requests; listing writes nothing


def test_closing_a_callback_is_one_commit_and_a_second_close_is_refused(
    units: FakeUnitsOfWork, service: CallbackService
) -> None:
    callback_id = _leave(service)["callback_id"]
    done = service.close(AGENT_2, callback_id, CloseCallbackRequest(outcome="booked"), NOW)
    assert done.body["callback"]["status"] == "done"
    assert done.body["callback"]["outcome"] == "booked"
    assert units.store.commits == 2
    document = units.store.data(CALLBACKS, callback_id)
    assert document is not None and document["done_by_uid"] == AGENT_2.uid
    [entry] = [
        a for a in units.store.collection(AUDIT_LOG).values() if a["action"] == "callback.done"
    ]
    assert entry["details"] == {"callback": callback_id, "outcome": "booked"}
    before = copy.deepcopy(units.store.documents)
    with pytest.raises(InvalidStateTransitionError):
        service.close(AGENT, callback_id, CloseCallbackRequest(outcome="other"), NOW)
    assert units.store.documents == before


def test_closing_refusals_write_nothing(units: FakeUnitsOfWork, service: CallbackService) -> None:
    callback_id = _leave(service)["callback_id"]
    before = copy.deepcopy(units.store.documents)
    with pytest.raises(CallbackNotFoundError):
        service.close(AGENT, "0" * 32, CloseCallbackRequest(outcome="other"), NOW)
    with pytest.raises(CallbackNotFoundError):
        service.close(AGENT, "nope", CloseCallbackRequest(outcome="other"), NOW)
    with pytest.raises(ForbiddenError):
        service.close(PATIENT, callback_id, CloseCallbackRequest(outcome="other"), NOW)
    assert units.store.documents == before


def test_a_callback_closed_meanwhile_is_read_again_and_refused(
    units: FakeUnitsOfWork, service: CallbackService
) -> None:
    callback_id = _leave(service)["callback_id"]
    before_next_commit(
        units.store,
        lambda: service.close(AGENT_2, callback_id, CloseCallbackRequest(outcome="declined"), NOW),
    )
    with pytest.raises(InvalidStateTransitionError) as refused:
        service.close(AGENT, callback_id, CloseCallbackRequest(outcome="booked"), NOW)
    assert refused.value.message == "the callback is already done"
    document = units.store.data(CALLBACKS, callback_id)
    assert document is not None and document["outcome"] == "declined"
    assert units.store.commits == 2  # the request and the other agent's close


def test_a_stale_close_is_retried_from_its_reads(
    units: FakeUnitsOfWork, service: CallbackService
) -> None:
    callback_id = _leave(service)["callback_id"]
    units.store.fail_next_commits, units.store.fault = 1, gexc.FailedPrecondition
    done = service.close(AGENT, callback_id, CloseCallbackRequest(outcome="booked"), NOW)
    assert done.body["callback"]["status"] == "done"
    assert units.store.commits == 2
    assert len(units.store.collection(AUDIT_LOG)) == 2


def test_an_outage_writes_nothing(units: FakeUnitsOfWork, service: CallbackService) -> None:
    units.store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        _leave(service)
    assert units.store.documents == {}
    callback_id = _leave(service)["callback_id"]
    before = copy.deepcopy(units.store.documents)
    units.store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        service.close(AGENT, callback_id, CloseCallbackRequest(outcome="booked"), NOW)
    assert units.store.documents == before


def test_a_request_racing_its_twin_replays_the_twins_answer(
    units: FakeUnitsOfWork, service: CallbackService
) -> None:
    idem = IdempotencyScope("key-1", "fingerprint-1", NOW)
    body = CallbackRequest(pesel=PESEL, phone="+48600123456")
    twin: list[Any] = []
    before_next_commit(
        units.store, lambda: twin.append(service.request(AGENT, None, body, NOW, idem))
    )
    with pytest.raises(IdempotentReplay) as replayed:
        service.request(AGENT, None, body, NOW, idem)
    assert replay(replayed.value.stored, "fingerprint-1") == twin[0]
    assert units.store.data(IDEMPOTENCY, "key-1") is not None
    assert len(units.store.collection(CALLBACKS)) == 1 and units.store.commits == 1
