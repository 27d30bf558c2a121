"""A local Cloud Tasks v2 emulator that the unmodified ``google-cloud-tasks`` client can talk to.

Usage::

    with CloudTasksEmulator() as emulator:
        client = make_tasks_client(emulator.address)  # common.adapters.cloud_tasks
"""

from __future__ import annotations

import socket
from concurrent import futures
from types import TracebackType
from typing import Self

import grpc

from common.clock import epoch_seconds
from emulator.cloudtasks.dispatcher import Clock, Dispatcher, next_backoff
from emulator.cloudtasks.server import TaskStore, build_handler

__all__ = ["CloudTasksEmulator", "EmulatorBindError", "next_backoff"]

_RPC_WORKERS = 8


class EmulatorBindError(OSError):
    """The requested host:port could not be bound (typically: already in use)."""


def _ensure_bindable(host: str, port: int) -> None:
    """Probe the port with a plain socket first: gRPC core would also log its own error line."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise EmulatorBindError(f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # Same option gRPC uses, so a port in TIME_WAIT is not reported as busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise EmulatorBindError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


class CloudTasksEmulator:
    """In-process Cloud Tasks gRPC server plus the background HTTP dispatcher.

    ``clock`` stamps every time the emulator records (create/schedule/attempt times); waiting
    still happens in real time, so a fake clock is only useful if it advances by itself.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        name_reuse_window_s: float = 3600.0,
        *,
        clock: Clock = epoch_seconds,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self.store = TaskStore(name_reuse_window_s=name_reuse_window_s, clock=clock)
        self._dispatcher = Dispatcher(self.store, clock=clock)
        self._server: grpc.Server | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("emulator not started")
        return self._port

    @property
    def address(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self.port}"

    def start(self) -> int:
        """Bind, serve and start dispatching; returns the bound port."""
        if self._server is not None:
            return self.port
        # so_reuseport is on by default in gRPC, which would let two emulators share a port
        # silently; turning it off makes "port in use" an error we can report.
        server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=_RPC_WORKERS, thread_name_prefix="cloudtasks-rpc"
            ),
            options=[("grpc.so_reuseport", 0)],
        )
        server.add_generic_rpc_handlers((build_handler(self.store),))
        target = f"{self._host}:{self._requested_port}"
        _ensure_bindable(self._host, self._requested_port)
        try:
            port = server.add_insecure_port(target)
        except RuntimeError as exc:  # newer grpcio raises instead of returning 0
            raise EmulatorBindError(f"cannot listen on {target}: {exc}") from None
        if port == 0:
            raise EmulatorBindError(f"cannot listen on {target}: address in use or unavailable")
        server.start()
        self._server, self._port = server, port
        self._dispatcher.start()
        return port

    def stop(self, grace_s: float = 0.5) -> None:
        """Stop serving and dispatching. Attempts already on the wire are abandoned."""
        if self._server is None:
            return
        self._dispatcher.stop()
        self._server.stop(grace_s).wait()
        self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
