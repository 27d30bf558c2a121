"""How the gateway is served (emulator/serve.py): the gunicorn settings, the machine's limits,
a taken port, and the documents every worker reads counted in one place (the benchmarks)."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from datetime import date
from pathlib import Path

from common.domain.pesel import make_pesel
from emulator import serve
from emulator.processes import ManagedProcess, free_port, http_ok
from tests.support.identity import id_token
from tests.support.stack import add_point, firestore_client

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def test_the_gateway_is_served_by_gthread_workers_that_build_it_after_the_fork():
    settings = serve.ServeSettings(host=HOST, port=8000, workers=3, threads=8)
    options = serve.gunicorn_options(settings)
    assert options["worker_class"] == "gthread"
    assert options["preload_app"] is False  # no gRPC channel before a fork
    assert options["workers"] == 3 and options["threads"] == 8
    assert options["backlog"] == 4096
    assert options["worker_connections"] * 2 + options["backlog"] > 5000
    assert options["accesslog"] is None  # no line per request unless asked
    assert options["graceful_timeout"] < 10  # gone within the stack's own grace
    assert serve.gunicorn_options(serve.ServeSettings(host="::1", port=1))["bind"] == "[::1]:1"


def test_workers_default_to_the_cpus_within_bounds_and_follow_gateway_workers():
    assert serve.default_workers({"GATEWAY_WORKERS": "5"}) == 5
    assert 2 <= serve.default_workers({}) <= serve.MAX_DEFAULT_WORKERS
    assert serve.default_threads({"GATEWAY_THREADS": "16"}) == 16


def test_worker_connections_fit_the_open_files_limit(monkeypatch):
    monkeypatch.setattr(serve, "raise_open_files_limit", lambda wanted: 1024)
    fitted, notes = serve.fit_to_machine(serve.ServeSettings(worker_connections=2048))
    assert fitted.worker_connections == 1024 - serve.FD_RESERVE
    assert any("RLIMIT_NOFILE is 1024" in note for note in notes)


def test_a_taken_port_is_a_message_not_a_traceback():
    with socket.socket() as blocker:
        blocker.bind((HOST, 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "emulator.gateway", "--host", HOST, "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"cannot listen on {HOST}:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def _add_from_a_process(path: str) -> None:
    counts = serve.SharedDocumentCounts(Path(path))
    threads = [
        threading.Thread(target=lambda: [counts.add(reads=1, writes=2) for _ in range(100)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_shared_document_counts_add_up_across_processes_and_threads(tmp_path: Path):
    counts = serve.SharedDocumentCounts.create(tmp_path / "documents")
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_add_from_a_process, args=(str(counts.path),)) for _ in range(3)
    ]
    for process in processes:
        process.start()
    _add_from_a_process(str(counts.path))
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    total = counts.counts()
    assert (total.reads, total.writes, total.commits) == (1600, 3200, 0)


def test_every_workers_documents_are_counted_in_the_meter_file(project: str, tmp_path: Path):
    add_point(firestore_client(project), "pt-00001")
    counts = serve.SharedDocumentCounts.create(tmp_path / "documents")
    port = free_port(HOST)
    process = ManagedProcess(
        name="gateway",
        argv=[
            sys.executable, "-m", "emulator.gateway", "--host", HOST, "--port", str(port),
            "--workers", "2", "--meter", str(counts.path),
        ],
        ready=lambda: http_ok(f"http://{HOST}:{port}/healthz"),
        log_path=tmp_path / "gateway.log",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )  # fmt: skip
    pesel = make_pesel(date(1980, 5, 17), "F", 1)
    token = id_token(project, "meter-patient", {"role": "patient", "pesel": pesel})
    process.start()
    try:
        process.wait_ready(90)
        before = counts.counts()
        for _ in range(6):  # fresh connections: both workers take some
            request = urllib.request.Request(
                f"http://{HOST}:{port}/v1/points/pt-00001",
                headers={"Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert "pt-00001" in json.dumps(json.loads(response.read()))
        delta = counts.counts() - before
    finally:
        process.stop()
    assert delta.reads >= 1
    assert delta.writes == 0
