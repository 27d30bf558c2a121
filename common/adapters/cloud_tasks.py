"""Cloud Tasks client factory that can point at the local emulator."""

from __future__ import annotations

import grpc
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport


def make_tasks_client(emulator_host: str | None) -> tasks_v2.CloudTasksClient:
    """A Cloud Tasks client; talks plaintext gRPC to ``emulator_host`` ("host:port") when given.

    The caller reads the host from ``CLOUD_TASKS_EMULATOR_HOST``. The client library has no
    emulator switch of its own, and ``api_endpoint`` with anonymous credentials still tries TLS,
    so the emulator needs an explicit insecure channel.
    """
    if not emulator_host:
        return tasks_v2.CloudTasksClient()
    channel = grpc.insecure_channel(emulator_host)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
