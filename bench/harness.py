"""The local stack under measurement, and the load generator that drives it.

- `Stack` starts the official Firestore and Pub/Sub emulators on free ports (or reuses those of
  FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST), and serves the real gateway (every function,
  through functions-framework) over real HTTP on a free port, as the local stack serves it:
  `python -m emulator.gateway`, gunicorn workers in a process of their own (emulator/serve.py).
- `Stack.use_project()` points this process and the gateway (started again on it) at a fresh
  project id: an empty database, and exact document counts on the clients that do the work
  (this process's, and every gateway worker's through a shared file). Every worker also logs
  each document it writes (`<meter>.writes.<pid>`), so that `Stack.hot()` can name the
  hottest document of any stretch of time.
- `BackgroundFolder` folds the bookings' availability deltas every second for the whole run,
  as production's scheduled `fold_availability` does, on the current project, with a tracked
  meter of its own: its writes count towards the hottest document too.
- `run_closed_loop()` runs N workers, each issuing its next operation when the previous ends,
  for a duration or a number of operations, with a live progress line.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path
from typing import Any

from bench import hot
from bench.machine import CpuShares
from bench.progress import Progress
from bench.stats import PhaseResult, percentile, rate
from common.adapters.firestore_metering import DocumentCounts, DocumentMeter
from emulator.processes import (
    ManagedProcess,
    firestore_emulator,
    free_port,
    http_ok,
    pubsub_emulator,
    require_tools,
)
from emulator.serve import SharedDocumentCounts

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent


class Stack:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.processes: list[ManagedProcess] = []
        self.gateway: ManagedProcess | None = None
        self.search_gateway: ManagedProcess | None = None
        self.search_port = 0
        self.gateway_counts: SharedDocumentCounts | None = None
        self.base_port = 0
        self.reused: dict[str, bool] = {}
        self.logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
        self.project = ""
        self.folder = BackgroundFolder()
        self.cache: dict[str, Any] = {}  # data seeded once per run and shared by scenarios
        self.notes: list[str] = []  # what went differently from the plan (reported)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        # Emulator mode (common/config.py): the local stack's own switch, inherited by the
        # gateway; without it emulator hosts are refused, as they must be in production.
        os.environ["LOCAL_STACK"] = "1"
        os.environ.setdefault("FIREBASE_AUTH_EMULATOR_HOST", f"{HOST}:9099")  # unsigned tokens
        os.environ.pop("PESEL_HASH_KEY", None)  # the local key, as the demo and the tests use
        wanted = []
        if os.environ.get("FIRESTORE_EMULATOR_HOST"):
            self.reused["firestore"] = True
        else:
            self.reused["firestore"] = False
            wanted.append(("FIRESTORE_EMULATOR_HOST", firestore_emulator))
        if os.environ.get("PUBSUB_EMULATOR_HOST"):
            self.reused["pubsub"] = True
        else:
            self.reused["pubsub"] = False
            wanted.append(("PUBSUB_EMULATOR_HOST", None))
        if wanted:
            require_tools()
        for variable, _ in wanted:
            port = free_port(HOST)
            if variable == "FIRESTORE_EMULATOR_HOST":
                process = firestore_emulator(HOST, port, self.logs)
            else:
                process = pubsub_emulator(HOST, port, "bench", self.logs)
            process.start()
            self.processes.append(process)
            os.environ[variable] = f"{HOST}:{port}"
        for process in self.processes:
            self.progress.update(f"starting the {process.name} ...", force=True)
            process.wait_ready(120)
        self.progress.done(
            "emulators ready: Firestore "
            f"{os.environ['FIRESTORE_EMULATOR_HOST']}, Pub/Sub {os.environ['PUBSUB_EMULATOR_HOST']}"
            + (" (reused)" if any(self.reused.values()) else "")
        )
        self.folder.start()
        self._serve_gateway()

    def _serve_gateway(self) -> None:
        self.base_port = free_port(HOST)
        self.use_project(f"bench-boot-{uuid.uuid4().hex[:8]}")
        self.progress.done(
            f"gateway (every function, gunicorn workers) on http://{HOST}:{self.base_port}"
        )

    def _gateway_process(self, name: str, port: int, project_id: str) -> ManagedProcess:
        assert self.gateway_counts is not None
        return ManagedProcess(
            name=name,
            argv=[
                sys.executable,
                "-m",
                "emulator.gateway",
                "--host",
                HOST,
                "--port",
                str(port),
                "--meter",
                str(self.gateway_counts.path),
            ],
            ready=lambda: http_ok(f"http://{HOST}:{port}/healthz"),
            log_path=self.logs / f"{name.replace(' ', '-')}-{project_id}.log",
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
        )

    def _start_gateway(self, project_id: str) -> None:
        """`python -m emulator.gateway` on `project_id` (its workers read the project when
        they start), on the same port every time; its workers count the documents they read
        and write into a file of this project's, which `Meter` adds to this process's."""
        self._stop_gateway()
        self.gateway_counts = SharedDocumentCounts.create(self.logs / f"documents-{project_id}")
        self.gateway = self._gateway_process("gateway", self.base_port, project_id)
        self.progress.update(f"starting the gateway on {project_id} ...", force=True)
        self.gateway.start()
        self.gateway.wait_ready(90)

    def start_search_gateway(self) -> int:
        """A second gateway on the same project and meter, for search only: in production
        search_slots runs on instances of its own, so a search never waits behind a booking
        for a thread (the local gateway serves every function from one pool of threads).
        Returns its port; stopped with the gateway (or by `stop_search_gateway`)."""
        self.stop_search_gateway()
        self.search_port = free_port(HOST)
        self.search_gateway = self._gateway_process(
            "search gateway", self.search_port, self.project
        )
        self.progress.update("starting a gateway for search ...", force=True)
        self.search_gateway.start()
        self.search_gateway.wait_ready(90)
        return self.search_port

    def stop_search_gateway(self) -> None:
        if self.search_gateway is not None:
            self.search_gateway.stop(grace_s=10.0)
            self.search_gateway = None

    def _stop_gateway(self) -> None:
        self.stop_search_gateway()
        if self.gateway is not None:
            self.gateway.stop(grace_s=10.0)
            self.gateway = None

    def stop(self) -> None:
        self.folder.stop()
        self._stop_gateway()
        for process in reversed(self.processes):
            process.stop(grace_s=3.0)

    # -- what the processes did ------------------------------------------------------------
    def hot(self, start: float | None = None, end: float | None = None) -> dict[str, Any]:
        """The hottest documents between two time.monotonic() moments: every gateway worker's
        writes (their logs) and the folder's, merged."""
        gateway = hot.read_logs(self.gateway_counts.path) if self.gateway_counts else {}
        merged = hot.merge(gateway, self.folder.written(self.project))
        return hot.summary(hot.within(merged, start, end))

    def cpu(self, **extra: list[int]) -> CpuShares:
        """Cores used per process group from now until `.stop()`: the emulators, the gateway
        (master and workers), `extra` groups (say wrk), then this process (load generator,
        folder) and `others` (the rest of the machine)."""
        groups: dict[str, list[int]] = {}
        for process in self.processes:
            if process.popen is not None:
                groups[process.name] = [process.popen.pid]
        if self.gateway is not None and self.gateway.popen is not None:
            groups["gateway"] = [self.gateway.popen.pid]
        if self.search_gateway is not None and self.search_gateway.popen is not None:
            groups["search gateway"] = [self.search_gateway.popen.pid]
        groups.update(extra)
        groups["bench process"] = [os.getpid()]
        return CpuShares(groups).start()

    def gateway_pid(self, search: bool = False) -> int | None:
        process = self.search_gateway if search else self.gateway
        if process is None or process.popen is None:
            return None
        return process.popen.pid

    # -- projects --------------------------------------------------------------------------
    def use_project(self, project_id: str, *, topics: bool = False) -> Meter:
        """Point this process's clients and the gateway (served again) at `project_id`;
        returns a meter of the documents both read and write."""
        from common import wiring

        os.environ["GOOGLE_CLOUD_PROJECT"] = project_id
        wiring.reset()
        if topics:
            from tests.support.stack import provision_topics

            try:
                provision_topics(project_id)
            except Exception as err:  # noqa: BLE001 (measure anyway, and say so)
                # Without topics every event stays in the outbox (no delete after publishing):
                # one commit fewer per operation than production. Reported with the results.
                self.notes.append(f"{project_id}: topics not provisioned: {err!s:.300}")
        self.project = project_id
        self.folder.use(project_id)
        self._start_gateway(project_id)
        return Meter(wiring.firestore_client(), self.gateway_counts)


