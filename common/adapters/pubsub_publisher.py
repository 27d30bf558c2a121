"""Publishing integration events to Pub/Sub (the official emulator locally)."""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from common.domain.errors import DependencyUnavailableError

PUBLISH_TIMEOUT_S = 5.0


class EventPublisher:
    def __init__(self, project_id: str, client: pubsub_v1.PublisherClient | None = None) -> None:
        self._project_id = project_id
        self._client = client or pubsub_v1.PublisherClient()

    def topic_path(self, topic: str) -> str:
        return self._client.topic_path(self._project_id, topic)

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        """Publish and wait for the server's ack; raises DependencyUnavailableError if it fails."""
        try:
            future = self._client.publish(self.topic_path(topic), data, **attributes)
            return str(future.result(timeout=PUBLISH_TIMEOUT_S))
        except (gexc.GoogleAPICallError, gexc.RetryError, FutureTimeout, OSError) as err:
            raise DependencyUnavailableError("the event bus is unavailable") from err
