"""Open-loop load: every request issued when it is due, at its target rate, whatever the latency.

A closed loop (N clients, each sending when its last answer came) slows down with the server
and so hides a queue: the clients wait instead of the requests. An open loop, like wrk2 or a
real crowd of independent people, issues the i-th request of a kind at start + (i + phase) /
rate however many are still unanswered, and measures each one's time from when it was DUE,
not from when it could finally be sent, so a queue anywhere (in the generator waiting for a
connection, in the kernel, in the gateway) shows in the latency, not as a lower rate.

Every request follows the API's client contract (bench/crowd.py `until_answered`: the same
request and Idempotency-Key again after a 503/429 or a reset, for up to 60 s from when it was
due); it ends with a definitive answer or unanswered. The connections are kept alive in a
pool (`KeepAlivePool`), at most `connections` at once: past that, requests wait in the
generator (and the wait counts), as they would in a client's own queue.

`arrivals`, `schedule` and `expected` are the arithmetic (pure, unit-tested); `run_open_loop`
runs a schedule against the gateway in a thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.crowd import PATIENCE_S, Answer, KeepAlivePool, until_answered
from bench.stats import percentile


def arrivals(rate_per_s: float, duration_s: float, phase: float = 0.0) -> Iterator[float]:
    """Due times (seconds from the start) of a constant-rate stream: (i + phase) / rate for
    i = 0, 1, ... while before `duration_s`. `phase` in [0, 1) shifts the stream by that share
    of one interval, so that streams of several kinds do not all fire at the same instants."""
    if rate_per_s <= 0 or duration_s <= 0:
        return
    if not 0 <= phase < 1:
        raise ValueError("phase must be in [0, 1)")
    number = 0
    while True:
        due = (number + phase) / rate_per_s
        if due >= duration_s:
            return
        yield due
        number += 1


def expected(rate_per_s: float, duration_s: float, phase: float = 0.0) -> int:
    """How many requests `arrivals` issues: i + phase < rate x duration."""
    if rate_per_s <= 0 or duration_s <= 0:
        return 0
    return max(0, math.ceil(rate_per_s * duration_s - phase))


def phases(kinds: list[str]) -> dict[str, float]:
    """Each kind's phase: spread evenly over one interval, in sorted order (deterministic)."""
    ordered = sorted(kinds)
    return {kind: index / len(ordered) for index, kind in enumerate(ordered)}


def schedule(
    rates: Mapping[str, float], duration_s: float, start_after: Mapping[str, float] | None = None
) -> Iterator[tuple[float, str]]:
    """Every kind's arrivals merged in time order: (due seconds, kind). `start_after` delays
    a kind (cancellations need bookings to exist first): its stream starts at that second,
    with the same rate."""
    start_after = start_after or {}
    spread = phases([k for k, r in rates.items() if r > 0])

    def stream(kind: str) -> Iterator[tuple[float, str]]:
        offset = start_after.get(kind, 0.0)
        for due in arrivals(rates[kind], duration_s - offset, spread[kind]):
            yield offset + due, kind

    return heapq.merge(*(stream(kind) for kind in spread))


def planned_counts(
    rates: Mapping[str, float], duration_s: float, start_after: Mapping[str, float] | None = None
) -> dict[str, int]:
    start_after = start_after or {}
    spread = phases([k for k, r in rates.items() if r > 0])
    return {
        kind: expected(rates[kind], duration_s - start_after.get(kind, 0.0), spread[kind])
        for kind in spread
    }


# -- running it ------------------------------------------------------------------------------
@dataclass
class Call:
    """A request ready to send, and how to judge its definitive answer ("ok", "refused...",
    or "failed:..." for anything the contract does not allow)."""

    request: bytes
    judge: Callable[[Answer], str]
    parse: bool = True  # decode the JSON of a 2xx answer (errors are always decoded)


Operation = Callable[[random.Random], "Call | None"]  # None: nothing to do now (skipped)


class NotSent(Exception):
    """No connection became free before the request's patience ran out."""


@dataclass
class KindResult:
    planned: int = 0
    issued: int = 0
    skipped: int = 0  # nothing to do when it was due (a cancellation before any booking)
    unanswered: int = 0
    not_sent: int = 0
    latencies_s: list[float] = field(default_factory=list)  # due -> definitive answer
    outcomes: Counter[str] = field(default_factory=Counter)
    retries_503: int = 0
    retries_429: int = 0
    resets: int = 0
    timeouts: int = 0
    answered_in_window: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return len(self.latencies_s)

    @property
    def failed(self) -> int:
        return self.unanswered + sum(n for k, n in self.outcomes.items() if k.startswith("fail"))

    def summary(self, duration_s: float) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "issued": self.issued,
            "skipped": self.skipped,
            "answered": self.answered,
            "answered_per_s": round(self.answered_in_window / duration_s, 2) if duration_s else 0,
            "issued_per_s": round(self.issued / duration_s, 2) if duration_s else 0,
            "unanswered": self.unanswered,
            "not_sent": self.not_sent,
            "failed": self.failed,
            "p50_ms": _ms(percentile(self.latencies_s, 50)),
            "p90_ms": _ms(percentile(self.latencies_s, 90)),
            "p99_ms": _ms(percentile(self.latencies_s, 99)),
            "max_ms": _ms(max(self.latencies_s) if self.latencies_s else None),
            "outcomes": dict(sorted(self.outcomes.items())),
            "retries_503": self.retries_503,
            "retries_429": self.retries_429,
            "resets": self.resets,
            "timeouts": self.timeouts,
            "failure_samples": self.failures[:5],
        }