class BackgroundFolder:
    """Folds the current project's availability deltas every second, for the whole run, as
    production's `fold_availability` does (common/services/availability.py: one blind update
    per point with pending deltas a round, so a point's document takes about one write a
    second at most). Its client has a tracked meter of its own, one per project."""

    def __init__(self, interval_s: float | None = None) -> None:
        from common.services.availability import FOLD_INTERVAL_S

        self.interval_s = FOLD_INTERVAL_S if interval_s is None else interval_s
        self._lock = threading.Lock()
        self._folder: Any = None
        self._meters: dict[str, DocumentMeter] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.deltas = 0
        self.errors: list[str] = []

    def use(self, project_id: str) -> None:
        from google.cloud import firestore as firestore_module

        from common.services.availability import AvailabilityFolder

        client = firestore_module.Client(project=project_id)
        meter = DocumentMeter(client, track_documents=True)
        with self._lock:
            self._meters[project_id] = meter
            self._folder = AvailabilityFolder(client)

    def written(self, project_id: str) -> dict[str, list[float]]:
        with self._lock:
            meter = self._meters.get(project_id)
        return meter.written() if meter else {}

    def counts(self, project_id: str) -> DocumentCounts:
        with self._lock:
            meter = self._meters.get(project_id)
        return meter.counts() if meter else DocumentCounts()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="folder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            with self._lock:
                folder = self._folder
            if folder is not None:
                try:
                    # One round of production's scheduled run (fold_availability: run_for
                    # its minute, a round every FOLD_INTERVAL_S): whatever a round does there.
                    result = folder.run_for(self.interval_s, interval_s=self.interval_s)
                    self.deltas += result.deltas
                    self.rounds += 1
                except Exception as err:  # noqa: BLE001 (keep folding; report it)
                    if len(self.errors) < 20:
                        self.errors.append(f"{type(err).__name__}: {err}"[:200])
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))


