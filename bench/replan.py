"""`python -m bench.replan` (`make bench-replan`): the April-2021 dry run, then its re-plan,
with a stream of real bookings through HTTP before, during and after it (issue 15, "Show it").

The scenario of bench/impact.py (whose seeding and dry run this reuses), with room to move
people to: 7,000 points, 60,000 affected series of people born 1961-1980 (half Jcovden, half
a Comirnaty series), 20,000 valid series and 1,000 bookings without a birth date, seeded
straight into the emulator. The correcting rules version opens the band's cohort in
OPENS_IN_DAYS days: every affected dose 1 (booked 2 to 29 days ahead) is before that, so every
series is a case, and the re-plan must offer each a seat on or after the opening. Every point
offers both products and has free slots from the opening on (Jcovden and Comirnaty every day
for 50 days: dose 1, and dose 2 21-42 days later at the same point), and a few Jcovden slots
in the next two weeks for the booking stream only (before the opening: the re-plan never
offers them, so the two never compete for a seat, only for the machine and the store).

1. The local stack as the other benches serve it (bench/harness.py `Stack`: the Firestore and
   Pub/Sub emulators, the gateway with gunicorn workers, the availability folder every 1.25 s).
2. The booking stream: a process of its own (as patients are) books a new patient onto a random
   stream slot of the country every 1/`probe_rate` s through HTTP (`POST /v1/appointments`,
   open loop: each latency is counted from when the booking was due, so a queue anywhere
   shows). Phases: `baseline` (nothing else running), `re-plan`, `after` (nothing else
   again: the machine's drift). It pauses while the dry run reads: the dry run is measured
   alone, as bench/impact.py measures it (the emulator scans 121,000 bookings for each page of
   1,000: a busy machine makes a page outlast its 6 s deadline, and the slice is run again as
   Cloud Tasks would). Its patients are born 1940-1960 (valid under both rule versions: their
   bookings are never cases).
3. The dry run (bench/impact.py `dry_run`), as `POST /v1/admin/impact` creates it and Cloud
   Tasks runs it: measured over all its cases.
4. The re-plan (common/services/replan.py), as `POST /v1/admin/replans` creates it and
   `run_replan_job` runs it, in this process, with a high rate (default 200/s, the API's
   maximum: the pacing never waits, so the rate measured is the system's own), on the first
   pages of the dry run until `replan_cases` cases: each case searched, its seats held and
   its offer written (notices go to the portal: no SMS). Documents read and written per case
   are counted exactly (common/adapters/firestore_metering.py) on this process's client; the
   search view is loaded before the count starts (a warm instance), its refreshes are counted.
   The offers are then checked: on or after the opening, a series' doses at one point 21-42
   days apart, no seat held twice.

Measured: the dry run (all its cases), the re-plan (its prefix), the bookings' latency per
phase. Extrapolated (and labelled so): the whole re-plan's time from the measured rate, and
what the job's default pace (20 cases/s) makes of it. Results go to bench/results/replan.json
and replan.md (`--quick`: replan-quick.*). Not part of `make test`.

    python -m bench.replan                  # 7,000 points, 60,000 cases, 3,000 re-planned (~22 min)
    python -m bench.replan --quick          # 700 points, 6,000 cases, 1,000 re-planned (~5 min)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from bench.stats import percentile

RESULTS = Path(__file__).resolve().parent / "results"
OPENS_IN_DAYS = 30  # the corrected rules open the band's cohort this many days from today
PRODUCTS = ["comirnaty", "jcovden"]  # what every point offers here
PROBE_PRODUCT = "jcovden"  # one dose: a booking is one visit
PROBE_STARTS = (dtime(8, 0), dtime(8, 15))  # the stream's slots, days +1..+probe_days
REPLAN_STARTS = {"comirnaty": dtime(9, 0), "jcovden": dtime(10, 0)}
CAPACITY = 3
DEFAULT_RATE = 20.0  # CreateReplanJob's default pace, cases a second
PHASES = ("warm-up", "baseline", "dry run", "re-plan", "after")


@dataclass(frozen=True)
class Plan:
    points: int = 7000
    cases: int = 60_000
    valid: int = 20_000
    unknown: int = 1000
    replan_cases: int = 3000  # whole pages of the dry run, until at least this many
    rate: float = 200.0  # the re-plan job's pace (cases a second, the API allows up to 200)
    probe_rate: float = 3.0  # bookings a second through HTTP, all along
    baseline_s: float = 60.0  # the stream alone, before and after
    warm_up_s: float = 10.0  # the stream's first seconds (fresh gateway workers): not counted
    replan_days: int = 50  # free days from the opening on
    probe_days: int = 14
    seed: int = 2021

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            points=700,
            cases=6000,
            valid=2000,
            unknown=100,
            replan_cases=1000,
            baseline_s=20.0,
            warm_up_s=5.0,
        )


def plan_from(args: argparse.Namespace) -> Plan:
    """The defaults (or --quick's), with what was given on the command line."""
    base = Plan.quick() if args.quick else Plan()
    given = {f.name: getattr(args, f.name, None) for f in fields(Plan)}
    return Plan(**(asdict(base) | {k: v for k, v in given.items() if v is not None}))


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replan", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="700 points, 6,000 cases")
    for field in fields(Plan):
        kind = float if isinstance(field.default, float) else int
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=None)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