@dataclass
class OpenLoopResult:
    duration_s: float
    started_monotonic: float
    ended_monotonic: float  # the last answer (or give-up)
    kinds: dict[str, KindResult]
    lag_s: list[float]  # how late each request was issued after it was due (the generator)
    connections_opened: int

    def summary(self) -> dict[str, Any]:
        return {
            "duration_s": round(self.duration_s, 1),
            "drain_s": round(self.ended_monotonic - self.started_monotonic - self.duration_s, 1),
            "kinds": {k: v.summary(self.duration_s) for k, v in self.kinds.items()},
            "failed": sum(v.failed for v in self.kinds.values()),
            "generator_lag_p50_ms": _ms(percentile(self.lag_s, 50)),
            "generator_lag_p99_ms": _ms(percentile(self.lag_s, 99)),
            "connections_opened": self.connections_opened,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def _run(
    pools: Mapping[str, KeepAlivePool],
    rates: Mapping[str, float],
    duration_s: float,
    operations: Mapping[str, Operation],
    start_after: Mapping[str, float],
    patience_s: float,
    seed: int,
    on_tick: Callable[[float, dict[str, KindResult], int], None] | None,
) -> OpenLoopResult:
    rng = random.Random(seed)
    planned = planned_counts(rates, duration_s, start_after)
    kinds = {kind: KindResult(planned=count) for kind, count in planned.items()}
    lag: list[float] = []
    in_flight: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    window_end = started + duration_s

    async def one(kind: str, due: float) -> None:
        result = kinds[kind]
        pool = pools[kind]
        slots = pool.slots()
        call = operations[kind](rng)
        if call is None:
            result.skipped += 1
            return
        result.issued += 1
        lag.append(time.monotonic() - due)

        async def send(left: float):
            deadline = time.monotonic() + left
            try:
                await asyncio.wait_for(slots.acquire(), left)
            except TimeoutError:
                raise NotSent() from None
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NotSent()
                return await pool.send(call.request, remaining)
            finally:
                slots.release()

        try:
            answer = await until_answered(
                send, rng, patience_s=patience_s, started=due, parse_ok=call.parse
            )
        except NotSent:
            result.not_sent += 1
            result.unanswered += 1
            return
        result.retries_503 += answer.retried_503
        result.retries_429 += answer.retried_429
        result.resets += answer.resets
        result.timeouts += answer.timeouts
        if answer.status is None:
            result.unanswered += 1
            return
        try:
            outcome = call.judge(answer)
        except Exception as err:  # noqa: BLE001 (a judge's error is a failure to report)
            outcome = f"failed:judge:{type(err).__name__}"
        result.outcomes[outcome] += 1
        result.latencies_s.append(answer.seconds)
        if time.monotonic() <= window_end:
            result.answered_in_window += 1
        if outcome.startswith("fail") and len(result.failures) < 10:
            result.failures.append(f"{outcome}: {answer.status} {answer.body}"[:300])

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1.0)
            if on_tick is not None:
                on_tick(time.monotonic() - started, kinds, len(in_flight))

    ticking = asyncio.create_task(ticker())
    issued_since_yield = 0
    for at, kind in schedule(rates, duration_s, start_after):
        due = started + at
        delay = due - time.monotonic()
        if delay > 0.0005:
            await asyncio.sleep(delay)
            issued_since_yield = 0
        elif issued_since_yield > 50:  # behind schedule: still let the answers be read
            await asyncio.sleep(0)
            issued_since_yield = 0
        issued_since_yield += 1
        task = asyncio.create_task(one(kind, due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    while in_flight:
        await asyncio.gather(*list(in_flight))
    ticking.cancel()
    distinct = {id(p): p for p in pools.values()}.values()
    for pool in distinct:
        pool.close()
    opened = sum(p.opened for p in distinct)
    return OpenLoopResult(duration_s, started, time.monotonic(), kinds, lag, opened)


def run_open_loop(
    host: str,
    port: int,
    rates: Mapping[str, float],
    duration_s: float,
    operations: Mapping[str, Operation],
    *,
    start_after: Mapping[str, float] | None = None,
    connections: int = 256,
    patience_s: float = PATIENCE_S,
    seed: int = 1,
    on_tick: Callable[[float, dict[str, KindResult], int], None] | None = None,
    ports: Mapping[str, int] | None = None,
) -> OpenLoopResult:
    """Run the schedule in a thread of its own (its own event loop); operations and judges
    run on that loop's thread, one at a time, so their state needs no lock. `ports` sends a
    kind elsewhere than `port` (searches to a gateway of their own), each port with a pool
    of `connections`."""
    result: list[Any] = []
    chosen = {kind: (ports or {}).get(kind, port) for kind in rates}

    def main() -> None:
        by_port = {p: KeepAlivePool(host, p, connections) for p in set(chosen.values())}
        try:
            result.append(
                asyncio.run(
                    _run(
                        {kind: by_port[p] for kind, p in chosen.items()},
                        rates,
                        duration_s,
                        operations,
                        start_after or {},
                        patience_s,
                        seed,
                        on_tick,
                    )
                )
            )
        except BaseException as err:  # noqa: BLE001 (handed to the caller's thread)
            result.append(err)

    thread = threading.Thread(target=main, name="open-loop")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]
