"""The cursor of an incremental pull from a peer (P1 referrals, SDS deliveries).

The cursor lives in `sync_state/{name}` and is written in the SAME commit as the page it
covers, with a precondition on the version read: a crash before the commit re-reads the page
(every write of a page is an idempotent upsert), a crash after it moves on, and two runs at
once cannot both advance it (the loser's commit fails and it reads again). A cursor never
moves backwards: a peer that answers with an older one is refused, not followed. A service on
the unit of work reads it with `load_cursor(uow, name)` and stages its move with
`stage_cursor(uow, ...)` in the attempt that writes the page; a stale cursor runs the attempt
again from its reads (common/services/unit_of_work.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.services.unit_of_work import UnitOfWork

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


def load_cursor(reader: UnitOfWork, name: str) -> CursorState:
    """The cursor as read through a unit of work (the attempt's own, when its move is staged
    in the same attempt: a retry then reads it again)."""
    found = reader.get(SYNC_STATE, name)
    if found is None:
        return CursorState(name, None, None, {})
    return CursorState(name, found.data.get("cursor") or None, found.version, found.data)


def stage_cursor(
    uow: UnitOfWork, state: CursorState, cursor: str, now: datetime, **summary: Any
) -> None:
    """Stage the cursor's move in the unit of work, guarded by the version that was read."""
    data = {"cursor": cursor, "updated_at": now, **summary}
    if state.version is None:
        uow.create(SYNC_STATE, state.name, data)
    else:
        uow.update(SYNC_STATE, state.name, data, if_version=state.version)
