"""The open-loop generator's arithmetic (bench/openloop.py) and the client contract it runs
(bench/crowd.py until_answered, KeepAlivePool) against a tiny local HTTP server."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice

import pytest

from bench.crowd import Answer, KeepAlivePool, request_bytes, until_answered
from bench.openloop import (
    Call,
    arrivals,
    expected,
    phases,
    planned_counts,
    run_open_loop,
    schedule,
)


def test_a_constant_rate_stream_is_evenly_spaced() -> None:
    times = list(arrivals(4.0, 2.0))
    assert times == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert len(times) == expected(4.0, 2.0)
    shifted = list(arrivals(4.0, 1.0, phase=0.5))
    assert shifted == [0.125, 0.375, 0.625, 0.875]
    assert expected(4.0, 1.0, phase=0.5) == 4


def test_counts_match_rate_times_duration() -> None:
    for rate, duration, phase in ((950.0, 300.0, 0.0), (34.0, 300.0, 0.25), (8.5, 297.0, 0.5)):
        assert sum(1 for _ in arrivals(rate, duration, phase)) == expected(rate, duration, phase)
    assert expected(950.0, 300.0) == 285_000
    assert expected(8.5, 297.0, 0.5) == 2_524  # i + 0.5 < 8.5 x 297 = 2,524.5: i <= 2,523
    assert expected(0.0, 10.0) == 0 and list(arrivals(0.0, 10.0)) == []
    with pytest.raises(ValueError):
        list(arrivals(1.0, 1.0, phase=1.0))


def test_kinds_are_merged_in_time_order_with_spread_phases() -> None:
    rates = {"search": 10.0, "book": 2.0}
    assert phases(list(rates)) == {"book": 0.0, "search": 0.5}
    merged = list(schedule(rates, 1.0))
    assert [t for t, _ in merged] == sorted(t for t, _ in merged)
    assert Counter(k for _, k in merged) == Counter(search=10, book=2)
    assert merged[0] == (0.0, "book") and merged[1] == (0.05, "search")


def test_a_delayed_kind_starts_later_at_the_same_rate() -> None:
    rates = {"search": 100.0, "cancel": 10.0}
    plan = list(schedule(rates, 10.0, start_after={"cancel": 3.0}))
    cancels = [t for t, k in plan if k == "cancel"]
    assert cancels[0] >= 3.0 and len(cancels) == 70
    assert planned_counts(rates, 10.0, {"cancel": 3.0}) == {"search": 1000, "cancel": 70}


def test_the_schedule_is_lazy_and_cheap_for_a_long_run() -> None:
    plan = schedule({"search": 950.0, "book": 34.0}, 300.0)
    first = list(islice(plan, 5))
    assert len(first) == 5 and first[0][0] == 0.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    busy_left = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            busy = _Handler.busy_left > 0
            _Handler.busy_left -= busy
        if busy:
            self._reply(503, b'{"error": {"code": "busy"}}', {"Retry-After": "0"})
        elif self.path == "/full":
            self._reply(409, b'{"error": {"code": "slot_unavailable"}}')
        else:
            self._reply(200, b'{"items": []}')

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_client_retries_a_503_with_the_same_request(server: int) -> None:
    _Handler.busy_left = 2
    pool = KeepAlivePool("127.0.0.1", server, 4)
    request = request_bytes("h", "GET", "/ok", keep_alive=True)

    async def main() -> Answer:
        return await until_answered(
            lambda left: pool.send(request, left), random.Random(1), patience_s=10
        )

    answer = asyncio.run(main())
    assert (answer.status, answer.retried_503, answer.attempts) == (200, 2, 3)
    assert answer.body == {"items": []}


def test_the_open_loop_issues_everything_and_judges_each_answer(server: int) -> None:
    _Handler.busy_left = 0
    ok = request_bytes("h", "GET", "/ok", keep_alive=True)
    full = request_bytes("h", "GET", "/full", keep_alive=True)

    def judge(answer: Answer) -> str:
        if answer.status == 200:
            return "ok"
        if answer.code == "slot_unavailable":
            return "refused_full"
        return f"failed:{answer.status}"

    cancels = iter(range(3))

    def cancel(_: random.Random) -> Call | None:
        return Call(full, judge) if next(cancels, None) is not None else None  # then: nothing

    result = run_open_loop(
        "127.0.0.1",
        server,
        {"search": 40.0, "cancel": 10.0},
        0.5,
        {"search": lambda _: Call(ok, judge, parse=False), "cancel": cancel},
        connections=8,
        patience_s=5.0,
    )
    summary = result.summary()
    search, cancelled = summary["kinds"]["search"], summary["kinds"]["cancel"]
    assert search["planned"] == search["issued"] == search["answered"] == 20
    assert search["outcomes"] == {"ok": 20} and search["failed"] == 0
    assert cancelled["issued"] == 3 and cancelled["skipped"] == 2
    assert cancelled["outcomes"] == {"refused_full": 3}
    assert summary["failed"] == 0
    assert result.connections_opened <= 8
