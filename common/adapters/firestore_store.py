"""Firestore collections and the few calls every service makes on them.

Every RPC carries a short retry budget and timeout, so that an emulator (or Firestore) that
is down turns into a 503 with Retry-After within seconds instead of a request that hangs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from google.api_core import retry as api_retry
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

POINTS = "points"
POINT_DIRECTORY = "point_directory"
AVAILABILITY = "availability"
SEATS = "seats"
APPOINTMENTS = "appointments"
ACTIVE_DOSES = "active_doses"
PATIENTS = "patients"
REFERRALS = "referrals"
VACCINATIONS = "vaccinations"
OUTBOX = "outbox"
IDEMPOTENCY = "idempotency_keys"
INTEGRATION_LOG = "integration_log"
AUDIT_LOG = "audit_log"

RPC_TIMEOUT_S = 6.0
RPC_RETRY = api_retry.Retry(
    initial=0.1,
    maximum=1.0,
    multiplier=2.0,
    timeout=RPC_TIMEOUT_S,
    predicate=api_retry.if_transient_error,
)
RPC = {"retry": RPC_RETRY, "timeout": RPC_TIMEOUT_S}


def free_seats_field(day_key: str, slot_key: str) -> str:
    # Slot keys start with a digit ("1100_comirnaty"), so the path must be quoted.
    return FieldPath("days", day_key, slot_key, "free").to_api_repr()


def slot_field(day_key: str, slot_key: str) -> str:
    return FieldPath("days", day_key, slot_key).to_api_repr()


def get_many(
    client: firestore.Client, refs: Iterable[firestore.DocumentReference]
) -> dict[str, dict[str, Any] | None]:
    """Read documents in one BatchGetDocuments; missing ones map to None."""
    refs = list(refs)
    if not refs:
        return {}
    found: dict[str, dict[str, Any] | None] = {ref.path: None for ref in refs}
    for snapshot in client.get_all(refs, **RPC):
        if snapshot.exists:
            found[snapshot.reference.path] = snapshot.to_dict()
    return found


def read_only_data(snapshot: Any) -> dict[str, Any] | None:
    """A snapshot's fields without to_dict()'s deep copy, for callers that only read them.

    to_dict() deep-copies the whole map: for an availability document (hundreds of slots)
    that copy was a third of a search's CPU time. The private attribute is guarded, with the
    public call as the fallback, so a client upgrade can only cost speed, not correctness.
    """
    if not snapshot.exists:
        return None
    data = getattr(snapshot, "_data", None)
    return data if isinstance(data, dict) else snapshot.to_dict()


def get_with_version(
    ref: firestore.DocumentReference,
) -> tuple[dict[str, Any] | None, datetime | None]:
    snapshot = ref.get(**RPC)
    if not snapshot.exists:
        return None, None
    return snapshot.to_dict(), snapshot.update_time


def merge_increments(changes: Iterable[tuple[str, str, str, int]]) -> dict[str, dict[str, Any]]:
    """(point_id, day_key, slot_key, delta) → per-point update dicts with summed Increments."""
    summed: dict[tuple[str, str], int] = {}
    for point_id, dkey, skey, delta in changes:
        field = free_seats_field(dkey, skey)
        summed[(point_id, field)] = summed.get((point_id, field), 0) + delta
    updates: dict[str, dict[str, Any]] = {}
    for (point_id, field), delta in summed.items():
        if delta:
            updates.setdefault(point_id, {})[field] = firestore.Increment(delta)
    return updates


# Added with the point, hotline and guardian use cases.
CALENDAR_CONTROLS = "calendar_controls"
GUARDIANS = "guardians"
CALLBACKS = "callbacks"


def slot_part_field(day_key: str, slot_key: str, part: str) -> str:
    return FieldPath("days", day_key, slot_key, part).to_api_repr()


# Added with notifications and the SMS booking dialog.
NOTIFICATIONS = "notifications"
SMS_DIALOGS = "sms_dialogs"
SMS_INBOUND = "sms_inbound"

# Added with the crowd-proof booking path (common/services/availability.py).
AVAILABILITY_DELTAS = "availability_deltas"
