"""The integration log: every appointment event, stored once under its event_id."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

from common import structured_log as log
from common.adapters.firestore_store import INTEGRATION_LOG
from common.domain.errors import DependencyUnavailableError
from common.domain.events import EVENT_TYPES
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner

LOG_RETENTION = timedelta(days=30)


class MalformedMessageError(ValueError):
    """A message that no retry can fix: acknowledged and logged, not redelivered forever."""


def decode_push(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    message = (data or {}).get("message") or {}
    attributes = message.get("attributes") or {}
    try:
        payload = json.loads(base64.b64decode(message.get("data", "")))
    except (ValueError, TypeError) as err:
        raise MalformedMessageError("message data is not base64 JSON") from err
    if not isinstance(payload, dict) or "event_id" not in payload:
        raise MalformedMessageError("message carries no event_id")
    return payload, attributes


def record_event(units: UnitOfWorkRunner, data: dict[str, Any], now: datetime) -> bool:
    """True when stored now; False for a duplicate or a message of a type we do not log."""
    try:
        payload, attributes = decode_push(data)
    except MalformedMessageError as err:
        log.error("dropped a malformed message", problem=str(err))
        return False
    # The emulator (and a misconfigured filter) delivers every type: check it here.
    event_type = attributes.get("event_type") or payload.get("event_type")
    if event_type not in EVENT_TYPES:
        return False

    def attempt(uow: UnitOfWork) -> bool:
        uow.create(
            INTEGRATION_LOG,
            payload["event_id"],
            {
                "event_type": event_type,
                "payload": payload,
                "received_at": now,
                # The log is a recent window for integrators, not an archive (Firestore TTL).
                "expires_at": now + LOG_RETENTION,
            },
        )
        return True

    # Already there: an earlier delivery of the same event stored it.
    return units.run(
        attempt,
        on_conflict=lambda _uow: False,
        gave_up=lambda: DependencyUnavailableError("the integration log is not writable now"),
    )
