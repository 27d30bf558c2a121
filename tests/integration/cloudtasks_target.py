"""A tiny threaded HTTP target for Cloud Tasks emulator tests.

It records every request per path and can be programmed per path to fail, or to stall, for
the first N requests, so tests sharing one server do not interfere as long as paths differ.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from common import clock


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    started_at: float  # epoch seconds when the request arrived
    finished_at: float  # epoch seconds when the response was (or would have been) written


@dataclass
class _Program:
    fail_times: int = 0
    fail_status: int = 500
    stall_times: int = 0
    stall_s: float = 0.0
    delay_s: float = 0.0  # applied to every successful request
    seen: int = 0


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)
    received: list[Received] = field(default_factory=list)
    programs: dict[str, _Program] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State  # injected per server via a subclass

    def _handle(self) -> None:
        started = clock.epoch_seconds()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.state.lock:
            program = self.state.programs.setdefault(self.path, _Program())
            program.seen += 1
            nth = program.seen
        status, pause = 200, program.delay_s
        if nth <= program.stall_times:
            pause = program.stall_s
        elif nth <= program.stall_times + program.fail_times:
            status = program.fail_status
        if pause:
            time.sleep(pause)
        record = Received(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            started_at=started,
            finished_at=clock.epoch_seconds(),
        )
        with self.state.changed:
            self.state.received.append(record)
            self.state.changed.notify_all()
        try:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass  # the emulator gave up on a stalled request; nothing to tell it

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # broken pipes from abandoned (deadline-exceeded) requests are expected


class TargetServer:
    """Recording HTTP server on 127.0.0.1 with an ephemeral port."""

    def __init__(self) -> None:
        self._state = _State()
        handler = type("Handler", (_Handler,), {"state": self._state})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def program(
        self,
        path: str,
        *,
        fail_times: int = 0,
        fail_status: int = 500,
        stall_times: int = 0,
        stall_s: float = 0.0,
        delay_s: float = 0.0,
    ) -> None:
        """Stall the first ``stall_times`` requests, then fail the next ``fail_times``."""
        with self._state.lock:
            self._state.programs[path] = _Program(
                fail_times=fail_times,
                fail_status=fail_status,
                stall_times=stall_times,
                stall_s=stall_s,
                delay_s=delay_s,
            )

    def received(self, path: str) -> list[Received]:
        with self._state.lock:
            return [r for r in self._state.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until ``count`` requests to ``path`` were recorded, or fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._state.changed:
            while True:
                found = [r for r in self._state.received if r.path == path]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    break
                self._state.changed.wait(remaining)
        if len(found) < count:
            raise AssertionError(f"expected {count} requests to {path}, got {len(found)}")
        return found
