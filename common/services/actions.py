"""Small pieces every staff, hotline and admin use case shares: subjects, audit, loading."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from google.cloud import firestore

from common.adapters.firestore_store import (
    AUDIT_LOG,
    AVAILABILITY,
    PATIENTS,
    get_many,
    merge_increments,
)
from common.domain.appointments import Appointment
from common.domain.calendar import SlotRef
from common.domain.errors import InvalidPeselError
from common.domain.pesel import Pesel, parse_pesel
from common.services import audit
from common.services.availability import changed


class _Actor(Protocol):
    uid: str
    role: str
    point_id: str | None
    reason: str | None


@dataclass(frozen=True)
class Subject:
    """Whom an audited action concerned: a patient, and the visit if there is one."""

    appointment_id: str
    patient_key: str


def audit_action(
    batch: firestore.WriteBatch,
    client: firestore.Client,
    actor: _Actor,
    action: str,
    subjects: Sequence[Subject | Appointment],
    now: datetime,
    **details: Any,
) -> None:
    """One audit entry in the caller's batch (agents, staff, admins; patients are not audited)."""
    if actor.role not in audit.AUDITED_ROLES:
        return
    entry = audit.audit_entry(actor, action, subjects, now)
    entry["appointment_ids"] = [s.appointment_id for s in subjects if s.appointment_id]
    if details:
        entry["details"] = details
    batch.create(client.collection(AUDIT_LOG).document(uuid.uuid4().hex), entry)


def write_free_increments(
    batch: firestore.WriteBatch,
    client: firestore.Client,
    changes: Sequence[tuple[str, int]],
    extra: dict[str, dict[str, Any]] | None = None,
) -> None:
    """(slot_id, delta) as blind Increments of `free`, one update per availability document;
    `extra` adds other fields of the same documents to the same update."""
    updates = merge_increments(
        (ref.point_id, ref.day_key, ref.slot_key, delta)
        for ref, delta in ((SlotRef.parse(s), d) for s, d in changes)
    )
    for point_id, fields in (extra or {}).items():
        updates.setdefault(point_id, {}).update(fields)
    for point_id, fields in updates.items():
        if fields:
            batch.update(client.collection(AVAILABILITY).document(point_id), changed(fields))


def patients_by_key(
    client: firestore.Client, keys: Sequence[str], today: Any
) -> dict[str, Pesel | None]:
    """The patients' PESELs (from `patients/`), parsed; unknown or unreadable ones map to None."""
    refs = [client.collection(PATIENTS).document(k) for k in dict.fromkeys(keys)]
    found = get_many(client, refs)
    result: dict[str, Pesel | None] = {}
    for ref in refs:
        data = found.get(ref.path)
        pesel = None
        if data and isinstance(data.get("pesel"), str):
            try:
                pesel = parse_pesel(data["pesel"], today)
            except InvalidPeselError:
                pesel = None
        result[ref.id] = pesel
    return result
