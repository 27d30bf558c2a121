"""Serve the dev gateway the way Cloud Functions instances serve a function: gunicorn workers.

In production every function runs under functions-framework, which serves it with gunicorn's
threaded worker (`gthread`). The local gateway (emulator/gateway.py) used to be one werkzeug
process: one Python interpreter (one core at a time, the GIL) behind a listen backlog of 128.
In a rush of 1,000 simultaneous bookers the kernel counted ~2,500 accept-queue overflows and
clients got "connection reset by peer". Now `python -m emulator.gateway` (what `python -m
emulator` and the benchmarks start) runs a gunicorn master with several `gthread` workers.

Every worker builds the gateway itself, after the fork (`_GatewayApplication.load`, no
`preload_app`): the master never imports a function, so no gRPC channel or thread exists
before a fork (gRPC does not survive one), and common/wiring.py still builds each client
lazily, on a worker's first request that needs it. `gthread`, not gevent or eventlet: their
monkey-patching does not mix with the Firestore client's gRPC.

The settings, and why (`ServeSettings`; `python -m emulator.gateway --help`):

- workers: `--workers` / GATEWAY_WORKERS; default the CPUs this process may run on, at least
  2, at most 8. One worker runs Python on one core at a time (the GIL), so one per core uses
  the machine; more only time-share with the emulators (Java) on the same cores. At least 2,
  so that a busy or (re)booting worker never leaves the port without a taker; at most 8
  because each worker holds every function (~100 MB) and its own gRPC channels.
- threads: 8 per worker (`--threads` / GATEWAY_THREADS): a request mostly waits on Firestore,
  Pub/Sub or a simulator with the GIL released, so threads overlap those waits; 8 is what
  functions-framework gives a 2-vCPU instance in production (4 per vCPU). Threads also bound
  how many requests are at the emulators at once: past that, requests wait in the worker's
  queue, where nothing times out, instead of inside the emulator, where the services' RPC
  deadlines turn waiting into 503s. Measured with wrk (search, 64 connections, a shared and
  noisy 2-core machine): 4 and 8 threads mostly 440-530 searches/s, 16 threads 640-1,100 with
  a few 503s in every run; GATEWAY_THREADS=16 is there to try it.
- backlog: 4096, the kernel's queue of connections whose handshake is done but that no worker
  has accepted yet. Linux silently caps it at net.core.somaxconn: 4096 here (the default
  since Linux 5.4; 128 before, when it should be raised with `sysctl -w
  net.core.somaxconn=4096`); the master logs the effective value at start.
- worker_connections: 2048 per worker: how many connections a gthread worker takes off the
  queue and holds (queued for its threads, in flight, or kept alive). With 2 workers, 4,096
  held plus 4,096 waiting in the kernel: a crowd of 5,000 simultaneous connections is
  accepted with no queue overflow (tests/e2e/test_gateway_crowd.py). Each connection is a file
  descriptor, so the master raises its soft RLIMIT_NOFILE (up to the hard limit) to fit, and
  lowers worker_connections, with a warning, where the hard limit is smaller.
- keepalive: 5 s. Clients that reuse their connection (the benchmarks' closed loop, wrk, the
  web apps) keep it between requests; an idle one is closed after 5 s, so kept-alive
  connections do not pile up against worker_connections (past worker_connections - threads of
  them, gunicorn answers with "Connection: close" instead).
- timeout: 120 s. With gthread this is the heartbeat of a worker's main loop (which never runs
  a request), not a request deadline (the functions have their own, a few seconds per
  dependency): it replaces a worker that is stuck, and must cover a worker's boot (building
  every function) on a busy 2-core machine.
- graceful_timeout: 8 s. SIGTERM stops accepting and lets the requests in flight finish for up
  to 8 s; Ctrl-C (SIGINT, which the stack sends its children first) stops at once. Either way
  the workers are gone before the stack's own 10 s grace ends (emulator/processes.py).
- no access log by default (`--access-log` prints one line per request): a crowd must not
  flood the log; gunicorn still logs starts, stops and errors. limit_request_line=0 as
  functions-framework sets it in production.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import resource
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.errors import AppImportError

BACKLOG = 4096
THREADS = 8
WORKER_CONNECTIONS = 2048
KEEPALIVE_S = 5
TIMEOUT_S = 120
GRACEFUL_TIMEOUT_S = 8
MAX_DEFAULT_WORKERS = 8
# File descriptors a worker needs besides its clients: listener, pipes, log, gRPC channels.
FD_RESERVE = 256
SOMAXCONN_PATH = Path("/proc/sys/net/core/somaxconn")


def available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(env: dict[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    if env.get("GATEWAY_WORKERS"):
        return int(env["GATEWAY_WORKERS"])
    return max(2, min(available_cpus(), MAX_DEFAULT_WORKERS))


def default_threads(env: dict[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    return int(env.get("GATEWAY_THREADS") or THREADS)


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = field(default_factory=default_workers)
    threads: int = field(default_factory=default_threads)
    backlog: int = BACKLOG
    worker_connections: int = WORKER_CONNECTIONS
    keepalive_s: int = KEEPALIVE_S
    timeout_s: int = TIMEOUT_S
    graceful_timeout_s: int = GRACEFUL_TIMEOUT_S
    access_log: bool = False
    log_level: str = "info"

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def gunicorn_options(settings: ServeSettings) -> dict[str, Any]:
    return {
        "bind": settings.bind,
        "worker_class": "gthread",
        "workers": settings.workers,
        "threads": settings.threads,
        "backlog": settings.backlog,
        "worker_connections": settings.worker_connections,
        "keepalive": settings.keepalive_s,
        "timeout": settings.timeout_s,
        "graceful_timeout": settings.graceful_timeout_s,
        "preload_app": False,  # each worker builds the gateway after the fork
        "accesslog": "-" if settings.access_log else None,
        "errorlog": "-",
        "loglevel": settings.log_level,
        "limit_request_line": 0,
        "control_socket_disable": True,  # no gunicornc socket in $HOME, no master thread
        "proc_name": "erejestracja-gateway",
    }


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards `wanted` (never past the hard limit);
    the workers inherit it. Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def kernel_somaxconn() -> int | None:
    try:
        return int(SOMAXCONN_PATH.read_text().strip())
    except (OSError, ValueError):
        return None


def fit_to_machine(settings: ServeSettings) -> tuple[ServeSettings, list[str]]:
    """worker_connections within the file-descriptor limit; notes on what the kernel caps."""
    notes = []
    limit = raise_open_files_limit(settings.worker_connections + FD_RESERVE)
    connections = settings.worker_connections
    if limit - FD_RESERVE < connections:
        connections = max(settings.threads + 1, limit - FD_RESERVE)
        notes.append(
            f"worker_connections lowered to {connections}: RLIMIT_NOFILE is {limit} "
            "(raise the hard limit, `ulimit -Hn`, for a larger crowd)"
        )
    somaxconn = kernel_somaxconn()
    if somaxconn is not None and somaxconn < settings.backlog:
        notes.append(
            f"the kernel caps the listen backlog at net.core.somaxconn={somaxconn}, below "
            f"{settings.backlog}: `sysctl -w net.core.somaxconn={settings.backlog}` to raise it"
        )
    return replace(settings, worker_connections=connections), notes


def describe(settings: ServeSettings) -> str:
    somaxconn = kernel_somaxconn()
    backlog = min(settings.backlog, somaxconn) if somaxconn else settings.backlog
    return (
        f"gunicorn {settings.workers} workers x {settings.threads} threads (gthread), "
        f"backlog {backlog} (asked {settings.backlog}, net.core.somaxconn {somaxconn}), "
        f"{settings.worker_connections} connections per worker, keepalive "
        f"{settings.keepalive_s} s, graceful stop {settings.graceful_timeout_s} s"
    )


# -- document counts across workers (the benchmarks' exact meter) ---------------------------
class SharedDocumentCounts:
    """DocumentCounts (common/adapters/firestore_metering.py) summed over processes in a small
    file: the benchmarks count the documents every gateway worker reads and writes. Each add
    is a read-modify-write under an exclusive flock, and a thread lock (flock does not exclude
    threads that share one open file)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    _names: list[str] | None = None  # DocumentCounts' fields, looked up once per process

    @classmethod
    def _fields(cls) -> list[str]:
        if cls._names is None:
            from dataclasses import fields

            from common.adapters.firestore_metering import DocumentCounts

            cls._names = [f.name for f in fields(DocumentCounts)]
        return cls._names

    @classmethod
    def create(cls, path: Path) -> SharedDocumentCounts:
        counts = cls(path)
        counts.path.write_bytes(counts._format().pack(*([0] * len(cls._fields()))))
        return counts

    def _format(self) -> struct.Struct:
        return struct.Struct(f"<{len(self._fields())}q")

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a fork gets a file of its own
            self._fd = os.open(self.path, os.O_RDWR)
            self._pid = os.getpid()
        return self._fd

    def add(self, **deltas: int) -> None:
        names = self._fields()
        layout = self._format()
        with self._lock:
            fd = self._descriptor()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                values = list(layout.unpack(os.pread(fd, layout.size, 0)))
                for name, delta in deltas.items():
                    values[names.index(name)] += delta
                os.pwrite(fd, layout.pack(*values), 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def counts(self):
        from common.adapters.firestore_metering import DocumentCounts

        layout = self._format()
        with self._lock:
            fd = self._descriptor()
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                values = layout.unpack(os.pread(fd, layout.size, 0))
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        return DocumentCounts(**dict(zip(self._fields(), values, strict=True)))


class WritesLog:
    """Every document this process writes, appended to a file of its own as lines of
    `monotonic_ns document_name` (CLOCK_MONOTONIC is system-wide, so the times of several
    processes compare): the benchmarks merge the workers' files to find the hottest document.
    One buffered write and a flush per commit, under a thread lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file: Any = None

    @staticmethod
    def path_for(meter_path: Path, pid: int | None = None) -> Path:
        return Path(f"{meter_path}.writes.{pid if pid is not None else os.getpid()}")

    def append(self, names: list[str], moment_ns: int) -> None:
        lines = "".join(f"{moment_ns} {name.split('/documents/', 1)[-1]}\n" for name in names)
        with self._lock:
            if self._file is None:
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(lines)
            self._file.flush()


def meter_into(client: Any, counts: SharedDocumentCounts, writes: WritesLog | None = None) -> Any:
    """An exact DocumentMeter on `client` whose counts go to the shared file (and, with
    `writes`, every document written to that log)."""
    from common.adapters.firestore_metering import DocumentMeter

    class _SharedMeter(DocumentMeter):
        def _add(self, **deltas: int) -> None:
            counts.add(**deltas)

        def _written_documents(self, names: list[str], moment_ns: int) -> None:
            if writes is not None:
                writes.append(names, moment_ns)

    return _SharedMeter(client, track_documents=writes is not None)


# -- the gunicorn application -----------------------------------------------------------------
class _GatewayApplication(BaseApplication):
    def __init__(
        self,
        options: dict[str, Any],
        dev_tokens: dict[str, Any] | None,
        meter_path: Path | None,
    ) -> None:
        self.options = options
        self.dev_tokens = dev_tokens
        self.meter_path = meter_path
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        """Runs in each worker, after the fork: builds every function (no gRPC before)."""
        from emulator.gateway import build_gateway

        try:
            gateway = build_gateway(self.dev_tokens)
        except SystemExit as err:  # a refusal (say, a route to a missing function): stop the
            raise AppImportError(str(err)) from None  # server, do not respawn workers forever
        if self.meter_path is not None:
            from common import wiring

            meter_into(
                wiring.firestore_client(),
                SharedDocumentCounts(self.meter_path),
                WritesLog(WritesLog.path_for(self.meter_path)),
            )
        return gateway


def _port_taken(host: str, port: int) -> str | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            return err.strerror or str(err)
    return None


def serve(
    settings: ServeSettings,
    dev_tokens: dict[str, Any] | None = None,
    meter_path: Path | None = None,
) -> int:
    """Run the gunicorn master until SIGINT or SIGTERM (it exits the process then)."""
    taken = _port_taken(settings.host, settings.port)
    if taken:
        print(
            f"gateway: cannot listen on {settings.host}:{settings.port}: {taken}",
            file=sys.stderr,
        )
        return 2
    settings, notes = fit_to_machine(settings)
    options = gunicorn_options(settings)

    def when_ready(server: Any) -> None:
        for note in notes:
            server.log.warning(note)
        server.log.info(describe(settings))
        print(f"Gateway listening on http://{settings.host}:{settings.port}", flush=True)

    options["when_ready"] = when_ready
    _GatewayApplication(options, dev_tokens, meter_path).run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator.gateway",
        description="Serve every function behind one base URL (gunicorn workers).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", "8000")))
    parser.add_argument("--dev-tokens", type=Path, help="JSON file of demo users' tokens")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default GATEWAY_WORKERS, else the CPUs, 2 to 8)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"threads per worker (default GATEWAY_THREADS, else {THREADS})",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="one log line per request (off by default)"
    )
    parser.add_argument(
        "--meter",
        type=Path,
        default=None,
        help="count the Firestore documents every worker reads and writes into this file "
        "(SharedDocumentCounts.create makes it; used by the benchmarks), and log every "
        "document each worker writes to FILE.writes.<pid> (`monotonic_ns name` lines)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tokens = json.loads(args.dev_tokens.read_text()) if args.dev_tokens else None
    settings = ServeSettings(
        host=args.host,
        port=args.port,
        workers=args.workers or default_workers(),
        threads=args.threads or default_threads(),
        access_log=args.access_log,
    )
    return serve(settings, tokens, args.meter)


if __name__ == "__main__":
    raise SystemExit(main())