# -- the country's free slots (pure) -------------------------------------------------------------
def calendar_entries(
    today: date, opens: date, *, replan_days: int, probe_days: int, capacity: int = CAPACITY
) -> list[tuple[date, dtime, str, int]]:
    """(day, start, product, capacity) of every point: the stream's Jcovden slots on days
    +1..+probe_days (before the opening), and both products every day for `replan_days` from
    the opening (a Comirnaty dose 1 there finds its dose 2 21-42 days later)."""
    entries = []
    for offset in range(1, probe_days + 1):
        day = today + timedelta(days=offset)
        if day >= opens:
            break
        entries += [(day, start, PROBE_PRODUCT, capacity) for start in PROBE_STARTS]
    for offset in range(replan_days):
        day = opens + timedelta(days=offset)
        entries += [(day, REPLAN_STARTS[p], p, capacity) for p in PRODUCTS]
    return entries


def probe_slot_ids(point_ids: Iterable[str], today: date, opens: date, probe_days: int) -> list:
    """The stream's slot ids over the country (all before the opening)."""
    from common.domain.calendar import SlotRef

    ids = []
    for point_id in point_ids:
        for offset in range(1, probe_days + 1):
            day = today + timedelta(days=offset)
            if day >= opens:
                break
            ids += [SlotRef(point_id, day, s, PROBE_PRODUCT).slot_id for s in PROBE_STARTS]
    return ids


def probe_pesels(count: int) -> list[str]:
    """Distinct patients born 1940-1960: valid under the rules in force and the correction."""
    from common.domain.pesel import make_pesel

    return [
        make_pesel(date(1940 + i % 21, 1 + i % 12, 1 + i % 28), "F" if i % 2 else "M", i % 5000)
        for i in range(count)
    ]


def patients_needed(plan: Plan) -> int:
    """Enough for the stream's whole run, generously: the dry run judged at 150 bookings/s
    and the re-plan at 5 cases/s would be slow for this machine."""
    bookings = (3 * (plan.cases + plan.valid) + 1) // 2 + plan.unknown
    seconds = plan.warm_up_s + 2 * plan.baseline_s + bookings / 150 + plan.replan_cases / 5
    return int(plan.probe_rate * seconds * 1.3) + 100


# -- phases and latencies (pure) -----------------------------------------------------------------
def phase_of(moment: float, phases: Sequence[tuple[str, float, float]]) -> str | None:
    """The phase [start, end) a monotonic moment falls in, or None."""
    for name, start, end in phases:
        if start <= moment < end:
            return name
    return None


def latency_summary(samples: Sequence[tuple[float, float, str]], seconds: float) -> dict:
    """(due, latency_s, outcome) of one phase: how many, how fast, how many failed."""
    ok = [latency for _, latency, outcome in samples if outcome == "ok"]
    outcomes = Counter(outcome for _, _, outcome in samples)

    def ms(q: float) -> float | None:
        found = percentile(ok, q)
        return None if found is None else round(found * 1000, 1)

    return {
        "seconds": round(seconds, 1),
        "bookings": len(samples),
        "per_s": round(len(samples) / seconds, 2) if seconds > 0 else None,
        "ok": len(ok),
        "failed": len(samples) - len(ok),
        "outcomes": dict(sorted(outcomes.items())),
        "p50_ms": ms(50),
        "p95_ms": ms(95),
        "p99_ms": ms(99),
        "max_ms": round(max(ok) * 1000, 1) if ok else None,
    }


