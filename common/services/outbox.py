"""The transactional outbox: events are written in the same commit as the change they
describe, then published to Pub/Sub and removed.

Publishing right after the commit is the fast path. If the process dies first, or Pub/Sub is
down, the event stays in `outbox/` and the scheduled `relay_outbox` function publishes it
later. Either path may publish an event twice (a crash between publish and delete), which is
why every consumer dedupes by `event_id`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

from common import structured_log as log
from common.adapters.firestore_store import OUTBOX, RPC
from common.adapters.pubsub_publisher import EventPublisher
from common.domain.events import DomainEvent

# The immediate publisher gets this long before a sweep may also pick an event up.
SWEEP_GRACE = timedelta(seconds=30)


def outbox_document(event: DomainEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "topic": event.topic,
        "payload": json.dumps(event.envelope(), ensure_ascii=False),
        "occurred_at": event.occurred_at,
    }


def add_events(
    batch: firestore.WriteBatch, client: firestore.Client, events: Iterable[DomainEvent]
) -> None:
    for event in events:
        batch.create(client.collection(OUTBOX).document(event.event_id), outbox_document(event))


def _publish_documents(
    client: firestore.Client, publisher: EventPublisher, documents: Sequence[dict[str, Any]]
) -> int:
    published = 0
    for document in documents:
        publisher.publish(
            document["topic"],
            document["payload"].encode(),
            {"event_type": document["event_type"], "event_id": document["event_id"]},
        )
        client.collection(OUTBOX).document(document["event_id"]).delete(**RPC)
        published += 1
    return published


def publish_now(
    client: firestore.Client, publisher: EventPublisher | None, events: Sequence[DomainEvent]
) -> int:
    """Best effort right after the commit; what fails here the sweep publishes later."""
    if publisher is None or not events:
        return 0
    try:
        return _publish_documents(client, publisher, [outbox_document(e) for e in events])
    except Exception as err:  # noqa: BLE001 (the commit is done: never fail it for the bus)
        log.warning("event left in the outbox for the sweep", fault=type(err).__name__)
        return 0


def sweep(
    client: firestore.Client, publisher: EventPublisher, now: datetime, limit: int = 500
) -> dict[str, int]:
    """Publish events older than the grace period, oldest first."""
    query = (
        client.collection(OUTBOX)
        .where(filter=firestore.FieldFilter("occurred_at", "<", now - SWEEP_GRACE))
        .order_by("occurred_at")
        .limit(limit)
    )
    documents = [snapshot.to_dict() for snapshot in query.stream(**RPC)]
    published = _publish_documents(client, publisher, documents)
    return {"found": len(documents), "published": published}
