"""The scenarios of `python -m bench`: ceiling, crowd, search, booking, peak.

Everything a client does goes through HTTP to the gateway served as the local stack serves it
(gunicorn workers, emulator/serve.py), with clients that behave as the API says (bench/crowd.py:
the same request and Idempotency-Key again after a 503/429 or a reset, for up to 60 s).
Documents are counted exactly (common/adapters/firestore_metering.py) by every gateway worker;
every document a worker writes is logged with its time, and the availability folder runs in
this process every second for the whole run (bench/harness.py), so `Stack.hot()` names the
hottest document of any phase (bench/hot.py). Each heavy phase also says where the machine's
CPU went (bench/machine.py `CpuShares`), and `--profile` samples the gateway with py-spy.

- ceiling: plain gets and writes per second from one client (the yardstick of a noisy machine);
- crowd: the opening minute, everybody at once on one slot (and on five nearby points);
- search: wrk at 8 and 64 connections against ~1,000,000 slots (7,000 points x 9 days);
- booking: documents per operation, then bookings/s with no contention at 8 and 32 clients;
- peak: the original's peak hour, open loop (bench/openloop.py): 950 searches/s, 34 bookings/s,
  cancellations and moves, for 5 minutes.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from google.cloud import firestore

from bench import profile as profiler
from bench import wrk
from bench.crowd import Answer, judge, opening_day, request_bytes, run_crowd, seed_opening
from bench.harness import HOST, HttpClient, Stack, error_code, new_project, run_closed_loop
from bench.openloop import Call, run_open_loop
from bench.progress import Progress
from bench.seed import (
    bench_points,
    patient_pesels,
    seed_directory,
    seed_patients,
    seed_points,
    slot_ids,
)
from bench.stats import per_operation, percentile, rate
from common import clock
from common.domain.calendar import WARSAW
from emulator.identities import mint_id_token

SINGLE_DOSE = "jcovden"
TWO_DOSE = "comirnaty"
PEAK_RATES = {"search": 950.0, "book": 34.0, "reschedule": 8.5, "cancel": 8.5}


@dataclass
class Config:
    mode: str = "default"
    scenarios: tuple[str, ...] = ("ceiling", "crowd", "search", "booking", "peak")
    ceiling_s: float = 5.0
    ceiling_query_sizes: tuple[int, ...] = (1_000, 20_000)
    # (bookers, points, seats per point): all at once on one slot per point
    crowds: tuple[tuple[int, int, int], ...] = ((1000, 1, 100), (5000, 5, 100))
    patience_s: float = 60.0
    country_points: int = 7000
    country_days: int = 9
    cost_points: int = 20  # points with 45 days (a two-dose series needs its second date)
    cost_days: int = 45
    search_connections: tuple[int, ...] = (8, 64)
    search_s: float = 20.0
    search_sequential: int = 100
    search_paths: int = 64
    # Distinct patients searching: a person may search 30 times a minute per instance
    # (common/domain/quotas.yaml), so 950 a second must come from many people, as it does.
    searchers: int = 8000
    wrk_tokens: int = 4000
    wrk_threads: int = 2
    cost_samples: int = 20
    booking_clients: tuple[int, ...] = (8, 32)
    booking_s: float = 20.0
    booking_patients: int = 4000
    peak_s: float = 300.0
    peak_rates: dict[str, float] = field(default_factory=lambda: dict(PEAK_RATES))
    peak_connections: int = 256
    peak_changes_after_s: float = 3.0
    # Searches go to a gateway of their own, as search_slots has instances of its own in
    # production: the local gateway serves every function from one pool of threads, where a
    # search would wait for a thread behind bookings that wait on the emulator.
    peak_search_gateway: bool = True
    profile: bool = True  # py-spy on the gateway, when installed (make bench-tools)
    profile_s: float = 15.0

    @classmethod
    def quick(cls) -> Config:
        return cls(
            mode="quick",
            ceiling_s=1.0,
            ceiling_query_sizes=(1_000, 5_000),
            crowds=((1000, 1, 100),),
            country_points=1000,
            cost_points=10,
            search_s=4.0,
            search_sequential=30,
            searchers=2000,
            wrk_tokens=2000,
            cost_samples=4,
            booking_s=4.0,
            booking_patients=1200,
            peak_s=15.0,
            profile=False,
            profile_s=4.0,
        )

    def peak_patients(self) -> int:
        """Enough for every booking of the mix, less the patients cancellations give back
        (as few as will do: the emulator scans the referrals for every booking)."""
        booked = self.peak_rates.get("book", 0) * self.peak_s
        returned = self.peak_rates.get("cancel", 0) * max(0.0, self.peak_s - 30)
        return int(1.1 * (booked - returned)) + 500

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def today_warsaw() -> date:
    return clock.now().astimezone(WARSAW).date()


def _as_counts(delta) -> dict[str, int]:
    """Documents counted, and what Firestore bills for them (an empty query is one read)."""
    return asdict(delta) | {
        "billed_reads": delta.billed_reads,
        "billed_writes": delta.billed_writes,
        "commit_attempts": delta.commit_attempts,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


class _Profile:
    """py-spy on the gateway for a phase, when asked for and installed."""

    def __init__(
        self, stack: Stack, cfg: Config, name: str, seconds: float, search: bool = False
    ) -> None:
        self.process = None
        self.note: dict[str, Any] | None = None
        self.out = stack.logs / f"profile-{name}.txt"
        if not cfg.profile:
            return
        py_spy = profiler.find_py_spy()
        pid = stack.gateway_pid(search=search)
        if py_spy is None or pid is None:
            self.note = {"skipped": "py-spy not found (make bench-tools installs it)"}
            return
        self.process = profiler.start(py_spy, pid, min(seconds, cfg.profile_s), self.out)

    def finish(self) -> dict[str, Any] | None:
        if self.process is None:
            return self.note
        return profiler.finish(self.process, self.out)


# -- ceiling ---------------------------------------------------------------------------------
def ceiling(stack: Stack, cfg: Config, progress: Progress) -> dict[str, Any]:
    """Plain single-document gets and writes per second from one client: the yardstick."""
    project = new_project("ceiling")
    db = firestore.Client(project=project)
    target = db.collection("ceiling").document("one")
    target.set({"n": 0, "text": "x" * 200})
    payload = {"n": 1, "text": "x" * 200}
    results: dict[str, Any] = {"project": project}

    def get(_: int, __: random.Random) -> str:
        return "ok" if target.get().exists else "missing"

    def write(_: int, rng: random.Random) -> str:
        db.collection("ceiling").document(f"w{rng.getrandbits(48):x}").set(payload)
        return "ok"

    for threads in (1, 8):
        for name, op in (("get", get), ("write", write)):
            phase = run_closed_loop(
                f"ceiling {name}s",
                op,
                concurrency=threads,
                duration_s=cfg.ceiling_s,
                progress=progress,
                warmup_s=0.3,
            )
            results[f"{name}s_per_s_c{threads}"] = round(rate(phase.operations, phase.elapsed_s), 1)
            results[f"{name}_p50_ms_c{threads}"] = phase.summary()["p50_ms"]
    results["queries"] = [
        _query_ceiling(db, cfg, progress, size) for size in cfg.ceiling_query_sizes
    ]
    return results


def _query_ceiling(db, cfg: Config, progress: Progress, size: int) -> dict[str, Any]:
    """An equality query that matches one document among `size` (what a booking asks the
    emulator several times: a patient's referral, history, a slot's seats), 8 threads."""
    from bench.seed import BatchWriter

    collection = f"ceiling_query_{size}"
    writer = BatchWriter(db, progress, f"{size:,} documents to query", size)
    for number in range(size):
        writer.set(collection, f"d{number}", {"key": f"k{number}", "text": "x" * 100}, size=200)
    writer.flush(wait=True)

    def query(_: int, rng: random.Random) -> str:
        wanted = f"k{rng.randrange(size)}"
        found = list(
            db.collection(collection)
            .where(filter=firestore.FieldFilter("key", "==", wanted))
            .stream()
        )
        return "ok" if len(found) == 1 else "wrong"

    phase = run_closed_loop(
        f"ceiling queries among {size:,}",
        query,
        concurrency=8,
        duration_s=cfg.ceiling_s,
        progress=progress,
        warmup_s=0.3,
    )
    summary = phase.summary()
    return {
        "documents": size,
        "queries_per_s_c8": round(rate(phase.operations, phase.elapsed_s), 1),
        "p50_ms_c8": summary["p50_ms"],
        "outcomes": summary["outcomes"],
    }


# -- crowd -----------------------------------------------------------------------------------
def crowd(stack: Stack, cfg: Config, progress: Progress) -> dict[str, Any]:
    rows = [
        _crowd_one(stack, cfg, progress, bookers, points, seats)
        for bookers, points, seats in cfg.crowds
    ]
    return {"runs": rows}


def _warm_search(
    stack: Stack, tokens: list[str], paths: list[str], progress: Progress, port: int = 0
) -> dict[str, Any]:
    """Searches from 16 threads until a whole round answers fast: every worker has loaded
    its directory and its in-memory view of every calendar. Returns the seconds it took and
    the answers it got (a cold instance may answer 503 while its view loads)."""
    http = HttpClient(port or stack.base_port)
    started = time.monotonic()
    rounds = 0
    lock = threading.Lock()
    latencies: list[float] = []
    answers: Counter[str] = Counter()

    def one(path: str, token: str) -> None:
        try:
            response = http.call("GET", path, token=token)
            status, seconds = str(response.status), response.seconds
        except Exception as err:  # noqa: BLE001 (a cold instance may take its time)
            status, seconds = type(err).__name__, 99.0
        with lock:
            answers[status] += 1
            latencies.append(seconds if status == "200" else 99.0)

    while time.monotonic() - started < 300:
        rounds += 1
        latencies.clear()
        threads = [
            threading.Thread(
                target=one,
                args=(
                    paths[(rounds * 16 + i) % len(paths)],
                    tokens[(rounds * 16 + i) % len(tokens)],
                ),
            )
            for i in range(16)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        progress.update(
            f"warming the gateway: round {rounds}, slowest {max(latencies):.2f} s", force=True
        )
        if rounds >= 3 and max(latencies) < 0.5:
            break
    return {"seconds": round(time.monotonic() - started, 1), "answers": dict(answers)}


def _crowd_one(
    stack: Stack, cfg: Config, progress: Progress, bookers: int, points: int, seats: int
) -> dict[str, Any]:
    from common import wiring

    project = new_project("crowd")
    meter = stack.use_project(project, topics=True)
    db = wiring.firestore_client()
    progress.update(f"seeding the opening: {bookers:,} patients, {points} points", force=True)
    opening = seed_opening(
        db,
        project,
        bookers=bookers,
        points=points,
        seats_per_point=seats,
        day=opening_day(clock.now()),
        run=f"c{bookers}",
    )
    warm = _warm_search(
        stack,
        searcher_tokens(project, 64),
        ["/v1/slots?postcode=31-001&limit=5"],
        progress,
    )
    capacity = points * seats
    progress.update(f"crowd: {bookers:,} bookers at once on {capacity} seats ...", force=True)
    before = meter.gateway_counts()
    cpu = stack.cpu()
    started = time.monotonic()
    answers, wall_s = run_crowd(HOST, stack.base_port, opening.bookers, patience_s=cfg.patience_s)
    ended = time.monotonic()
    shares = cpu.stop()
    counts = meter.gateway_counts() - before
    time.sleep(2.5)  # the folder's last round: what search shows catches up
    outcome = judge(db, opening, answers, wall_s)
    hottest = stack.hot(started, time.monotonic())
    booked = outcome.booked
    # The gateway's commits in the crowd are the bookings' (won or lost) and, after each
    # won booking, the outbox event's delete (its own one-delete commit, once published).
    booking_attempts = counts.commit_attempts - counts.deletes
    row = {
        "project": project,
        "bookers": bookers,
        "points": points,
        "seats": capacity,
        "booked": booked,
        "booked_equals_seats": booked == capacity == outcome.seats_in_store,
        "refused_full": outcome.refused_full,
        "refused_other": dict(outcome.refused_other),
        "unanswered": outcome.unanswered,
        "refused_while_free": outcome.refused_while_free,
        "resets": outcome.resets,
        "timeouts": outcome.timeouts,
        "retries_503": outcome.retries_503,
        "retries_429": outcome.retries_429,
        "wall_s": round(wall_s, 2),
        "p50_s": round(outcome.p50_s, 2),
        "p99_s": round(outcome.p99_s, 2),
        "http_attempts_per_winner": round(outcome.mean_attempts_of_winners, 2),
        "commit_attempts": booking_attempts,
        "failed_commits": counts.failed_commits,
        "commit_attempts_per_winner": per_operation(booking_attempts, booked),
        "seats_in_store": outcome.seats_in_store,
        "booked_in_store": outcome.booked_in_store,
        "patients_with_two": outcome.patients_with_two,
        "free_after_fold": sum(outcome.free_after_fold.values()),
        "documents": _as_counts(counts),
        "hot": hottest,
        "cpu": shares,
        "warm_up": warm,
        "ended_after_s": round(ended - started, 2),
    }
    top = (hottest.get("hottest") or {}) if isinstance(hottest, dict) else {}
    progress.done(
        f"crowd {bookers:,} on {capacity}: {booked} booked, {outcome.refused_full} refused "
        f"full, {outcome.unanswered} unanswered, {outcome.refused_while_free} refused while "
        f"free, {outcome.resets} resets, {wall_s:.1f} s, p50 {outcome.p50_s:.2f} s, p99 "
        f"{outcome.p99_s:.2f} s, {row['commit_attempts_per_winner']} commits/winner, hottest "
        f"{top.get('document')} {top.get('writes_per_s')}/s"
    )
    return row


# -- the country: one dataset for search, booking and the peak ---------------------------------
@dataclass
class Country:
    project: str
    meter: Any
    points: list[dict[str, Any]]
    single_dose_slots: list[str]  # every one-dose slot of the 9 days (uncontended bookings)
    early_single: list[list[str]]  # per cost point: one-dose slots of its first 14 days
    early_two: list[list[str]]  # per cost point: two-dose slots of its first 7 days
    searchers: list[str]  # patients' tokens: searches come from many people (quotas)
    search_paths: list[str]
    pesels: list[str]
    next_patient: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def patients(self, count: int) -> list[tuple[str, str]]:
        """`count` patients never used before, each with a token."""
        with self.lock:
            start = self.next_patient
            self.next_patient = min(len(self.pesels), start + count)
            chosen = self.pesels[start : self.next_patient]
        return [(p, mint_id_token(self.project, f"p-{p}", role="patient", pesel=p)) for p in chosen]

    def patient(self) -> tuple[str, str] | None:
        taken = self.patients(1)
        return taken[0] if taken else None


def searcher_tokens(project: str, count: int) -> list[str]:
    """Tokens of `count` distinct adult patients (not seeded: a search needs none)."""
    return [
        mint_id_token(project, f"searcher-{n}", role="patient", pesel=pesel)
        for n, pesel in enumerate(patient_pesels(count, offset=1_000_000))
    ]


def _search_paths(points: list[dict[str, Any]], count: int, seed: int) -> list[str]:
    """Like the portal's: a patient's postcode near a point, a product half the time, 5
    results (the default radius, 50 km)."""
    rng = random.Random(seed)
    paths = []
    for _ in range(count):
        point = rng.choice(points)
        query: dict[str, Any] = {"postcode": point["postcode"], "limit": 5}
        if rng.random() < 0.5:
            query["product"] = rng.choice(point["products"])
        paths.append(f"/v1/slots?{urlencode(query)}")
    return paths


def country(stack: Stack, cfg: Config, progress: Progress) -> Country:
    """Seeded once per run; the gateway is pointed (back) at it when another scenario moved
    it elsewhere."""
    from common import wiring

    cached: Country | None = stack.cache.get("country")
    if cached is not None:
        if stack.project != cached.project:
            cached.meter = stack.use_project(cached.project, topics=True)
        return cached
    project = new_project("country")
    meter = stack.use_project(project, topics=True)
    db = wiring.firestore_client()
    today = today_warsaw()
    everything = bench_points(cfg.country_points + cfg.cost_points)
    points, cost_points = everything[: cfg.country_points], everything[cfg.country_points :]
    for point in cost_points:
        point["products"] = [SINGLE_DOSE, TWO_DOSE]
    started = time.monotonic()
    calendars = seed_points(
        db,
        points,
        today + timedelta(days=1),
        cfg.country_days,
        progress,
        label=f"{cfg.country_points:,} points x {cfg.country_days} days",
        directory=False,
    )
    cost_calendars = seed_points(
        db,
        cost_points,
        today + timedelta(days=1),
        cfg.cost_days,
        progress,
        label=f"{cfg.cost_points} points x {cfg.cost_days} days",
        directory=False,
    )
    seed_directory(db, everything, progress)
    patients = cfg.booking_patients + cfg.peak_patients() + 3 * cfg.cost_samples
    pesels = patient_pesels(patients)
    seed_patients(db, pesels, wiring.settings().pesel_hash_key, today, progress)
    seeded_s = time.monotonic() - started
    single = [s for c in calendars for s in slot_ids(c, SINGLE_DOSE)]
    early_single = [
        slot_ids({**c, "days": dict(sorted(c["days"].items())[:14])}, SINGLE_DOSE)
        for c in cost_calendars
    ]
    early_two = [
        slot_ids({**c, "days": dict(sorted(c["days"].items())[:7])}, TWO_DOSE)
        for c in cost_calendars
    ]
    result = Country(
        project=project,
        meter=meter,
        points=everything,
        single_dose_slots=single,
        early_single=early_single,
        early_two=early_two,
        searchers=searcher_tokens(project, cfg.searchers),
        search_paths=_search_paths(points, cfg.search_paths, 7),
        pesels=pesels,
    )
    slots = sum(len(day) for c in calendars + cost_calendars for day in c["days"].values())
    stack.cache["country"] = result
    stack.cache["country_facts"] = {
        "points": len(everything),
        "days": cfg.country_days,
        "slots": slots,
        "seats": slots * 3,
        "one_dose_slots": len(single),
        "patients": len(pesels),
        "seed_s": round(seeded_s, 1),
    }
    progress.done(
        f"country seeded: {len(everything):,} points, {slots:,} slots, {len(pesels):,} "
        f"patients in {seeded_s:.0f} s"
    )
    return result


# -- search ----------------------------------------------------------------------------------
def search(stack: Stack, cfg: Config, progress: Progress) -> dict[str, Any]:
    land = country(stack, cfg, progress)
    meter = land.meter
    before = meter.gateway_counts()
    warm = _warm_search(stack, land.searchers, land.search_paths, progress)
    cold = _as_counts(meter.gateway_counts() - before)
    sequential = _sequential_searches(stack, cfg, land, progress)
    levels = []
    wrk_path = wrk.find_wrk()
    if wrk_path is None:
        levels.append({"error": "wrk is not installed (make bench-tools, or apt-get install wrk)"})
    else:
        script = stack.logs / "search.lua"
        script.write_text(
            wrk.lua_script(
                land.search_paths,
                {"Accept": "application/json"},
                tokens=land.searchers[: cfg.wrk_tokens],
            )
        )
        for connections in cfg.search_connections:
            levels.append(_wrk_level(stack, cfg, land, wrk_path, script, connections, progress))
    return {
        "project": land.project,
        "country": stack.cache["country_facts"],
        "warm_up_s": warm["seconds"],
        "warm_up_answers": warm["answers"],
        "warm_up_documents": cold,
        "sequential": sequential,
        "levels": levels,
    }


def _sequential_searches(stack, cfg, land: Country, progress) -> dict[str, Any]:
    """One search at a time, each counted on its own: documents read per warm search."""
    http = HttpClient(stack.base_port)
    reads, billed, latencies, items = [], [], [], []
    for number in range(cfg.search_sequential):
        path = land.search_paths[number % len(land.search_paths)]
        before = land.meter.gateway_counts()
        token = land.searchers[number % len(land.searchers)]
        response = http.call("GET", path, token=token)
        delta = land.meter.gateway_counts() - before
        if response.status != 200:
            raise RuntimeError(f"search failed: {response.status} {response.body}")
        reads.append(delta.reads)
        billed.append(delta.billed_reads)
        latencies.append(response.seconds)
        items.append(len(response.body["items"]))
        progress.update(f"sequential searches: {number + 1}/{cfg.search_sequential}")
    count = len(reads)
    return {
        "searches": count,
        "reads_per_search": per_operation(sum(reads), count),
        "reads_max": max(reads),
        "billed_reads_per_search": per_operation(sum(billed), count),
        "items_per_page": round(sum(items) / count, 2),
        "p50_ms": _ms(percentile(latencies, 50)),
        "p99_ms": _ms(percentile(latencies, 99)),
    }


def _wrk_level(stack, cfg, land: Country, wrk_path, script, connections, progress):
    argv = wrk.command(
        wrk_path,
        f"http://{HOST}:{stack.base_port}/",
        script,
        connections=connections,
        threads=cfg.wrk_threads,
        duration_s=cfg.search_s,
    )
    progress.update(f"search: wrk, {connections} connections, {cfg.search_s:.0f} s ...", force=True)
    before = land.meter.gateway_counts()
    process = wrk.start(argv)
    cpu = stack.cpu()
    output, wrk_cpu_s = wrk.finish(process)
    shares = cpu.stop(exited={"wrk": wrk_cpu_s})
    delta = land.meter.gateway_counts() - before
    try:
        row = wrk.parse(output)
    except ValueError as err:
        return {"connections": connections, "error": str(err)[:500]}
    row.update(
        connections=connections,
        threads=min(cfg.wrk_threads, connections),
        reads_per_search=per_operation(delta.reads, row["requests"]),
        billed_reads_per_search=per_operation(delta.billed_reads, row["requests"]),
        writes=delta.writes,
        cpu=shares,
        command=" ".join(argv),
    )
    if cfg.profile and connections == max(cfg.search_connections):
        # Again, unmeasured, with py-spy attached: the measured run stays unperturbed.
        again = wrk.command(
            wrk_path,
            f"http://{HOST}:{stack.base_port}/",
            script,
            connections=connections,
            threads=cfg.wrk_threads,
            duration_s=cfg.profile_s,
        )
        process = wrk.start(again)
        profiled = _Profile(stack, cfg, f"search-c{connections}", cfg.profile_s)
        wrk.finish(process)
        row["profile"] = profiled.finish()
    progress.done(
        f"search c={connections}: {row['requests_per_s']:,.0f}/s, p50 {row['p50_ms']} ms, p99 "
        f"{row['p99_ms']} ms, {row['failed']} errors, {row['reads_per_search']} reads/search, "
        f"cores {shares.get('cores')}"
    )
    return row


# -- booking ---------------------------------------------------------------------------------
def _book(http: HttpClient, token: str, slot_id: str) -> tuple[str, Any]:
    response = http.call(
        "POST",
        "/v1/appointments",
        token=token,
        body={"slot_id": slot_id},
        idempotency_key=uuid.uuid4().hex,
    )
    if response.status == 201:
        return "ok", response.body
    code = error_code(response)
    if response.status == 409 and code == "slot_unavailable":
        return "refused_full", code
    return f"failed:{response.status}:{code}", response.body


def booking(stack: Stack, cfg: Config, progress: Progress) -> dict[str, Any]:
    land = country(stack, cfg, progress)
    http = HttpClient(stack.base_port)
    result: dict[str, Any] = {"project": land.project, "layer": "http"}
    result["cost"] = _booking_costs(cfg, progress, land, http)
    result["uncontended"] = [
        _uncontended(stack, cfg, progress, land, clients) for clients in cfg.booking_clients
    ]
    return result


def _booking_costs(cfg, progress, land: Country, http: HttpClient) -> dict[str, Any]:
    """Documents per operation, one at a time (no contention): what each operation costs."""
    rng = random.Random(5)
    meter = land.meter
    rows: dict[str, Any] = {}
    booked = []
    for label, slots_by_point in (
        ("book_single_dose", land.early_single),
        ("book_two_doses", land.early_two),
    ):
        counts: Counter[str] = Counter()
        latencies = []
        for done, (_, token) in enumerate(land.patients(cfg.cost_samples), start=1):
            before = meter.counts()
            started = time.perf_counter()
            outcome, body = _book(http, token, rng.choice(rng.choice(slots_by_point)))
            latencies.append(time.perf_counter() - started)
            if outcome != "ok":
                raise RuntimeError(f"a booking with no contention failed: {outcome} {body}")
            counts.update(_as_counts(meter.counts() - before))
            if label == "book_single_dose":
                booked.append((token, body["appointments"][0]))
            progress.update(f"booking cost, {label}: {done}/{cfg.cost_samples}")
        rows[label] = _cost_row(counts, cfg.cost_samples, latencies)
    half = len(booked) // 2
    for label, subset in (("reschedule", booked[:half]), ("cancel", booked[half:])):
        counts = Counter()
        latencies = []
        for token, appointment in subset:
            before = meter.counts()
            started = time.perf_counter()
            if label == "cancel":
                path = f"/v1/appointments/{appointment['appointment_id']}/cancel"
                body: dict[str, Any] = {}
            else:
                path = f"/v1/appointments/{appointment['appointment_id']}/reschedule"
                choices = [s for s in rng.choice(land.early_single) if s != appointment["slot_id"]]
                body = {"slot_id": rng.choice(choices)}
            response = http.call(
                "POST", path, token=token, body=body, idempotency_key=uuid.uuid4().hex
            )
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"{label} failed: {response.status} {response.body}")
            counts.update(_as_counts(meter.counts() - before))
        rows[label] = _cost_row(counts, len(subset), latencies)
    progress.done(
        "booking cost: "
        + ", ".join(f"{k} {v['reads']} reads + {v['writes']} writes" for k, v in rows.items())
    )
    return rows


def _cost_row(counts: Counter[str], done: int, latencies: list[float]) -> dict[str, Any]:
    return {
        "samples": done,
        "reads": per_operation(counts["reads"], done),
        "writes": per_operation(counts["writes"], done),
        "queries": per_operation(counts["queries"], done),
        "empty_queries": per_operation(counts["empty_queries"], done),
        "aggregations": per_operation(counts["aggregations"], done),
        "commits": per_operation(counts["commits"], done),
        "failed_commits": per_operation(counts["failed_commits"], done),
        "billed_reads": per_operation(counts["billed_reads"], done),
        "billed_writes": per_operation(counts["billed_writes"], done),
        "billed_deletes": per_operation(counts["deletes"], done),
        "p50_ms": _ms(percentile(latencies, 50)),
    }


def _uncontended(stack, cfg, progress, land: Country, clients: int) -> dict[str, Any]:
    """`clients` bookers back to back, each a new patient booking a random one-dose slot of
    the country (~1,400 points x 9 days: no two bookers meet)."""
    slots = land.single_dose_slots

    def operation(_: int, rng: random.Random) -> str:
        taken = land.patient()
        if taken is None:
            return "stop"
        _, token = taken
        for _attempt in range(5):
            outcome, _body = _book(http, token, rng.choice(slots))
            if outcome != "refused_full":
                return outcome
        return "refused_full"

    http = HttpClient(stack.base_port)
    cpu = stack.cpu()
    started = time.monotonic()
    phase = run_closed_loop(
        "bookings, no contention",
        operation,
        concurrency=clients,
        duration_s=cfg.booking_s,
        progress=progress,
        snapshot=land.meter.counts,
        warmup_s=1.0,
    )
    shares = cpu.stop()
    counts = _as_counts(phase.window_counts)
    summary = phase.summary()
    booked = phase.outcomes["ok"]
    summary.update(
        clients=clients,
        succeeded=booked,
        refused_full=phase.outcomes["refused_full"],
        failed=sum(n for k, n in phase.outcomes.items() if k not in ("ok", "refused_full")),
        bookings_per_s=summary["succeeded_per_s"],
        reads_per_booking=per_operation(counts["reads"], booked),
        writes_per_booking=per_operation(counts["writes"], booked),
        commit_attempts_per_booking=per_operation(counts["commit_attempts"], booked),
        hot=stack.hot(started, time.monotonic()),
        cpu=shares,
    )
    return summary


# -- the peak hour, open loop ------------------------------------------------------------------
@dataclass
class _Held:
    pesel: str
    token: str
    appointment_id: str
    slot_id: str


def peak(stack: Stack, cfg: Config, progress: Progress) -> dict[str, Any]:
    land = country(stack, cfg, progress)
    warm = _warm_search(stack, land.searchers, land.search_paths, progress)
    search_port = stack.base_port
    if cfg.peak_search_gateway:
        search_port = stack.start_search_gateway()
        warm = _warm_search(stack, land.searchers, land.search_paths, progress, search_port)
    host = f"{HOST}:{stack.base_port}"
    paths, searchers = land.search_paths, land.searchers
    pool: deque[tuple[str, str]] = deque(land.patients(cfg.peak_patients()))
    held: list[_Held] = []
    slots = land.single_dose_slots

    def failed(answer: Answer) -> str:
        return f"failed:{answer.status}:{answer.code}"

    def search_op(rng: random.Random) -> Call:
        def verdict(answer: Answer) -> str:
            return "ok" if answer.status == 200 else failed(answer)

        request = request_bytes(
            host,
            "GET",
            paths[rng.randrange(len(paths))],
            token=searchers[rng.randrange(len(searchers))],
            keep_alive=True,
        )
        return Call(request, verdict, parse=False)

    def book_op(rng: random.Random) -> Call | None:
        if not pool:
            return None
        pesel, token = pool.popleft()
        slot = rng.choice(slots)
        request = request_bytes(
            host,
            "POST",
            "/v1/appointments",
            token=token,
            body={"slot_id": slot},
            key=uuid.uuid4().hex,
            keep_alive=True,
        )

        def verdict(answer: Answer) -> str:
            if answer.status == 201:
                first = answer.body["appointments"][0]
                held.append(_Held(pesel, token, first["appointment_id"], first["slot_id"]))
                return "ok"
            pool.append((pesel, token))
            if answer.status == 409 and answer.code == "slot_unavailable":
                return "refused_full"
            return failed(answer)

        return Call(request, verdict)

    def take_held(rng: random.Random) -> _Held | None:
        if not held:
            return None
        index = rng.randrange(len(held))
        held[index], held[-1] = held[-1], held[index]
        return held.pop()

    def cancel_op(rng: random.Random) -> Call | None:
        entry = take_held(rng)
        if entry is None:
            return None
        request = request_bytes(
            host,
            "POST",
            f"/v1/appointments/{entry.appointment_id}/cancel",
            token=entry.token,
            body={},
            key=uuid.uuid4().hex,
            keep_alive=True,
        )

        def verdict(answer: Answer) -> str:
            if answer.status == 200:
                pool.append((entry.pesel, entry.token))
                return "ok"
            held.append(entry)
            return failed(answer)

        return Call(request, verdict)

    def reschedule_op(rng: random.Random) -> Call | None:
        entry = take_held(rng)
        if entry is None:
            return None
        target = rng.choice(slots)
        while target == entry.slot_id:
            target = rng.choice(slots)
        request = request_bytes(
            host,
            "POST",
            f"/v1/appointments/{entry.appointment_id}/reschedule",
            token=entry.token,
            body={"slot_id": target},
            key=uuid.uuid4().hex,
            keep_alive=True,
        )

        def verdict(answer: Answer) -> str:
            held.append(entry)
            if answer.status == 200:
                entry.slot_id = target
                return "ok"
            if answer.status == 409 and answer.code == "slot_unavailable":
                return "refused_full"
            return failed(answer)

        return Call(request, verdict)

    operations = {
        "search": search_op,
        "book": book_op,
        "cancel": cancel_op,
        "reschedule": reschedule_op,
    }
    rates = {k: v for k, v in cfg.peak_rates.items() if k in operations and v > 0}
    last_tick = [0.0, 0]

    def tick(elapsed: float, kinds, in_flight: int) -> None:
        answered = sum(k.answered for k in kinds.values())
        failures = sum(k.failed for k in kinds.values())
        recent = (answered - last_tick[1]) / max(1e-9, elapsed - last_tick[0])
        last_tick[:] = [elapsed, answered]
        progress.update(
            f"peak mix: {elapsed:5.0f}/{cfg.peak_s:.0f} s, {answered:,} answered "
            f"({recent:,.0f}/s now, target {sum(rates.values()):,.0f}/s), {in_flight:,} in "
            f"flight, {failures} failed"
        )

    before = land.meter.counts()
    folder_before = stack.folder.counts(land.project)
    cpu = stack.cpu()
    profiled = _Profile(stack, cfg, "peak", cfg.peak_s, search=cfg.peak_search_gateway)
    progress.update(f"peak mix: {rates} for {cfg.peak_s:.0f} s ...", force=True)
    result = run_open_loop(
        HOST,
        stack.base_port,
        rates,
        cfg.peak_s,
        operations,
        start_after={"cancel": cfg.peak_changes_after_s, "reschedule": cfg.peak_changes_after_s},
        connections=cfg.peak_connections,
        patience_s=cfg.patience_s,
        on_tick=tick,
        ports={"search": search_port},
    )
    shares = cpu.stop()
    counts = _as_counts(land.meter.counts() - before)
    folder = stack.folder.counts(land.project) - folder_before
    summary = result.summary()
    elapsed = result.duration_s
    summary.update(
        project=land.project,
        rates=rates,
        connections=cfg.peak_connections,
        warm_up=warm,
        documents=counts,
        reads_per_s=round(rate(counts["reads"], elapsed), 1),
        writes_per_s=round(rate(counts["writes"] + folder.writes, elapsed), 1),
        folder_writes=folder.writes,
        hot=stack.hot(result.started_monotonic, result.ended_monotonic + 2),
        cpu=shares,
        bookings_held_at_end=len(held),
        search_gateway=cfg.peak_search_gateway,
    )
    stack.stop_search_gateway()
    profile = profiled.finish()
    if profile is not None:
        summary["profile"] = profile
    kinds = summary["kinds"]
    progress.done(
        "peak mix: "
        + ", ".join(
            f"{k} {v['answered_per_s']}/s of {rates.get(k)} (p99 {v['p99_ms']} ms)"
            for k, v in kinds.items()
        )
        + f"; {summary['failed']} failed"
    )
    return summary
