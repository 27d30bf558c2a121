"""The cursor of an incremental pull from a peer (P1 referrals, SDS deliveries).

The cursor lives in `sync_state/{name}` and is written in the SAME commit as the page it
covers, with a precondition on the version read: a crash before the commit re-reads the page
(every write of a page is an idempotent upsert), a crash after it moves on, and two runs at
once cannot both advance it (the loser's commit fails and it reads again). A cursor never
moves backwards: a peer that answers with an older one is refused, not followed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.cloud import firestore

from common.adapters.firestore_store import RPC

SYNC_STATE = "sync_state"


@dataclass(frozen=True)
class CursorState:
    name: str
    cursor: str | None
    version: datetime | None  # update_time of sync_state/{name}; None = never written
    data: dict[str, Any]


def _as_number(cursor: str | None) -> int | None:
    return int(cursor) if cursor and cursor.isdigit() else None


def cursor_behind(candidate: str | None, current: str | None) -> bool:
    """True when storing ``candidate`` would move ``current`` backwards.

    P1 and SDS cursors are sequence numbers sent as opaque strings; when both parse as
    numbers they are compared as numbers, otherwise only "nothing after something" counts.
    """
    if not current:
        return False
    if not candidate:
        return True
    new, old = _as_number(candidate), _as_number(current)
    if new is not None and old is not None:
        return new < old
    return False


def load_cursor(client: firestore.Client, name: str) -> CursorState:
    snapshot = client.collection(SYNC_STATE).document(name).get(**RPC)
    if not snapshot.exists:
        return CursorState(name, None, None, {})
    data = snapshot.to_dict() or {}
    return CursorState(name, data.get("cursor") or None, snapshot.update_time, data)


def write_cursor(
    batch: firestore.WriteBatch,
    client: firestore.Client,
    state: CursorState,
    cursor: str,
    now: datetime,
    **summary: Any,
) -> None:
    """Add the cursor's move to ``batch``, guarded by the version that was read."""
    ref = client.collection(SYNC_STATE).document(state.name)
    data = {"cursor": cursor, "updated_at": now, **summary}
    if state.version is None:
        batch.create(ref, data)
    else:
        batch.update(ref, data, option=client.write_option(last_update_time=state.version))
