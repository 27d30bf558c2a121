"""Small pieces every staff, hotline and admin use case shares: subjects and patients.

A use case that writes commits through one unit of work (common/services/unit_of_work.py),
which owns its audit entry (`uow.audit`), its events and its free-seat changes
(`stage_free_changes`, common/services/availability.py); reads go through the unit of work
too. What is left here is what several use cases read or name the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore

from common.adapters.firestore_store import PATIENTS
from common.services.patients import PatientFacts, facts_of
from common.services.unit_of_work import FirestoreUnitOfWork, UnitOfWork


@dataclass(frozen=True)
class Subject:
    """Whom an audited action concerned: a patient, and the visit if there is one."""

    appointment_id: str
    patient_key: str


def _reader(source: UnitOfWork | firestore.Client) -> UnitOfWork:
    # A bare client is still accepted from use cases that have not moved to the unit of work.
    if isinstance(source, firestore.Client):
        return FirestoreUnitOfWork(source, None)
    return source


def patients_by_key(
    reader: UnitOfWork | firestore.Client, keys: Sequence[str], today: Any
) -> dict[str, PatientFacts | None]:
    """The patients' birth dates and sexes (from `patients/`, one batched read through the
    caller's unit of work: no PESEL is read back); unknown ones map to None."""
    unique = list(dict.fromkeys(keys))
    if not unique:
        return {}
    found = _reader(reader).get_all([(PATIENTS, k) for k in unique])
    result: dict[str, PatientFacts | None] = {}
    for key in unique:
        stored = found.get((PATIENTS, key))
        result[key] = facts_of(stored.data if stored is not None else None, today)
    return result
