"""A TCP proxy in front of an emulator that a test can freeze: Firestore "frozen for 20 s".

The functions of a test point FIRESTORE_EMULATOR_HOST at the proxy; `frozen(seconds)` stops
relaying bytes both ways (connections stay open, nothing is answered), which is what a
Firestore that stalls looks like to the client: RPCs run into their deadlines. Thawed, the
held bytes flow on and new calls succeed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


class FreezableProxy:
    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        up_host, up_port = upstream.rsplit(":", 1)
        self.upstream = (up_host, int(up_port))
        self._listener = socket.create_server((host, 0))
        self.address = f"{host}:{self._listener.getsockname()[1]}"
        self._thawed = threading.Event()
        self._thawed.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="freezer-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(source, target), name="freezer-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                data = source.recv(65536)
                if not data:
                    break
                # Frozen: hold what arrived (the sender sees no answer) until thawed.
                while not self._thawed.wait(0.05):
                    if self._closed.is_set():
                        return
                target.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def freeze_for(self, seconds: float) -> None:
        with self.frozen():
            time.sleep(seconds)

    def close(self) -> None:
        self._closed.set()
        self.thaw()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