def by_phase(
    samples: Sequence[tuple[float, float, str]], phases: Sequence[tuple[str, float, float]]
) -> dict[str, dict]:
    """Each phase's summary (a booking belongs to the phase it was due in)."""
    grouped: dict[str, list[tuple[float, float, str]]] = {name: [] for name, _, _ in phases}
    for sample in samples:
        name = phase_of(sample[0], phases)
        if name is not None:
            grouped[name].append(sample)
    return {name: latency_summary(grouped[name], end - start) for name, start, end in phases}


def extrapolate(total_cases: int, cases_per_s: float, default_rate: float = DEFAULT_RATE) -> dict:
    """The whole re-plan from a measured rate: at full speed; the job's default pace on its
    own (cases / 20 a second); and at that pace on this system (a pace above what the system
    does is not reached: the slower of the two is the real time)."""
    full = total_cases / cases_per_s if cases_per_s > 0 else None
    paced = total_cases / default_rate
    return {
        "cases": total_cases,
        "at_measured_rate_s": None if full is None else round(full),
        "default_rate_per_s": default_rate,
        "default_pace_alone_s": round(paced),
        "at_default_rate_s": round(max(paced, full or 0)),
        "pace_decides": full is not None and paced >= full,
    }


def rate_by_window(
    ended: Sequence[float], start: float, end: float, window_s: float = 60.0
) -> list:
    """Cases a second in each window from `start` (monotonic ends of cases); the last window
    is as long as what is left of the run."""
    rates = []
    at = start
    while at < end:
        until = min(at + window_s, end)
        done = sum(1 for moment in ended if at <= moment < until)
        rates.append(round(done / (until - at), 1))
        at = until
    return rates


