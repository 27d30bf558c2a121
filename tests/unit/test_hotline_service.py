"""HotlineService against the in-memory unit of work: a look-up reads and writes its audit entry.

Pure tests (no emulator): a look-up by a full PESEL returns the patient's record and commits
exactly one document, its audit entry; a refusal writes nothing; an outage leaves nothing.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, time, timedelta

import pytest
from google.api_core import exceptions as gexc
from pydantic import ValidationError

from common.adapters.firestore_store import APPOINTMENTS, AUDIT_LOG, REFERRALS, VACCINATIONS
from common.domain.appointments import Appointment
from common.domain.calendar import SlotRef
from common.domain.errors import ForbiddenError, InvalidPeselError
from common.domain.pesel import make_pesel, parse_pesel, pesel_key
from common.services.booking import Actor
from common.services.hotline import HotlineService, LookupRequest
from tests.support.fake_store import FakeUnitsOfWork

SECRET = b"unit-test-pesel-secret"
NOW = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
TODAY = date(2026, 12, 2)
PESEL = make_pesel(date(1944, 5, 14), "M", 7)
OTHER = make_pesel(date(1980, 5, 17), "F", 8)
AGENT = Actor(uid="agent-1", role="agent", reason="caller asks")


def key_of(pesel: str) -> str:
    return pesel_key(parse_pesel(pesel, TODAY), SECRET)


def _appointment(pesel: str, day: date, dose_number: int) -> Appointment:
    ref = SlotRef("pt-00001", day, time(9, 0), "comirnaty")
    return Appointment(
        appointment_id=f"{dose_number:032d}",
        series_id="s" * 32,
        patient_key=key_of(pesel),
        referral_id="ref-1",
        dose_kind="primary",
        dose_number=dose_number,
        product="comirnaty",
        point_id="pt-00001",
        slot_id=ref.slot_id,
        seat_id=ref.seat_id(0),
        starts_at=ref.starts_at,
        day=day,
        channel="portal",
        booked_by_role="patient",
        created_at=NOW,
        updated_at=NOW,
    )


@pytest.fixture
def units() -> FakeUnitsOfWork:
    units = FakeUnitsOfWork(now=lambda: NOW)
    store = units.store
    # Dose 2 first in the store: the answer lists by date, whatever the store's order.
    for appointment in (
        _appointment(PESEL, TODAY + timedelta(days=40), 2),
        _appointment(PESEL, TODAY + timedelta(days=5), 1),
        _appointment(OTHER, TODAY + timedelta(days=5), 3),
    ):
        store.put(APPOINTMENTS, appointment.appointment_id, appointment.to_document())
    store.put(
        REFERRALS,
        "ref-1",
        {
            "patient_key": key_of(PESEL),
            "referral": {"referral_id": "ref-1", "kind": "primary", "valid_from": "2026-11-01"},
        },
    )
    store.put(
        VACCINATIONS,
        "v-1",
        {
            "vaccination_id": "v-1",
            "patient_key": key_of(PESEL),
            "dose": {
                "product_code": "jcovden",
                "kind": "primary",
                "dose_number": 1,
                "given_on": "2026-05-01",
            },
            "point_id": "pt-00002",
            "lot_number": "XD-1",
        },
    )
    return units


def test_a_lookup_returns_the_record_and_commits_only_its_audit_entry(
    units: FakeUnitsOfWork,
) -> None:
    store = units.store
    before = copy.deepcopy(store.documents)
    found = HotlineService(units, SECRET).lookup(
        AGENT, LookupRequest(pesel=PESEL, reason="caller asks"), NOW
    )
    assert found["patient"] == {"masked_pesel": PESEL[:6] + "*****", "birth_year": 1944, "sex": "M"}
    assert [a["dose_number"] for a in found["appointments"]] == [1, 2]
    assert [r["referral_id"] for r in found["referrals"]] == ["ref-1"]
    assert [v["vaccination_id"] for v in found["vaccinations"]] == ["v-1"]
    assert found["vaccinations"][0]["leftover_dose"] is False
    assert store.commits == 1
    added = {k: v for k, v in store.documents.items() if k not in before}
    assert all(store.documents[k] == v for k, v in before.items())
    [((collection, _), (entry, _))] = added.items()
    assert collection == AUDIT_LOG
    assert entry["action"] == "patient.lookup" and entry["reason"] == "caller asks"
    assert entry["patient_keys"] == [key_of(PESEL)] and entry["actor_role"] == "agent"
    assert entry["appointment_ids"] == [f"{1:032d}", f"{2:032d}"]


def test_a_lookup_of_someone_unknown_is_still_audited_by_patient(units: FakeUnitsOfWork) -> None:
    unknown = make_pesel(date(1990, 1, 1), "F", 9)
    found = HotlineService(units, SECRET).lookup(
        AGENT, LookupRequest(pesel=unknown, reason="caller asks"), NOW
    )
    assert found["appointments"] == [] and found["referrals"] == []
    [entry] = units.store.collection(AUDIT_LOG).values()
    assert entry["patient_keys"] == [key_of(unknown)] and entry["appointment_ids"] == []


@pytest.mark.parametrize(
    ("actor", "pesel", "error"),
    [
        (Actor(uid="staff-x", role="staff", point_id="pt-00001"), PESEL, ForbiddenError),
        (Actor(uid="patient-1", role="patient"), PESEL, ForbiddenError),
        (AGENT, PESEL[:-1] + str((int(PESEL[-1]) + 1) % 10), InvalidPeselError),
    ],
)
def test_lookup_refusals_write_nothing(units: FakeUnitsOfWork, actor, pesel, error) -> None:
    before = copy.deepcopy(units.store.documents)
    with pytest.raises(error):
        HotlineService(units, SECRET).lookup(
            actor, LookupRequest(pesel=pesel, reason="caller asks"), NOW
        )
    assert units.store.documents == before and units.store.commits == 0


def test_a_lookup_needs_a_whole_pesel_and_a_reason() -> None:
    with pytest.raises(ValidationError):
        LookupRequest(pesel=PESEL[:6], reason="caller asks")
    with pytest.raises(ValidationError):
        LookupRequest(pesel=PESEL, reason="")


def test_a_lookup_during_an_outage_writes_nothing(units: FakeUnitsOfWork) -> None:
    before = copy.deepcopy(units.store.documents)
    units.store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        HotlineService(units, SECRET).lookup(
            AGENT, LookupRequest(pesel=PESEL, reason="caller asks"), NOW
        )
    assert units.store.documents == before


def test_a_lookup_whose_commit_was_aborted_is_retried_once_audited(
    units: FakeUnitsOfWork,
) -> None:
    units.store.fail_next_commits, units.store.fault = 1, gexc.Aborted
    HotlineService(units, SECRET).lookup(
        AGENT, LookupRequest(pesel=PESEL, reason="caller asks"), NOW
    )
    assert units.attempts == 2 and units.store.commits == 1
    assert len(units.store.collection(AUDIT_LOG)) == 1
