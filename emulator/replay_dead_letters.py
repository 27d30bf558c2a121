"""See and replay dead letters: pull them from a subscription, republish, then acknowledge.

    python -m emulator.replay_dead_letters p1-reports-dead-letter-inspect --list
    python -m emulator.replay_dead_letters p1-reports-dead-letter-inspect --to appointment-events

It uses only the Pub/Sub clients, so it works the same against the local emulator
(PUBSUB_EMULATOR_HOST set) and against Google Cloud (application default credentials, the
project from --project or GOOGLE_CLOUD_PROJECT). A message is acknowledged only after its
republish was confirmed by the server: a crash in between replays it twice, which every
consumer tolerates (they dedupe by event_id; P1 dedupes by vaccination id).

The republished message keeps its data and attributes (event_type, event_id, ...), drops the
ones Pub/Sub added when dead-lettering, and gains `replay=true` and `replayed_from`, which
tells the consumer to try again even what it once recorded as rejected.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

from google.cloud import pubsub_v1

PULL_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 10.0
_DROPPED_PREFIXES = ("CloudPubSubDeadLetter", "googclient_")


@dataclass(frozen=True)
class DeadLetter:
    ack_id: str
    message_id: str
    data: bytes
    attributes: dict[str, str]
    delivery_attempt: int


def pull(
    subscriber: pubsub_v1.SubscriberClient,
    subscription_path: str,
    max_messages: int,
    timeout_s: float = PULL_TIMEOUT_S,
) -> list[DeadLetter]:
    response = subscriber.pull(
        subscription=subscription_path, max_messages=max_messages, timeout=timeout_s
    )
    return [
        DeadLetter(
            r.ack_id,
            r.message.message_id,
            bytes(r.message.data),
            dict(r.message.attributes),
            r.delivery_attempt,
        )
        for r in response.received_messages
    ]


def replay_attributes(attributes: dict[str, str], source: str) -> dict[str, str]:
    kept = {k: v for k, v in attributes.items() if not k.startswith(_DROPPED_PREFIXES)}
    return {**kept, "replay": "true", "replayed_from": source}


def replay(
    project_id: str,
    subscription: str,
    topic: str,
    *,
    max_messages: int = 100,
    publisher: pubsub_v1.PublisherClient | None = None,
    subscriber: pubsub_v1.SubscriberClient | None = None,
    pull_timeout_s: float = PULL_TIMEOUT_S,
) -> int:
    """Republish up to ``max_messages`` dead letters of ``subscription`` to ``topic``."""
    publisher = publisher or pubsub_v1.PublisherClient()
    subscriber = subscriber or pubsub_v1.SubscriberClient()
    subscription_path = subscriber.subscription_path(project_id, subscription)
    topic_path = publisher.topic_path(project_id, topic)
    replayed = 0
    while replayed < max_messages:
        batch = min(100, max_messages - replayed)
        letters = pull(subscriber, subscription_path, batch, pull_timeout_s)
        if not letters:
            break
        for letter in letters:
            attributes = replay_attributes(letter.attributes, subscription)
            publisher.publish(topic_path, letter.data, **attributes).result(
                timeout=PUBLISH_TIMEOUT_S
            )
            subscriber.acknowledge(subscription=subscription_path, ack_ids=[letter.ack_id])
            replayed += 1
    return replayed


def peek(
    project_id: str,
    subscription: str,
    max_messages: int = 100,
    pull_timeout_s: float = PULL_TIMEOUT_S,
) -> list[DeadLetter]:
    """Read dead letters without consuming them (their ack deadline is set back to 0)."""
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(project_id, subscription)
    letters = pull(subscriber, path, max_messages, pull_timeout_s)
    if letters:
        subscriber.modify_ack_deadline(
            subscription=path, ack_ids=[x.ack_id for x in letters], ack_deadline_seconds=0
        )
    return letters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("subscription", help="the dead-letter pull subscription")
    parser.add_argument("--to", dest="topic", help="topic to republish to")
    parser.add_argument("--list", action="store_true", help="only show the dead letters")
    parser.add_argument("--max", type=int, default=100, dest="max_messages")
    parser.add_argument(
        "--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT", "erejestracja-local")
    )
    args = parser.parse_args(argv)
    if args.list:
        for letter in peek(args.project, args.subscription, args.max_messages):
            # Attributes only: bodies carry no PESEL, but they are not an operator's business.
            print(json.dumps({"message_id": letter.message_id, **letter.attributes}))
        return 0
    if not args.topic:
        parser.error("--to TOPIC is required to replay (or use --list)")
    count = replay(args.project, args.subscription, args.topic, max_messages=args.max_messages)
    print(f"replayed {count} message(s) from {args.subscription} to {args.topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