_FIELDS = [f.name for f in fields(DocumentCounts)]


@dataclass(frozen=True)
class Snapshot:
    """DocumentCounts that add up across processes (this one's and the gateway workers')."""

    reads: int = 0
    writes: int = 0
    queries: int = 0
    commits: int = 0
    empty_queries: int = 0
    deletes: int = 0
    aggregations: int = 0
    failed_commits: int = 0

    @classmethod
    def of(cls, counts: DocumentCounts) -> Snapshot:
        return cls(**{name: getattr(counts, name) for name in _FIELDS})

    def __sub__(self, other: Snapshot) -> Snapshot:
        return Snapshot(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def __add__(self, other: Snapshot) -> Snapshot:
        return Snapshot(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @property
    def billed_reads(self) -> int:
        """Documents read, + one per query that found nothing, + one per aggregation."""
        return self.reads + self.empty_queries + self.aggregations

    @property
    def billed_writes(self) -> int:
        return self.writes - self.deletes

    @property
    def commit_attempts(self) -> int:
        return self.commits + self.failed_commits


class Meter:
    """Exact document counts as a Snapshot the reports know: the shared DocumentMeter on this
    process's client (seeding, the service layer) plus the gateway workers' (every HTTP
    request), which they add up in a shared file."""

    def __init__(self, client, gateway: SharedDocumentCounts | None = None) -> None:
        self.documents = DocumentMeter(client)
        self.gateway = gateway

    def counts(self) -> Snapshot:
        total = Snapshot.of(self.documents.counts())
        if self.gateway is None:
            return total
        return total + Snapshot.of(self.gateway.counts())

    def gateway_counts(self) -> Snapshot:
        return Snapshot.of(self.gateway.counts()) if self.gateway else Snapshot()


def new_project(scenario: str) -> str:
    return f"bench-{scenario}-{uuid.uuid4().hex[:8]}"


# -- HTTP -----------------------------------------------------------------------------------
@dataclass
class Response:
    status: int
    body: Any
    seconds: float


class HttpClient:
    """One keep-alive connection per thread to the gateway; JSON in, JSON out."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
            self._local.connection = connection
        return connection

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        idempotency_key: str | None = None,
    ) -> Response:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        for attempt in (1, 2):
            connection = self._connection()
            started = time.perf_counter()
            try:
                connection.request(method, path, body=data, headers=headers)
                reply = connection.getresponse()
                raw = reply.read()
            except (http.client.HTTPException, ConnectionError, OSError):
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
                continue  # a keep-alive connection the server closed: one fresh try
            seconds = time.perf_counter() - started
            if reply.getheader("Connection", "").lower() == "close":
                connection.close()
                self._local.connection = None
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw.decode(errors="replace")
            return Response(reply.status, parsed, seconds)
        raise AssertionError("unreachable")


def error_code(response: Response) -> str:
    if isinstance(response.body, dict) and isinstance(response.body.get("error"), dict):
        return str(response.body["error"].get("code"))
    return str(response.status)


# -- the closed loop -------------------------------------------------------------------------
Operation = Callable[[int, random.Random], str]


@dataclass
class _Shared:
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    issued: int = 0
    stop: bool = False


def run_closed_loop(
    name: str,
    operation: Operation,
    *,
    concurrency: int,
    duration_s: float | None = None,
    max_operations: int | None = None,
    progress: Progress,
    seed: int = 1,
    warmup_s: float = 0.0,
    snapshot: Callable[[], Any] | None = None,
) -> PhaseResult:
    """Each worker calls operation(worker, rng) back to back; it returns an outcome label.

    The operation's own latency is the wall time of the call. An exception is an outcome
    ("error:<Type>") and a sample of its message is kept; the run goes on.
    `operation` may return "stop" to end the phase (e.g. no patients left).
    `snapshot` (e.g. a DocumentMeter's counts) is taken when the measured window opens and
    when it closes; their difference is `result.window_counts`.
    """
    shared = _Shared()
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)
    measuring = threading.Event()

    def worker(index: int) -> None:
        rng = random.Random(seed * 100_003 + index)
        barrier.wait()
        while not shared.stop:
            with lock:
                if max_operations is not None and shared.issued >= max_operations:
                    return
                shared.issued += 1
            started = time.perf_counter()
            try:
                outcome = operation(index, rng)
            except Exception as err:  # noqa: BLE001 (an error is a measured outcome)
                outcome = f"error:{type(err).__name__}"
                with lock:
                    if len(shared.errors) < 20:
                        shared.errors.append(
                            f"{type(err).__name__}: {err}"[:300]
                            + " | "
                            + traceback.format_exc(limit=2).splitlines()[-1][:200]
                        )
            seconds = time.perf_counter() - started
            if outcome == "stop":
                shared.stop = True
                return
            if measuring.is_set():
                with lock:
                    shared.latencies.append(seconds)
                    shared.outcomes[outcome] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    if warmup_s > 0:
        time.sleep(warmup_s)
    opened = snapshot() if snapshot else None
    measuring.set()
    started = time.monotonic()
    deadline = started + duration_s if duration_s is not None else None
    while any(t.is_alive() for t in threads):
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            measuring.clear()  # operations still in flight end after the window: not counted
            shared.stop = True
            break
        with lock:
            done = len(shared.latencies)
            recent = shared.latencies[-200:]
            failures = sum(n for k, n in shared.outcomes.items() if k.startswith(("error", "fail")))
        p50 = percentile(recent, 50)
        left = f", {deadline - now:4.0f} s left" if deadline is not None else ""
        progress.update(
            f"{name} c={concurrency}: {done:,} ops, {rate(done, now - started):7.1f}/s, "
            f"p50 {1000 * (p50 or 0):6.1f} ms, failures {failures}{left}"
        )
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    closed = snapshot() if snapshot else None
    for thread in threads:
        thread.join(timeout=120)
    result = PhaseResult(name, concurrency, elapsed, list(shared.latencies), shared.outcomes)
    result.errors = shared.errors
    if snapshot:
        result.window_counts = closed - opened
    progress.done(
        f"{name} c={concurrency}: {result.operations:,} ops in {elapsed:.1f} s = "
        f"{rate(result.operations, elapsed):.1f}/s, p50 "
        f"{1000 * (percentile(result.latencies_s, 50) or 0):.1f} ms, p99 "
        f"{1000 * (percentile(result.latencies_s, 99) or 0):.1f} ms, "
        f"outcomes {dict(result.outcomes)}"
    )
    return result
