"""The audit trail: who acted on a patient's data, why, and when.

Every action by an agent, point staff or an admin on a patient's bookings is written in the
same commit as the change itself, so a change without its audit entry cannot exist. Patients
acting on their own bookings are not audited here (their actions are the events themselves).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from google.cloud import firestore

from common.adapters.firestore_store import AUDIT_LOG

AUDITED_ROLES = frozenset({"agent", "staff", "admin"})
# Six years: the general limitation period for claims (Civil Code art. 118), so an access to or
# a change of a patient's data can be shown for as long as it can be disputed; then Firestore's
# TTL deletes the entry (docs/retention.md).
AUDIT_KEEP = timedelta(days=6 * 366)


class _Actor(Protocol):
    uid: str
    role: str
    point_id: str | None
    reason: str | None


class _Subject(Protocol):
    appointment_id: str
    patient_key: str


def audit_entry(
    actor: _Actor, action: str, subjects: Sequence[_Subject], now: datetime
) -> dict[str, Any]:
    return {
        "actor_uid": actor.uid,
        "actor_role": actor.role,
        "actor_point_id": actor.point_id,
        "reason": actor.reason,
        "action": action,
        "appointment_ids": [s.appointment_id for s in subjects],
        "patient_keys": sorted({s.patient_key for s in subjects}),
        "at": now,
        "expires_at": now + AUDIT_KEEP,
    }


def record(
    batch: firestore.WriteBatch,
    client: firestore.Client,
    actor: _Actor,
    action: str,
    subjects: Sequence[_Subject],
    now: datetime,
) -> None:
    if actor.role not in AUDITED_ROLES:
        return
    batch.create(
        client.collection(AUDIT_LOG).document(uuid.uuid4().hex),
        audit_entry(actor, action, subjects, now),
    )
