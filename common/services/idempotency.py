"""Idempotency keys, scoped to the caller, stored in the same commit as the change.

A write request carries an `Idempotency-Key`. Nothing is written before the work is done: the
request looks the key up (one read) and replays a stored answer if there is one; otherwise the
service does its work, and its own commit `create()`s the key's record with the answer, in the
same batch as the booking (or cancellation, or visit) itself. So a change can never exist
without its stored answer, nor the other way round, and a refused request (a full slot, a
patient not eligible) writes nothing at all: losing is cheap, and the same key may be tried
again later.

Two requests with the same key at the same moment both do the work, and both try to commit;
the record's `create()` precondition lets exactly one commit land, all or nothing, and the other
finds the record there (`IdempotentReplay`) and answers with the winner's stored response, the
same body for both. A different body under a key already used is refused (422). A commit whose
answer was lost (a timeout) is found by the client's retry and replayed, not done twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from common.adapters.firestore_store import IDEMPOTENCY
from common.domain.errors import (
    IdempotencyKeyMismatchError,
    RequestInProgressError,
    ValidationFailedError,
)

RECORD_TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


class _Reader(Protocol):
    def get(self, collection: str, doc_id: str) -> Any: ...


class IdempotentReplay(Exception):
    """An earlier request with the same Idempotency-Key committed first: replay its answer."""

    def __init__(self, stored: dict[str, Any]) -> None:
        super().__init__("the idempotency record exists")
        self.stored = stored


@dataclass(frozen=True)
class IdempotencyScope:
    """Handed to a service so that its own commit stores the answer under the key."""

    doc_id: str
    fingerprint: str
    created_at: datetime

    def record(self, response: StoredResponse) -> dict[str, Any]:
        return {
            "status": "COMPLETED",
            "fingerprint": self.fingerprint,
            "response_status": response.status,
            "response_body": json.dumps(response.body, ensure_ascii=False, default=str),
            "created_at": self.created_at,
            "expires_at": self.created_at + RECORD_TTL,
        }

    def stored(self, reader: _Reader) -> dict[str, Any] | None:
        """The key's record if a request with it has committed (read after a conflict)."""
        found = reader.get(IDEMPOTENCY, self.doc_id)
        return found.data if found is not None else None


def request_fingerprint(operation: str, payload: dict[str, Any]) -> str:
    canonical = json.dumps({"op": operation, "payload": payload}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_id(caller_uid: str, key: str) -> str:
    # Scoped per caller: the same key from two callers names two records.
    return hashlib.sha256(f"{caller_uid}\x00{key}".encode()).hexdigest()[:40]


def validate_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise ValidationFailedError("the Idempotency-Key header is required for this request")
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationFailedError(
            f"the Idempotency-Key must be printable, at most {MAX_KEY_LENGTH} characters"
        )
    return key.strip()


def replay(stored: dict[str, Any], fingerprint: str) -> StoredResponse:
    """The stored answer, for the same request only."""
    if stored.get("fingerprint") != fingerprint:
        raise IdempotencyKeyMismatchError()
    if stored.get("status") != "COMPLETED":
        # Only records of an older protocol (a request that died half-way) look like this.
        raise RequestInProgressError()
    return StoredResponse(stored["response_status"], json.loads(stored["response_body"]))


class Idempotency:
    def __init__(self, units: Any) -> None:
        self._units = units  # a unit-of-work runner: the look-up is one read of its reader

    def run(
        self,
        *,
        caller_uid: str,
        key: str,
        fingerprint: str,
        now: datetime,
        action: Callable[[IdempotencyScope], StoredResponse],
    ) -> StoredResponse:
        doc_id = record_id(caller_uid, key)
        found = self._units.reader().get(IDEMPOTENCY, doc_id)
        if found is not None:
            return replay(found.data, fingerprint)
        try:
            return action(IdempotencyScope(doc_id, fingerprint, now))
        except IdempotentReplay as earlier:
            return replay(earlier.stored, fingerprint)
