"""The four scenarios: emulator ceiling, search, booking, compressed national peak.

Every scenario uses a fresh project id (its own empty database in the emulator) and counts
documents with the shared exact DocumentMeter (common/adapters/firestore_metering.py) on the
very client that does the work. Two layers are measured where it helps:
- service: threads call SearchService directly (Firestore cost and the service's own CPU);
- http: real HTTP requests with ID tokens through the gateway and the functions (what a
  client sees; includes authentication, validation, idempotency records, JSON).
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

from bench.harness import HttpClient, Stack, error_code, new_project, run_closed_loop
from bench.mix import PEAK_FALLBACKS, PEAK_WEIGHTS, MixScheduler
from bench.progress import Progress
from bench.seed import bench_points, patient_pesels, seed_patients, seed_points, slot_ids
from bench.stats import per_operation, percentile, rate
from common import clock
from common.adapters.firestore_store import SEATS
from common.domain.calendar import WARSAW
from emulator.identities import mint_id_token

SINGLE_DOSE = "jcovden"
TWO_DOSE = "comirnaty"
ADULT_PRODUCTS = {
    "comirnaty": 10.0,
    "spikevax": 4.0,
    "vaxzevria": 2.0,
    "jcovden": 1.5,
    "nuvaxovid": 1.0,
}


@dataclass
class Config:
    mode: str = "default"
    scenarios: tuple[str, ...] = ("ceiling", "search", "booking", "peak")
    ceiling_s: float = 5.0
    search_sizes: tuple[tuple[int, int], ...] = ((100, 9), (1000, 9), (7000, 9))
    search_samples: int = 200
    search_levels: tuple[int, ...] = (1, 8, 32)
    search_layers: tuple[str, ...] = ("service", "http")
    phase_s: float = 10.0
    booking_points: int = 300
    booking_days: int = 45
    cost_samples: int = 20
    rush_slots: int = 16
    rush_capacity: int = 3
    rush_levels: tuple[int, ...] = (16, 48, 144)
    many_levels: tuple[int, ...] = (1, 8, 32)
    many_patients: int = 2500
    peak_points: int = 1000
    peak_days: int = 45
    peak_concurrency: int = 32
    peak_s: float = 180.0
    peak_patients: int = 4000

    @classmethod
    def quick(cls) -> Config:
        return cls(
            mode="quick",
            ceiling_s=1.0,
            search_sizes=((100, 3), (500, 3), (1000, 3)),
            search_samples=30,
            search_levels=(1, 4, 16),
            phase_s=2.0,
            booking_points=40,
            booking_days=45,
            cost_samples=4,
            rush_slots=8,
            rush_capacity=2,
            rush_levels=(8, 16, 48),
            many_levels=(1, 4, 16),
            many_patients=250,
            peak_points=150,
            peak_concurrency=8,
            peak_s=12.0,
            peak_patients=300,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def today_warsaw() -> date:
    return clock.now().astimezone(WARSAW).date()


def _counts(meter, before) -> dict[str, int]:
    return _as_counts(meter.counts() - before)


def _as_counts(delta) -> dict[str, int]:
    """Documents counted, and what Firestore bills for them (an empty query is one read)."""
    return asdict(delta) | {
        "billed_reads": delta.billed_reads,
        "billed_writes": delta.billed_writes,
    }


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
    return results


# -- search ----------------------------------------------------------------------------------
def _search_queries(
    points: list[dict[str, Any]], count: int, seed: int, radius_km: float = 50
) -> list[dict[str, Any]]:
    """Queries like the portal's: a patient's postcode, a product half the time, 5 results."""
    rng = random.Random(seed)
    queries = []
    for _ in range(count):
        point = rng.choice(points)
        query: dict[str, Any] = {"postcode": point["postcode"], "limit": 5, "radius_km": radius_km}
        if rng.random() < 0.5:
            query["product"] = rng.choice(point["products"])
        queries.append(query)
    return queries


def search(stack: Stack, cfg: Config, progress: Progress) -> dict[str, Any]:
    from common import wiring
    from common.services.search import SearchQuery, SearchService

    sizes = []
    throughput = []
    first_day = today_warsaw() + timedelta(days=1)
    for index, (count, days) in enumerate(cfg.search_sizes):
        project = new_project("search")
        meter = stack.use_project(project)
        db = wiring.firestore_client()
        points = bench_points(count)
        seed_started = time.monotonic()
        seed_points(db, points, first_day, days, progress, label=f"{count:,} points x {days} days")
        seed_s = time.monotonic() - seed_started
        service = SearchService(db, wiring.rule_book())
        # A 300 km radius gives every size a full page of candidates, so the figure compares
        # like with like: the documents one page costs (a sparse country costs fewer).
        raw = _search_queries(points, cfg.search_samples + 1, 7, radius_km=300)
        queries = [SearchQuery(**q) for q in raw]
        now = clock.now()
        before = meter.counts()
        started = time.perf_counter()
        service.search(queries[0], now)
        cold_s = time.perf_counter() - started
        cold = _counts(meter, before)
        reads, latencies, items, writes, empty = [], [], [], 0, 0
        for number, query in enumerate(queries[1:], start=1):
            before = meter.counts()
            started = time.perf_counter()
            page = service.search(query, now)
            latencies.append(time.perf_counter() - started)
            delta = meter.counts() - before
            reads.append(delta.reads)
            writes += delta.writes
            items.append(len(page["items"]))
            empty += not page["items"]
            progress.update(f"search reads, {count:,} points: {number}/{cfg.search_samples}")
        slots = count * days * 16
        row = {
            "points": count,
            "days": days,
            "slots": slots,
            "documents_seeded": 2 * count + -(-count // 2000),
            "seed_s": round(seed_s, 1),
            "searches": len(reads),
            "cold_reads": cold["reads"],
            "cold_ms": round(cold_s * 1000, 1),
            "reads_per_search_mean": round(sum(reads) / len(reads), 3),
            "reads_per_search_p50": percentile(reads, 50),
            "reads_per_search_max": max(reads),
            "reads_per_search_min": min(reads),
            "writes_per_search": per_operation(writes, len(reads)),
            "items_per_page_mean": round(sum(items) / len(items), 2),
            "empty_pages": empty,
            "sequential_p50_ms": round(1000 * (percentile(latencies, 50) or 0), 2),
            "sequential_p99_ms": round(1000 * (percentile(latencies, 99) or 0), 2),
        }
        sizes.append(row)
        progress.done(
            f"search {count:,} points / {slots:,} slots: cold {cold['reads']} reads, warm "
            f"{row['reads_per_search_mean']} reads/search (max {row['reads_per_search_max']}), "
            f"p50 {row['sequential_p50_ms']} ms"
        )
        if index == len(cfg.search_sizes) - 1:
            throughput = _search_throughput(stack, cfg, progress, meter, service, points)
    return {"sizes": sizes, "throughput": throughput, "dataset_for_throughput": sizes[-1]["points"]}


def _search_throughput(stack, cfg, progress, meter, service, points) -> list[dict[str, Any]]:
    from common.services.search import SearchQuery

    raw = _search_queries(points, 2000, 11)
    parsed = [SearchQuery(**q) for q in raw]
    paths = [f"/v1/slots?{urlencode(q)}" for q in raw]
    http = HttpClient(stack.base_port)
    token = mint_id_token(
        service.db.project, "bench-searcher", role="patient", pesel=patient_pesels(1)[0]
    )
    rows = []

    def via_service(_: int, rng: random.Random) -> str:
        page = service.search(rng.choice(parsed), clock.now())
        return "ok" if page["items"] else "empty"

    def via_http(_: int, rng: random.Random) -> str:
        response = http.call("GET", rng.choice(paths), token=token)
        if response.status != 200:
            return f"failed:{response.status}:{error_code(response)}"
        return "ok" if response.body["items"] else "empty"

    for layer in cfg.search_layers:
        op = via_service if layer == "service" else via_http
        if layer == "http":
            http.call("GET", paths[0], token=token)  # the instance loads its directory once
        for level in cfg.search_levels:
            phase = run_closed_loop(
                f"search/{layer}",
                op,
                concurrency=level,
                duration_s=cfg.phase_s,
                progress=progress,
                warmup_s=0.5,
                snapshot=meter.counts,
            )
            summary = phase.summary(("ok", "empty"))
            summary["layer"] = layer
            # Reads in the window over searches completed in it (in-flight ones at either
            # edge make this approximate; the exact per-search figure is in "sizes").
            summary["reads_per_search"] = per_operation(phase.window_counts.reads, phase.operations)
            rows.append(summary)
    return rows


# -- booking ---------------------------------------------------------------------------------
@dataclass
class Patients:
    """A pool of patients with tokens, handed out once each (thread-safe)."""

    project: str
    pesels: list[str]
    index: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> tuple[str, str] | None:
        with self.lock:
            if self.index >= len(self.pesels):
                return None
            pesel = self.pesels[self.index]
            self.index += 1
        token = mint_id_token(self.project, f"p-{pesel}", role="patient", pesel=pesel)
        return pesel, token

    def take_many(self, count: int) -> list[tuple[str, str]]:
        taken = [self.take() for _ in range(count)]
        if any(t is None for t in taken):
            raise RuntimeError("not enough patients seeded for this phase")
        return [t for t in taken if t is not None]


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
    from common import wiring

    project = new_project("booking")
    meter = stack.use_project(project, topics=True)
    db = wiring.firestore_client()
    today = today_warsaw()
    all_points = bench_points(cfg.booking_points + len(cfg.rush_levels), (SINGLE_DOSE, TWO_DOSE))
    points = all_points[: cfg.booking_points]
    rush_points = all_points[cfg.booking_points :]
    calendars = seed_points(
        db, points, today + timedelta(days=1), cfg.booking_days, progress, label="booking points"
    )
    rush_day = today + timedelta(days=2)
    for point in rush_points:
        point["products"] = [SINGLE_DOSE]
    seed_points(
        db,
        rush_points,
        rush_day,
        1,
        progress,
        slots_per_day=cfg.rush_slots,
        capacity=cfg.rush_capacity,
        label="rush point-days",
    )
    needed = 3 * cfg.cost_samples + sum(cfg.rush_levels) + cfg.many_patients
    pesels = patient_pesels(needed)
    seed_patients(db, pesels, wiring.settings().pesel_hash_key, today, progress)
    patients = Patients(project, pesels)
    http = HttpClient(stack.base_port)
    early = [
        slot_ids({**c, "days": dict(sorted(c["days"].items())[:14])}, SINGLE_DOSE)
        for c in calendars
    ]
    early_two = [
        slot_ids({**c, "days": dict(sorted(c["days"].items())[:7])}, TWO_DOSE) for c in calendars
    ]
    result: dict[str, Any] = {
        "project": project,
        "points": cfg.booking_points,
        "days": cfg.booking_days,
        "layer": "http",
    }
    result["cost"] = _booking_costs(cfg, progress, meter, http, patients, early, early_two)
    result["rush"] = [
        _rush(cfg, progress, meter, db, http, patients, point, rush_day, level)
        for point, level in zip(rush_points, cfg.rush_levels, strict=True)
    ]
    result["many"] = [
        _many(cfg, progress, meter, http, patients, early, level) for level in cfg.many_levels
    ]
    return result


def _booking_costs(cfg, progress, meter, http, patients, early, early_two) -> dict[str, Any]:
    """Documents per operation, one at a time (no contention): what each operation costs."""
    rng = random.Random(5)
    rows: dict[str, Any] = {}
    booked = []
    for label, slots_by_point in (("book_single_dose", early), ("book_two_doses", early_two)):
        counts: Counter[str] = Counter()
        latencies = []
        done = 0
        for _ in range(cfg.cost_samples):
            _, token = patients.take_many(1)[0]
            before = meter.counts()
            started = time.perf_counter()
            outcome, body = _book(http, token, rng.choice(rng.choice(slots_by_point)))
            latencies.append(time.perf_counter() - started)
            if outcome != "ok":
                raise RuntimeError(f"a booking with no contention failed: {outcome} {body}")
            counts.update(_counts(meter, before))
            done += 1
            if label == "book_single_dose":
                booked.append((token, body["appointments"][0]))
            progress.update(f"booking cost, {label}: {done}/{cfg.cost_samples}")
        rows[label] = _cost_row(counts, done, latencies)
    half = len(booked) // 2
    for label, subset in (("reschedule", booked[:half]), ("cancel", booked[half:])):
        counts = Counter()
        latencies = []
        for token, appointment in subset:
            before = meter.counts()
            started = time.perf_counter()
            if label == "cancel":
                path = f"/v1/appointments/{appointment['appointment_id']}/cancel"
                response = http.call(
                    "POST", path, token=token, body={}, idempotency_key=uuid.uuid4().hex
                )
            else:
                path = f"/v1/appointments/{appointment['appointment_id']}/reschedule"
                target = rng.choice(rng.choice(early))
                response = http.call(
                    "POST",
                    path,
                    token=token,
                    body={"slot_id": target},
                    idempotency_key=uuid.uuid4().hex,
                )
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"{label} failed: {response.status} {response.body}")
            counts.update(_counts(meter, before))
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
        "commits": per_operation(counts["commits"], done),
        "billed_reads": per_operation(counts["billed_reads"], done),
        "billed_writes": per_operation(counts["billed_writes"], done),
        "billed_deletes": per_operation(counts["deletes"], done),
        "p50_ms": round(1000 * (percentile(latencies, 50) or 0), 1),
    }


def _rush(cfg, progress, meter, db, http, patients, point, day, bookers) -> dict[str, Any]:
    """`bookers` patients released at once on ONE point-day, each like a real portal client:
    list the day's free slots, book one at random, look again when it has just filled."""
    capacity = cfg.rush_slots * cfg.rush_capacity
    crowd = patients.take_many(bookers)
    barrier = threading.Barrier(bookers + 1)
    lock = threading.Lock()
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    attempts: list[int] = []
    errors: list[str] = []
    listing = f"/v1/points/{point['point_id']}/slots?" + urlencode(
        {"date_from": day.isoformat(), "date_to": day.isoformat(), "product": SINGLE_DOSE}
    )

    def booker(index: int) -> None:
        _, token = crowd[index]
        rng = random.Random(index)
        barrier.wait()
        started = time.perf_counter()
        outcome, tries = "failed:gave_up", 0
        try:
            while tries < 60:
                tries += 1
                free = http.call("GET", listing, token=token)
                if free.status != 200:
                    outcome = f"failed:listing:{free.status}"
                    break
                if not free.body["slots"]:
                    outcome = "refused_full"
                    break
                outcome, _ = _book(http, token, rng.choice(free.body["slots"])["slot_id"])
                if outcome != "refused_full":
                    break  # booked, or failed: a refusal is only final when the day is full
        except Exception as err:  # noqa: BLE001
            outcome = f"failed:{type(err).__name__}"
            errors.append(str(err)[:200])
        with lock:
            outcomes["ok" if outcome == "ok" else outcome] += 1
            latencies.append(time.perf_counter() - started)
            attempts.append(tries)

    threads = [threading.Thread(target=booker, args=(i,), daemon=True) for i in range(bookers)]
    for thread in threads:
        thread.start()
    before = meter.counts()
    started = time.monotonic()
    barrier.wait()
    while any(t.is_alive() for t in threads):
        progress.update(
            f"rush {bookers} bookers -> one point-day of {capacity} seats: "
            f"{sum(outcomes.values())} done, {dict(outcomes)}"
        )
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    counts = _counts(meter, before)
    seats = list(
        db.collection(SEATS)
        .where(filter=firestore.FieldFilter("point_id", "==", point["point_id"]))
        .stream()
    )
    booked = outcomes["ok"]
    row = {
        "target": "one point-day",
        "bookers": bookers,
        "seats": capacity,
        "succeeded": booked,
        "refused_full": outcomes["refused_full"],
        "failed": sum(n for k, n in outcomes.items() if k.startswith("failed")),
        "failures": {k: n for k, n in outcomes.items() if k.startswith("failed")},
        "expected_succeeded": min(bookers, capacity),
        "seats_taken": len(seats),
        "oversold": max(0, len(seats) - capacity),
        "consistent": len(seats) == booked,
        "elapsed_s": round(elapsed, 2),
        "bookings_per_s": round(rate(booked, elapsed), 2),
        "p50_ms": round(1000 * (percentile(latencies, 50) or 0), 1),
        "p99_ms": round(1000 * (percentile(latencies, 99) or 0), 1),
        "attempts_mean": round(sum(attempts) / len(attempts), 2),
        "reads_per_booking": per_operation(counts["reads"], booked),
        "writes_per_booking": per_operation(counts["writes"], booked),
        "billed_reads_per_booking": per_operation(counts["billed_reads"], booked),
        "error_samples": errors[:3],
    }
    progress.done(
        f"rush {bookers} bookers -> {capacity} seats: {booked} booked, {row['refused_full']} "
        f"refused as full, {row['failed']} failed, {elapsed:.1f} s, oversold {row['oversold']}"
    )
    return row


