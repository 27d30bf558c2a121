"""The bench's pure helpers around its tools: wrk's script and summary, py-spy's collapsed
stacks, and the process tree behind the CPU shares."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench import wrk
from bench.machine import CpuShares, descendants
from bench.profile import summarize


def test_the_wrk_script_rotates_paths_and_prints_one_json_line() -> None:
    paths = ["/v1/slots?postcode=31-001&limit=5", "/v1/slots?postcode=00-001"]
    script = wrk.lua_script(paths, {"Accept": "application/json"}, tokens=["t1", "t2"])
    assert '"/v1/slots?postcode=31-001&limit=5"' in script
    assert '["Accept"] = "application/json",' in script
    assert '"Bearer t1",\n  "Bearer t2"' in script
    assert "bearers[math.random(#bearers)]" in script
    assert "paths[math.random(#paths)], headers()" in script
    assert wrk.MARK in script
    with pytest.raises(ValueError):
        wrk.lua_script([], {})


def test_wrk_summary_is_parsed() -> None:
    latency = {"p50": 12000, "p90": 30000, "p99": 180500, "p999": 300000, "max": 400000}
    line = wrk.MARK + json.dumps(
        {
            "requests": 19000,
            "duration_us": 20_000_000,
            "bytes": 1,
            "errors": {"connect": 0, "read": 0, "write": 0, "status": 2, "timeout": 1},
            "latency_us": latency | {"mean": 15000.0},
        }
    )
    parsed = wrk.parse("Running 20s test\n" + line + "\n")
    assert parsed["requests_per_s"] == 950.0
    assert (parsed["p50_ms"], parsed["p99_ms"]) == (12.0, 180.5)
    assert parsed["failed"] == 3
    with pytest.raises(ValueError):
        wrk.parse("no summary")


def test_the_wrk_command_never_has_more_threads_than_connections() -> None:
    argv = wrk.command("wrk", "http://h/", Path("s.lua"), connections=1, threads=2, duration_s=3)
    assert "--threads=1" in argv and "--connections=1" in argv and "--duration=3s" in argv


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_script_runs_in_wrk(tmp_path: Path) -> None:
    # wrk itself checks the Lua; a server that answers 404 to everything: each answer is a
    # status error, and done() prints its line.
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = tmp_path / "s.lua"
        script.write_text(
            wrk.lua_script(["/nothing-a", "/nothing-b"], {"Accept": "text/plain"}, tokens=["x"])
        )
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        argv = wrk.command("wrk", url, script, connections=1, threads=1, duration_s=1)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    finally:
        server.shutdown()
        server.server_close()
    parsed = wrk.parse(out)
    assert parsed["requests"] > 0
    assert parsed["errors"]["status"] == parsed["requests"]


def _stack(*frames: str, count: int) -> str:
    return ";".join(['process 1:"gunicorn"', *frames]) + f" {count}"


def test_collapsed_stacks_are_summarised_by_function() -> None:
    worker = "worker (gunicorn/workers/gthread.py:10)"
    search = "search (common/services/search.py:200)"
    lines = [
        _stack(worker, search, "free_in_document (common/domain/calendar.py:50)", count=30),
        _stack(worker, "search (common/services/search.py:210)", count=10),
        _stack("worker (gunicorn/workers/gthread.py:12)", "dumps (json/__init__.py:231)", count=60),
        "garbage",
    ]
    summary = summarize(lines, top=3)
    assert summary["samples"] == 100
    assert summary["self"][0] == {
        "function": "dumps (json/__init__.py)",
        "share": 0.6,
        "samples": 60,
    }
    inclusive = {row["function"]: row["share"] for row in summarize(lines, top=10)["inclusive"]}
    assert inclusive["worker (gunicorn/workers/gthread.py)"] == 1.0
    assert inclusive["search (common/services/search.py)"] == 0.4
    ours = [row["function"] for row in summary["inclusive_ours"]]
    assert ours == [
        "search (common/services/search.py)",
        "free_in_document (common/domain/calendar.py)",
    ]


def test_descendants_walk_the_process_tree() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 20: 1, 30: 99}
    assert sorted(descendants([10], parents)) == [10, 11, 12]
    assert sorted(descendants([1], parents)) == [1, 10, 11, 12, 20]
    assert descendants([99], parents) == [99, 30]


def test_cpu_shares_of_this_process() -> None:
    import os

    shares = CpuShares({"me": [os.getpid()]}).start()
    sum(i * i for i in range(200_000))
    result = shares.stop()
    assert set(result["cores"]) >= {"me"}
    assert result["cores"]["me"] >= 0