class _Timers:
    """Wall time spent in some methods of the worker's services (wrapped in place)."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        real = getattr(owner, attribute)
        self._undo.append((owner, attribute, owner.__dict__.get(attribute)))

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds[name] += time.monotonic() - started

        setattr(owner, attribute, timed)

    def restore(self) -> None:
        for owner, attribute, before in reversed(self._undo):
            if before is None:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, before)
        self._undo.clear()


# -- the booking stream (a process of its own) ---------------------------------------------------
def _probe_main(
    port: int, work: list[tuple[str, str]], rate: float, pause: Any, stop: Any, out: Any
) -> None:
    """Book work[i] (token, slot) at start + i / rate until `stop`, none while `pause` is set
    (then on schedule again, no burst); put the samples on `out`."""
    from concurrent.futures import ThreadPoolExecutor

    from bench.harness import HttpClient, error_code

    http = HttpClient(port)
    samples: list[tuple[float, float, str]] = []
    lock = threading.Lock()

    def book(due: float, token: str, slot_id: str) -> None:
        try:
            response = http.call(
                "POST",
                "/v1/appointments",
                token=token,
                body={"slot_id": slot_id},
                idempotency_key=uuid.uuid4().hex,
            )
            outcome = (
                "ok" if response.status == 201 else f"{response.status}:{error_code(response)}"
            )
        except Exception as err:  # noqa: BLE001 (a sample, not a crash)
            outcome = f"error:{type(err).__name__}"
        with lock:
            samples.append((due, time.monotonic() - due, outcome))

    pool = ThreadPoolExecutor(max_workers=16)
    start, number = time.monotonic(), 0
    while number < len(work) and not stop.is_set():
        if pause.is_set():
            while pause.is_set() and not stop.wait(0.1):
                pass
            start = time.monotonic() - number / rate
            continue
        due = start + number / rate
        if stop.wait(max(0.0, due - time.monotonic())) or pause.is_set():
            continue
        pool.submit(book, due, *work[number])
        number += 1
    pool.shutdown(wait=True)
    out.put({"samples": samples, "issued": number, "ran_out": number >= len(work)})


class _Probe:
    def __init__(self, port: int, work: list[tuple[str, str]], rate: float) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no fork of a process with gRPC threads
        self.pause, self.stop = context.Event(), context.Event()
        self.out = context.Queue()
        self.process = context.Process(
            target=_probe_main,
            args=(port, work, rate, self.pause, self.stop, self.out),
            daemon=True,
        )

    def start(self) -> None:
        self.process.start()

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        found = self.out.get(timeout=300)
        self.process.join(timeout=30)
        return found


# -- the re-plan's cases, counted --------------------------------------------------------------
class _Counted:
    """The re-plan service, each open_case timed and its outcome counted."""

    def __init__(self, service: Any) -> None:
        self._service = service
        self.outcomes: Counter[str] = Counter()
        self.seconds: list[float] = []
        self.cpu_s = 0.0  # the worker thread's own CPU time in open_case
        self.ended: list[float] = []  # when each case ended (monotonic)

    def open_case(self, *args: Any) -> str:
        started, cpu = time.monotonic(), time.thread_time()
        outcome = self._service.open_case(*args)
        self.cpu_s += time.thread_time() - cpu
        self.ended.append(time.monotonic())
        self.seconds.append(self.ended[-1] - started)
        self.outcomes[outcome] += 1
        return outcome

    def opened(self) -> int:
        """Cases opened by this run (not those a failed slice had opened already)."""
        return len(self.seconds) - self.outcomes["exists"]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)


def _ticker(progress: Any, text: Any, stop: threading.Event, every_s: float = 10.0) -> None:
    while not stop.wait(every_s):
        progress.update(text(), force=True)


def check_offers(offers: Sequence[dict[str, Any]], opens: date) -> dict[str, Any]:
    """What every offer must be: its seats on or after the opening, a series' two doses at one
    point 21-42 days apart, and no seat held by two offers (pure)."""
    seats: Counter[str] = Counter()
    early, apart, split = 0, 0, 0
    for offer in offers:
        held = offer.get("seats") or []
        seats.update(s["seat_id"] for s in held)
        days = [date.fromisoformat(s["day"]) for s in held]
        if days and days[0] < opens:
            early += 1
        if len(held) == 2:
            if held[0]["point_id"] != held[1]["point_id"]:
                split += 1
            if not 21 <= (days[1] - days[0]).days <= 42:
                apart += 1
    twice = sum(1 for n in seats.values() if n > 1)
    return {
        "offers": len(offers),
        "seats_held": sum(seats.values()),
        "before_opening": early,
        "doses_at_two_points": split,
        "dose_2_out_of_window": apart,
        "seats_held_twice": twice,
        "correct": early == split == apart == twice == 0,
    }


# -- the run ----------------------------------------------------------------------------------
def _seed_calendars(client: Any, points: Sequence[str], entries: list, progress: Any) -> int:
    from bench.impact import _Writer
    from common.adapters.firestore_store import AVAILABILITY
    from common.services.directory import calendar_document

    days = calendar_document("pt-00000", entries)["days"]  # slot keys do not name the point
    writer = _Writer(client, progress, "calendars", len(points))
    for point_id in points:
        writer.set(AVAILABILITY, point_id, {"point_id": point_id, "days": days})
    writer.flush(wait=True)
    return len(entries) * len(points)


def _run_replan(
    jobs: Any, counted: _Counted, job_id: str, cases: int, progress: Any
) -> tuple[int, int, int]:
    """Slices of the job, as Cloud Tasks runs them, until `cases` (whole pages): cases, slices
    and slices that failed and were run again (the job goes on from its cursor, skipping the
    offers made: `exists`)."""
    from bench.impact import TASK_RETRIES, TASK_RETRY_S, task_errors
    from common import clock

    started = time.monotonic()
    stop = threading.Event()

    def text() -> str:
        done = len(counted.seconds)
        return f"re-plan: {done:,} cases, {done / max(1e-9, time.monotonic() - started):.1f}/s"

    threading.Thread(target=_ticker, args=(progress, text, stop), daemon=True).start()
    failed = task_errors()
    slices, retries = 0, 0
    try:
        while (done := counted.opened()) < cases:
            slices += 1
            try:
                outcome = jobs.run(job_id, clock.now(), max_cases=cases - done, queue_next=False)
            except failed as err:
                retries += 1
                if retries > TASK_RETRIES:
                    raise
                progress.done(f"re-plan: slice failed ({type(err).__name__}), run again")
                time.sleep(TASK_RETRY_S)
                continue
            if outcome["outcome"] != "continues":
                break
    finally:
        stop.set()
    return counted.opened(), slices, retries


def _check(client: Any, job_id: str, opens: date) -> dict[str, Any]:
    """Every offer of the job (check_offers), and the seats of the first 200 in the store."""
    from google.cloud.firestore import FieldFilter

    from common.adapters.firestore_store import SEATS
    from common.services.replan import OFFERS

    query = client.collection(OFFERS).where(filter=FieldFilter("job_id", "==", job_id))
    offers = [d.to_dict() for d in query.stream()]
    checked = check_offers(offers, opens)
    sample = [s for o in offers[:200] for s in o.get("seats") or []]
    found = {
        d.id: d.to_dict() or {}
        for d in client.get_all([client.collection(SEATS).document(s["seat_id"]) for s in sample])
    }
    held = sum(
        1
        for o in offers[:200]
        for s in o.get("seats") or []
        if found.get(s["seat_id"], {}).get("hold_id") == o["offer_id"]
    )
    checked["sample_seats"] = len(sample)
    checked["sample_seats_held_by_their_offer"] = held
    checked["correct"] = checked["correct"] and held == len(sample)
    return checked


def run(plan: Plan, command: str) -> dict[str, Any]:
    from bench import impact, machine
    from bench.harness import Stack, new_project
    from bench.progress import Progress
    from bench.seed import bench_points, seed_patients
    from common import clock, wiring
    from common.domain.calendar import WARSAW
    from common.services.booking import Actor
    from common.services.impact import ImpactJobs
    from common.services.replan import CreateReplanJob, ReplanJobs, ReplanService
    from common.services.seats import SlotChoice
    from emulator.identities import mint_id_token

    progress = Progress()
    results: dict[str, Any] = {
        "command": command,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine.machine_info(),
        "settings": asdict(plan) | {"opens_in_days": OPENS_IN_DAYS},
        "notes": [],
    }
    stack = Stack(progress)
    stack.start()
    probe: _Probe | None = None
    busy: dict[str, float | None] = {}
    try:
        project = new_project("replan")
        meter = stack.use_project(project, topics=True)
        client = wiring.firestore_client()
        now = clock.now()
        today = now.astimezone(WARSAW).date()
        opens = today + timedelta(days=OPENS_IN_DAYS)
        seeding = time.monotonic()
        args = argparse.Namespace(
            points=plan.points, cases=plan.cases, valid=plan.valid, unknown=plan.unknown,
            seed=plan.seed,
        )  # fmt: skip
        expected = impact.seed(client, args, today, now, progress, products=PRODUCTS)
        point_ids = [p["point_id"] for p in bench_points(plan.points, PRODUCTS)]
        entries = calendar_entries(
            today, opens, replan_days=plan.replan_days, probe_days=plan.probe_days
        )
        slots = _seed_calendars(client, point_ids, entries, progress)
        pesels = probe_pesels(patients_needed(plan)) if plan.probe_rate > 0 else []
        seed_patients(client, pesels, wiring.settings().pesel_hash_key, today, progress)
        results["seed_s"] = round(time.monotonic() - seeding, 1)
        results["seeded"] = {
            "points": plan.points,
            "slots": slots,
            "seats": slots * CAPACITY,
            "bookings": expected["bookings"],
            "stream_patients": len(pesels),
            "opening": opens.isoformat(),
        }
        progress.done(
            f"seeded {plan.points:,} points ({slots:,} slots), {expected['bookings']:,} "
            f"bookings, {len(pesels):,} patients in {results['seed_s']} s"
        )
        results["ceiling"] = impact._ceiling(client)

        # The services, as the functions build them (the re-plan's notices: the portal only).
        units = wiring.units()
        impact_jobs = ImpactJobs(units, client, wiring.rule_book(), impact._Queue())
        counted = _Counted(
            ReplanService(
                units, wiring.booking_service(), wiring.search_service, lambda o, n: "portal"
            )
        )
        replan_jobs = ReplanJobs(units, impact_jobs, counted, impact._Queue())
        search = wiring.search_service()
        search.directory.entries()
        search.view.refresh_if_due()  # a warm instance: every calendar in memory

        # The booking stream, from now until the end.
        phases: list[tuple[str, float, float]] = []
        mark: list[Any] = []  # the current phase's start: monotonic, cpu_times()

        def phase(name: str) -> None:
            ended, times = time.monotonic(), machine.cpu_times()
            phases.append((name, mark[0], ended))
            busy[name] = machine.busy_share(mark[1], times)
            mark[:] = [ended, times]

        if pesels:
            stream_slots = probe_slot_ids(point_ids, today, opens, plan.probe_days)
            rng = random.Random(plan.seed)
            work = [
                (
                    mint_id_token(project, f"p-{p}", role="patient", pesel=p),
                    rng.choice(stream_slots),
                )
                for p in pesels
            ]
            probe = _Probe(stack.base_port, work, plan.probe_rate)
            probe.start()
            progress.done(f"booking stream: {plan.probe_rate}/s through HTTP, its own process")
        mark[:] = [time.monotonic(), machine.cpu_times()]
        time.sleep(plan.warm_up_s if pesels else 0)
        phase("warm-up")
        progress.update(f"baseline: the booking stream alone for {plan.baseline_s:.0f} s", True)
        time.sleep(plan.baseline_s if pesels else 0)
        phase("baseline")

        # The dry run, measured over all its cases.
        change = {
            "kind": "rules",
            "effective_from": today.isoformat(),
            "cohorts": impact._correction(today, opens),
        }
        if probe is not None:  # not while the dry run reads (the module's docstring, 2.)
            probe.pause.set()
        job_id, dry = impact.dry_run(
            client, impact_jobs, change, expected, meter.documents, progress
        )
        phase("dry run")
        if probe is not None:
            probe.pause.clear()
        # The stream's patients are valid, but their bookings are judged too (scanned).
        dry["correct"] = (
            dry["affected_cases"] == expected["affected_cases"]
            and dry["affected_bookings"] == expected["affected_bookings"]
            and dry["unknown_bookings"] == expected["unknown_bookings"]
            and dry["bookings_scanned"] >= expected["bookings"]
        )
        results["dry_run"] = dry
        progress.done(
            f"dry run: {dry['affected_cases']:,} cases in {dry['run_s']} s "
            f"({dry['cases_per_s']}/s), correct {dry['correct']}"
        )

        # The re-plan, on the dry run's first pages.
        admin = Actor(uid="bench-admin", role="admin")
        body = CreateReplanJob(impact_job_id=job_id, rate=plan.rate)
        replan_jobs.create(admin, body, clock.now())
        before = meter.documents.counts()
        view_reads = search.view.reads
        folder_before = stack.folder.counts(project)
        timers = _Timers()  # where a case's time goes (nested: search includes its refresh)
        timers.wrap(search, "search", "search, in memory (with the view's refresh)")
        timers.wrap(search.view, "refresh_if_due", "search view refresh (a query)")
        timers.wrap(wiring.booking_service(), "calendar", "candidate points' calendars")
        timers.wrap(SlotChoice, "pick", "seat picks (seat counts and reads)")
        timers.wrap(units, "run", "commits (offer with its hold; its channel)")
        started = time.monotonic()
        try:
            done, slices, retries = _run_replan(
                replan_jobs, counted, job_id, plan.replan_cases, progress
            )
        finally:
            timers.restore()
        elapsed = time.monotonic() - started
        used = meter.documents.counts() - before
        folder = stack.folder.counts(project) - folder_before
        view_reads = search.view.reads - view_reads
        phase("re-plan")
        progress.done(f"re-plan: {done:,} cases in {elapsed:.1f} s ({done / elapsed:.1f}/s)")
        progress.update(f"after: the booking stream alone for {plan.baseline_s:.0f} s", True)
        time.sleep(plan.baseline_s if pesels else 0)
        phase("after")
        if probe is not None:
            probed = probe.finish()
            probe = None
            results["booking_stream"] = {
                "rate_per_s": plan.probe_rate,
                "issued": probed["issued"],
                "ran_out_of_patients": probed["ran_out"],
                "phases": by_phase(probed["samples"], [p for p in phases if p[0] != "dry run"]),
            }
            if probed["ran_out"]:
                results["notes"].append("the booking stream ran out of patients before the end")

        job = replan_jobs.view(job_id)
        checked = _check(client, job_id, opens)
        cases = done
        rate = cases / elapsed if elapsed > 0 else 0.0
        results["replan"] = {
            "job_status": job["status"],
            "pages_done": job["progress"]["pages_done"],
            "pages": job["progress"]["pages"],
            "slices": slices,
            "slices_retried": retries,
            "cases": cases,
            "outcomes": dict(counted.outcomes),
            "offer_counts": {k: v for k, v in job["counts"].items() if v},
            "run_s": round(elapsed, 1),
            "cases_per_s": round(rate, 1),
            "case_ms": {
                f"p{q}": round((percentile(counted.seconds, q) or 0) * 1000, 1)
                for q in (50, 95, 99)
            },
            "worker_cpu_ms_per_case": round(1000 * counted.cpu_s / cases, 1) if cases else None,
            "wall_ms_per_case_in": {
                name: round(1000 * seconds / cases, 1) for name, seconds in timers.seconds.items()
            }
            if cases
            else {},
            "cases_per_s_by_minute": rate_by_window(counted.ended, started, started + elapsed),
            "documents": {
                "reads": used.billed_reads,
                "writes": used.writes,
                "commits": used.commits,
                "failed_commits": used.failed_commits,
                "queries": used.queries,
                "search_view_reads": view_reads,
                "reads_per_case": round(used.billed_reads / cases, 2) if cases else None,
                "writes_per_case": round(used.writes / cases, 2) if cases else None,
                "commits_per_case": round(used.commits / cases, 2) if cases else None,
                "folder_writes_in_phase": folder.writes,
            },
            "check": checked,
            "extrapolated": {
                "dry_run_cases": extrapolate(dry["affected_cases"], rate),
                "issue_60000": extrapolate(60_000, rate),
            },
        }
    finally:
        if probe is not None:
            try:
                probe.finish()
            except Exception:  # noqa: BLE001 (stopping anyway)
                probe.process.kill()
        stack.stop()
    results["load"] = {"machine_busy_share": busy, "loadavg_at_end": machine.loadavg()}
    return results


# -- the report -------------------------------------------------------------------------------
def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:,.0f} s ({seconds / 60:.0f} min)"


def render(results: dict[str, Any]) -> str:
    dry = results.get("dry_run", {})
    replan = results.get("replan", {})
    docs = replan.get("documents", {})
    ddocs = dry.get("documents", {})
    extra = replan.get("extrapolated", {})
    whole, issue = extra.get("dry_run_cases", {}), extra.get("issue_60000", {})
    machine = results.get("machine", {})
    ceiling = results.get("ceiling", {})
    check = replan.get("check", {})
    rows = [
        ("measured", "dry run: cases / bookings judged",
         f"{dry.get('affected_cases', 0):,} / {dry.get('bookings_scanned', 0):,} "
         f"(exactly the seeded set: {dry.get('correct')})"),
        ("measured", "dry run: time, rate",
         f"{dry.get('run_s')} s, {dry.get('cases_per_s')} cases/s "
         f"({dry.get('bookings_per_s')} bookings/s; {dry.get('slices')} slices, "
         f"{dry.get('slices_retried', 0)} failed and run again)"),
        ("measured", "dry run: documents per case",
         f"{ddocs.get('reads_per_case')} read, {ddocs.get('writes_per_case')} written"),
        ("measured", "re-plan: cases (pages of the dry run)",
         f"{replan.get('cases', 0):,} ({replan.get('pages_done')} of {replan.get('pages')} "
         f"pages), at pace {results.get('settings', {}).get('rate')}/s"),
        ("measured", "re-plan: outcomes",
         ", ".join(f"{k} {v:,}" for k, v in sorted(replan.get("outcomes", {}).items()))),
        ("measured", "re-plan: time, rate",
         f"{replan.get('run_s')} s, **{replan.get('cases_per_s')} cases/s** "
         f"({replan.get('slices')} slices, {replan.get('slices_retried', 0)} failed and run "
         "again)"),
        ("measured", "re-plan: time per case p50 / p95 / p99",
         " / ".join(f"{v} ms" for v in replan.get("case_ms", {}).values())),
        ("measured", "re-plan: documents read per case (billed)",
         f"**{docs.get('reads_per_case')}** (search view refreshes included: "
         f"{docs.get('search_view_reads', 0):,} in all)"),
        ("measured", "re-plan: documents written per case",
         f"**{docs.get('writes_per_case')}** in {docs.get('commits_per_case')} commits "
         f"({docs.get('failed_commits', 0)} failed commits in all; the folder wrote "
         f"{docs.get('folder_writes_in_phase', 0):,} meanwhile, bookings' deltas included)"),
        ("measured", "re-plan: offers checked",
         f"{check.get('offers', 0):,} offers, {check.get('seats_held', 0):,} seats: "
         f"{check.get('before_opening')} before the opening, {check.get('doses_at_two_points')} "
         f"split, {check.get('dose_2_out_of_window')} dose 2 out of window, "
         f"{check.get('seats_held_twice')} held twice; sample "
         f"{check.get('sample_seats_held_by_their_offer')}/{check.get('sample_seats')} seats "
         f"held (correct: {check.get('correct')})"),
        ("measured", "re-plan: rate minute by minute (cases/s)",
         ", ".join(str(r) for r in replan.get("cases_per_s_by_minute", []))),
        ("measured", "re-plan: worker CPU per case (its own thread)",
         f"{replan.get('worker_cpu_ms_per_case')} ms"),
        ("measured", "re-plan: wall time per case in",
         "; ".join(f"{k} {v} ms" for k, v in replan.get("wall_ms_per_case_in", {}).items())),
        ("extrapolated", f"re-plan of all {whole.get('cases', 0):,} cases at the measured rate",
         _minutes(whole.get("at_measured_rate_s"))),
        *([] if whole.get("cases") == issue.get("cases") else [
            ("extrapolated", "60,000 cases at the measured rate",
             _minutes(issue.get("at_measured_rate_s")))]),
        ("arithmetic", f"60,000 cases at the default pace ({issue.get('default_rate_per_s')}/s)",
         f"{_minutes(issue.get('default_pace_alone_s'))}: " + (
             "the pace decides here" if issue.get("pace_decides") else
             f"slower than the pace here: {_minutes(issue.get('at_default_rate_s'))}")),
        ("measured", "emulator ceiling, one client",
         f"{ceiling.get('gets_per_s')} gets/s, {ceiling.get('writes_per_s')} writes/s"),
    ]  # fmt: skip
    head = (
        f"# Re-plan benchmark\n\n`{results.get('command')}`, {results.get('started_at')}; "
        f"{machine.get('cpu_model', '')} x{machine.get('nproc', '')}, "
        f"{machine.get('memory_gib', '')} GiB, Python {machine.get('python', '')}, "
        f"Firestore emulator {machine.get('firestore_emulator', '')}; seeding "
        f"{results.get('seed_s')} s ({results.get('seeded', {}).get('slots', 0):,} slots); "
        f"the band's cohort opens {results.get('seeded', {}).get('opening')}\n\n"
    )
    table = "| | figure | result |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )
    stream = results.get("booking_stream")
    busy = results.get("load", {}).get("machine_busy_share", {})
    if stream:
        table += (
            f"\n\nBookings through HTTP while it runs ({stream['rate_per_s']}/s, open loop, "
            "latency from when each was due; measured):\n\n"
            "| phase | bookings | ok | p50 ms | p95 ms | p99 ms | max ms | machine busy |\n"
            "|---|---|---|---|---|---|---|---|\n"
        )
        for name, row in stream["phases"].items():
            if name == "warm-up" or not row["bookings"]:
                continue  # the stream pauses during the dry run
            table += (
                f"| {name} | {row['bookings']:,} | {row['ok']:,} | {row['p50_ms']} | "
                f"{row['p95_ms']} | {row['p99_ms']} | {row['max_ms']} | {busy.get(name)} |\n"
            )
    for note in results.get("notes", []):
        table += f"\nNote: {note}\n"
    return head + table + "\n"


def main(argv: list[str] | None = None) -> int:
    import logging
    import signal

    logging.getLogger("common").setLevel(logging.ERROR)
    # `kill <pid>` stops the emulators and the gateway too (the finally blocks run).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args = _args(argv)
    plan = plan_from(args)
    out = args.out or RESULTS / ("replan-quick" if args.quick else "replan")
    results = run(
        plan, "python -m bench.replan " + " ".join(sys.argv[1:] if argv is None else argv)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    Path(f"{out}.md").write_text(render(results))
    print(render(results))
    ok = results.get("dry_run", {}).get("correct") and results.get("replan", {}).get(
        "check", {}
    ).get("correct")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