def _many(cfg, progress, meter, http, patients, early, level) -> dict[str, Any]:
    """`level` bookers at once, each booking at a random point-day among many (no hot spot)."""

    def operation(_: int, rng: random.Random) -> str:
        taken = patients.take()
        if taken is None:
            return "stop"
        _, token = taken
        for _attempt in range(5):
            outcome, _body = _book(http, token, rng.choice(rng.choice(early)))
            if outcome != "refused_full":
                return outcome
        return "refused_full"

    phase = run_closed_loop(
        "booking many point-days",
        operation,
        concurrency=level,
        duration_s=cfg.phase_s,
        progress=progress,
        snapshot=meter.counts,
    )
    counts = _as_counts(phase.window_counts)
    summary = phase.summary()
    booked = phase.outcomes["ok"]
    summary.update(
        target="many point-days",
        succeeded=booked,
        refused_full=phase.outcomes["refused_full"],
        failed=sum(n for k, n in phase.outcomes.items() if k not in ("ok", "refused_full")),
        bookings_per_s=summary["succeeded_per_s"],
        reads_per_booking=per_operation(counts["reads"], booked),
        writes_per_booking=per_operation(counts["writes"], booked),
        billed_reads_per_booking=per_operation(counts["billed_reads"], booked),
        patients_left=len(patients.pesels) - patients.index,
    )
    return summary


