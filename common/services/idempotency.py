"""Idempotency keys, scoped to the caller, with the response stored in the same commit.

A write request carries an `Idempotency-Key`. The first request with a key creates an
IN_PROGRESS record (a create() precondition, so exactly one request wins); the service's own
commit flips it to COMPLETED with the response, atomically with the booking itself, so a
booking can never exist without its stored response or the other way round. A repeat with
the same body replays the stored response; with another body it is refused (422). A request
refused by a domain rule deletes its record, so that the caller may try again with the key.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from common.adapters.firestore_store import IDEMPOTENCY, RPC
from common.domain.errors import (
    IdempotencyKeyMismatchError,
    RequestInProgressError,
    ValidationFailedError,
)

# An IN_PROGRESS record older than this belongs to a request that died: it may be taken over.
ABANDONED_AFTER = timedelta(seconds=30)
WAIT_FOR_CONCURRENT_S = 10.0
RECORD_TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class IdempotencyScope:
    """Handed to a service so that it writes COMPLETED in its own commit."""

    ref: firestore.DocumentReference

    def complete(self, batch: firestore.WriteBatch, response: StoredResponse) -> None:
        batch.update(
            self.ref,
            {
                "status": "COMPLETED",
                "response_status": response.status,
                "response_body": json.dumps(response.body, ensure_ascii=False, default=str),
            },
        )


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


class Idempotency:
    def __init__(self, client: firestore.Client, sleep: Callable[[float], None] = time.sleep):
        self._client = client
        self._sleep = sleep

    def run(
        self,
        *,
        caller_uid: str,
        key: str,
        fingerprint: str,
        now: datetime,
        action: Callable[[IdempotencyScope], StoredResponse],
    ) -> StoredResponse:
        ref = self._client.collection(IDEMPOTENCY).document(record_id(caller_uid, key))
        replay = self._begin(ref, fingerprint, now)
        if replay is not None:
            return replay
        try:
            return action(IdempotencyScope(ref))
        except BaseException:
            self._abandon(ref)
            raise

    def _begin(
        self, ref: firestore.DocumentReference, fingerprint: str, now: datetime
    ) -> StoredResponse | None:
        record = {
            "status": "IN_PROGRESS",
            "fingerprint": fingerprint,
            "created_at": now,
            "expires_at": now + RECORD_TTL,
        }
        deadline = time.monotonic() + WAIT_FOR_CONCURRENT_S
        while True:
            try:
                ref.create(record, **RPC)
                return None
            except gexc.Conflict:
                pass
            snapshot = ref.get(**RPC)
            if not snapshot.exists:
                continue  # the other request was refused and let go of the key: try again
            stored = snapshot.to_dict()
            if stored["fingerprint"] != fingerprint:
                raise IdempotencyKeyMismatchError()
            if stored["status"] == "COMPLETED":
                return StoredResponse(
                    stored["response_status"], json.loads(stored["response_body"])
                )
            if stored["created_at"] < now - ABANDONED_AFTER:
                try:
                    ref.update(
                        record,
                        option=self._client.write_option(last_update_time=snapshot.update_time),
                        **RPC,
                    )
                    return None
                except (gexc.FailedPrecondition, gexc.NotFound):
                    continue
            if time.monotonic() > deadline:
                raise RequestInProgressError()
            self._sleep(0.1)

    def _abandon(self, ref: firestore.DocumentReference) -> None:
        """Let go of the key, unless the action's commit landed (its response may be lost).

        A commit whose answer never arrived (a timeout, an outage) may still have written
        COMPLETED; deleting the record then would turn the client's retry into a fresh
        attempt ("already booked") instead of the replay it is owed.
        """
        try:
            snapshot = ref.get(**RPC)
            if snapshot.exists and snapshot.get("status") == "IN_PROGRESS":
                ref.delete(
                    option=self._client.write_option(last_update_time=snapshot.update_time),
                    **RPC,
                )
        except gexc.GoogleAPICallError:
            pass  # it is taken over as abandoned after ABANDONED_AFTER anyway
