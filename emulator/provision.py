"""Create the topics, subscriptions and queues of common/declarations.yaml locally.

Terraform creates the same things in Google Cloud from the same file; here the official
Pub/Sub emulator and our Cloud Tasks emulator get them. Every step is idempotent, so the stack
can be provisioned again over persisted data.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1, tasks_v2
from google.protobuf import duration_pb2

from common.declarations import Declarations, duration_seconds


def _duration(text: str) -> duration_pb2.Duration:
    seconds = duration_seconds(text)
    return duration_pb2.Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))


def provision_pubsub(
    project_id: str,
    functions_base_url: str,
    declarations: Declarations,
    publisher: pubsub_v1.PublisherClient | None = None,
    subscriber: pubsub_v1.SubscriberClient | None = None,
) -> list[str]:
    publisher = publisher or pubsub_v1.PublisherClient()
    subscriber = subscriber or pubsub_v1.SubscriberClient()
    created: list[str] = []
    for topic in declarations.topics:
        path = publisher.topic_path(project_id, topic)
        try:
            publisher.create_topic(name=path)
            created.append(path)
        except gexc.AlreadyExists:
            pass
    for name, sub in declarations.subscriptions.items():
        request: dict = {
            "name": subscriber.subscription_path(project_id, name),
            "topic": publisher.topic_path(project_id, sub.topic),
            "ack_deadline_seconds": sub.ack_deadline_seconds,
            "retry_policy": {
                "minimum_backoff": _duration(sub.min_retry_backoff),
                "maximum_backoff": _duration(sub.max_retry_backoff),
            },
        }
        if sub.push_function:
            request["push_config"] = {"push_endpoint": f"{functions_base_url}/{sub.push_function}"}
        if sub.dead_letter_topic:
            request["dead_letter_policy"] = {
                "dead_letter_topic": publisher.topic_path(project_id, sub.dead_letter_topic),
                "max_delivery_attempts": sub.max_delivery_attempts or 5,
            }
        try:
            subscriber.create_subscription(request=request)
            created.append(request["name"])
        except gexc.AlreadyExists:
            pass
    return created


def provision_queues(
    client: tasks_v2.CloudTasksClient,
    project_id: str,
    location: str,
    declarations: Declarations,
) -> list[str]:
    created = []
    parent = f"projects/{project_id}/locations/{location}"
    for name, queue in declarations.queues.items():
        spec = tasks_v2.Queue(
            name=f"{parent}/queues/{name}",
            rate_limits=tasks_v2.RateLimits(
                max_dispatches_per_second=queue.max_dispatches_per_second,
                max_concurrent_dispatches=queue.max_concurrent_dispatches,
            ),
            retry_config=tasks_v2.RetryConfig(
                max_attempts=queue.max_attempts,
                min_backoff=_duration(queue.min_backoff),
                max_backoff=_duration(queue.max_backoff),
                max_doublings=queue.max_doublings,
            ),
        )
        try:
            client.create_queue(parent=parent, queue=spec)
            created.append(spec.name)
        except gexc.AlreadyExists:
            client.update_queue(queue=spec)
    return created