# -- the compressed national peak --------------------------------------------------------------
def peak(stack: Stack, cfg: Config, progress: Progress) -> dict[str, Any]:
    from common import wiring

    project = new_project("peak")
    meter = stack.use_project(project, topics=True)
    db = wiring.firestore_client()
    today = today_warsaw()
    points = bench_points(cfg.peak_points)
    for point in points:
        point["products"] = [p for p in point["products"] if p in ADULT_PRODUCTS] or [TWO_DOSE]
    seed_points(
        db,
        points,
        today + timedelta(days=1),
        cfg.peak_days,
        progress,
        slots_per_day=12,
        capacity=3,
        label="peak points",
    )
    pesels = patient_pesels(cfg.peak_patients)
    seed_patients(db, pesels, wiring.settings().pesel_hash_key, today, progress)
    http = HttpClient(stack.base_port)
    scheduler = MixScheduler(PEAK_WEIGHTS, PEAK_FALLBACKS)
    lock = threading.Lock()
    free_patients = deque(
        (p, mint_id_token(project, f"p-{p}", role="patient", pesel=p)) for p in pesels
    )
    booked: list[list[str]] = []  # [pesel, token, appointment_id, product, slot_id]
    failures: list[str] = []
    seen_slots: deque[tuple[str, str]] = deque(maxlen=3000)  # (slot_id, product) from searches
    per_kind: dict[str, list[float]] = {k: [] for k in PEAK_WEIGHTS}
    per_outcome: Counter[str] = Counter()
    products, weights = zip(*ADULT_PRODUCTS.items(), strict=True)
    centres = [p["postcode"] for p in points]

    def possible(kind: str) -> bool:
        if kind in ("cancel", "reschedule"):
            return bool(booked)
        if kind == "book":
            return bool(seen_slots) and bool(free_patients)
        return True

    def do_search(rng: random.Random, token: str) -> str:
        query = {
            "postcode": rng.choice(centres),
            "limit": 5,
            "radius_km": 50,
            "product": rng.choices(products, weights)[0],
        }
        if rng.random() < 0.25:
            query.pop("product")
        response = http.call("GET", f"/v1/slots?{urlencode(query)}", token=token)
        if response.status != 200:
            return f"failed:{response.status}:{error_code(response)}"
        found = [s["slot_id"] for item in response.body["items"] for s in item["earliest_slots"]]
        with lock:
            seen_slots.extend((slot, _product_of(slot)) for slot in found)
        return "ok" if found else "empty"

    def do_book(rng: random.Random) -> str:
        with lock:
            if not free_patients or not seen_slots:
                return "skipped"
            pesel, token = free_patients.popleft()
            slot, product = seen_slots[rng.randrange(len(seen_slots))]
        outcome, body = _book(http, token, slot)
        with lock:
            if outcome == "ok":
                first = body["appointments"][0]
                booked.append([pesel, token, first["appointment_id"], product, first["slot_id"]])
            elif outcome.startswith("failed") and len(failures) < 10:
                failures.append(f"book {outcome}: {body}"[:300])
            else:
                free_patients.append((pesel, token))
        return outcome

    def do_change(kind: str, rng: random.Random) -> str:
        with lock:
            if not booked:
                return "skipped"
            entry = booked.pop(rng.randrange(len(booked)))
            candidates = [s for s, p in list(seen_slots)[-500:] if p == entry[3] and s != entry[4]]
        pesel, token, appointment_id = entry[:3]
        if kind == "cancel":
            response = http.call(
                "POST",
                f"/v1/appointments/{appointment_id}/cancel",
                token=token,
                body={},
                idempotency_key=uuid.uuid4().hex,
            )
        else:
            if not candidates:
                with lock:
                    booked.append(entry)
                return "no_slot_seen"
            target = rng.choice(candidates)
            response = http.call(
                "POST",
                f"/v1/appointments/{appointment_id}/reschedule",
                token=token,
                body={"slot_id": target},
                idempotency_key=uuid.uuid4().hex,
            )
        ok = response.status == 200
        if ok and kind == "reschedule":
            entry[4] = target
        with lock:
            if kind == "cancel" and ok:
                free_patients.append((pesel, token))
            else:
                booked.append(entry)
        if ok:
            return "ok"
        code = error_code(response)
        if response.status == 409 and code == "slot_unavailable":
            return "refused_full"
        with lock:
            if len(failures) < 10:
                failures.append(f"{kind} {response.status}: {response.body}"[:300])
        return f"failed:{response.status}:{code}"

    searcher = mint_id_token(project, "bench-searcher", role="patient", pesel=pesels[0])

    def operation(_: int, rng: random.Random) -> str:
        kind = scheduler.next(possible)
        started = time.perf_counter()
        if kind == "search":
            outcome = do_search(rng, searcher)
        elif kind == "book":
            outcome = do_book(rng)
        else:
            outcome = do_change(kind, rng)
        seconds = time.perf_counter() - started
        with lock:
            per_kind[kind].append(seconds)
            per_outcome[f"{kind}:{outcome}"] += 1
        return f"{kind}:{outcome}"

    http.call("GET", f"/v1/slots?postcode={centres[0]}", token=searcher)  # directory loaded once
    phase = run_closed_loop(
        "national peak mix",
        operation,
        concurrency=cfg.peak_concurrency,
        duration_s=cfg.peak_s,
        progress=progress,
        snapshot=meter.counts,
    )
    counts = _as_counts(phase.window_counts)
    summary = phase.summary(
        [k for k in phase.outcomes if k.endswith(":ok") or k.endswith(":empty")]
    )
    kinds = {}
    for kind, latencies in per_kind.items():
        outcomes = {
            k.split(":", 1)[1]: n for k, n in phase.outcomes.items() if k.startswith(kind + ":")
        }
        done = sum(outcomes.values())
        kinds[kind] = {
            "operations": done,
            "per_s": round(rate(done, phase.elapsed_s), 2),
            "p50_ms": round(1000 * (percentile(latencies, 50) or 0), 1),
            "p99_ms": round(1000 * (percentile(latencies, 99) or 0), 1),
            "outcomes": outcomes,
        }
    failed = sum(n for k, n in phase.outcomes.items() if ":failed" in k or k.startswith("error"))
    return {
        "project": project,
        "points": cfg.peak_points,
        "days": cfg.peak_days,
        "concurrency": cfg.peak_concurrency,
        "duration_s": round(phase.elapsed_s, 1),
        "operations": phase.operations,
        "ops_per_s": summary["ops_per_s"],
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "failed": failed,
        "error_samples": phase.errors[:5] + failures[:5],
        "kinds": kinds,
        "mix": scheduler.report(),
        "reads": counts["reads"],
        "billed_reads": counts["billed_reads"],
        "writes": counts["writes"],
        "deletes": counts["deletes"],
        "reads_per_s": round(rate(counts["reads"], phase.elapsed_s), 1),
        "writes_per_s": round(rate(counts["writes"], phase.elapsed_s), 1),
        "bookings_held_at_end": len(booked),
    }


def _product_of(slot_id: str) -> str:
    # pt-00001_20261127_0800_comirnaty -> comirnaty (products may contain underscores)
    return slot_id.split("_", 3)[3]
