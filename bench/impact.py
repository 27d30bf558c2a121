"""`python -m bench.impact` (`make bench-impact`): an impact dry run at the scale of April 2021.

The scenario of issue 15: people born 1961-1980 were opened for booking by mistake, and the
correcting rules version (their cohort opens only later) is checked before it is put in force.
Seeded straight into a Firestore emulator in batched writes (nothing through the API):

- 7,000 points (the demo generator's real towns, with their counties) and the directory;
- 60,000 affected cases: series of people born 1961-1980, half Jcovden (one booking), half a
  Comirnaty series (dose 1 and dose 2, 35 days apart): 90,000 bookings;
- 20,000 valid series (born 1940-1960), the same mix: 30,000 bookings;
- 1,000 bookings of the band made before appointments kept the birth date: "unknown".

Every booking is at a point of the 7,000 (round robin) within the next month. The job is then
created as `POST /v1/admin/impact` creates it and run slice after slice in this process, as
Cloud Tasks runs `run_impact_job`, with the production settings (pages of 1,000 bookings, at
most one job write a second). Reported: cases and bookings per second, documents read and
written per case (counted exactly: common/adapters/firestore_metering.py), the job's pages
and document sizes, the time to stream the list, and the emulator's raw ceiling measured in
the same run (read the figures as ratios on a shared machine). Results go to
bench/results/impact.json and impact.md. Not part of `make test`.

    python -m bench.impact                     # 7,000 points, 60,000 cases (~10 min)
    python -m bench.impact --points 700 --cases 6000 --valid 2000 --unknown 100
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TASK_RETRIES, TASK_RETRY_S = 20, 5.0  # a failed slice is run again, as Cloud Tasks would
BAND = (1961, 1980)  # opened by mistake; the proposed version opens it only later
VALID = (1940, 1960)


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.impact", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--points", type=int, default=7000)
    parser.add_argument("--cases", type=int, default=60_000, help="affected series")
    parser.add_argument("--valid", type=int, default=20_000, help="valid series")
    parser.add_argument("--unknown", type=int, default=1000, help="bookings without birth date")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--out", type=Path, default=RESULTS / "impact")
    return parser.parse_args(argv)


def _start_emulator(progress: Any) -> Any:
    """An emulator of our own on a free port (or FIRESTORE_EMULATOR_HOST's)."""
    from emulator.processes import firestore_emulator, free_port, require_tools

    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        return None
    require_tools()
    host = "127.0.0.1"
    process = firestore_emulator(host, free_port(host), Path(tempfile.mkdtemp(prefix="impact-")))
    progress.done("starting the Firestore emulator")
    process.start()
    process.wait_ready(180)
    os.environ["FIRESTORE_EMULATOR_HOST"] = process.argv[-1].split("=", 1)[1]
    return process


class _Writer:
    """set() in commits of 400 writes, a few in flight, each with a generous deadline: a
    fresh emulator on a busy machine answers its first commits slowly (the services' 6 s
    budget is for requests, not for seeding 120,000 documents)."""

    def __init__(self, client: Any, progress: Any, label: str, total: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.client, self.progress, self.label, self.total = client, progress, label, total
        self.done = 0
        self._batch, self._pending = client.batch(), 0
        self._pool = ThreadPoolExecutor(max_workers=3)
        self._inflight: list[Any] = []

    def set(self, collection: str, document_id: str, data: dict[str, Any]) -> None:
        self._batch.set(self.client.collection(collection).document(document_id), data)
        self._pending += 1
        if self._pending >= 400:
            self.flush()

    def flush(self, wait: bool = False) -> None:
        from bench.progress import counter_text

        if self._pending:
            self._inflight.append(self._pool.submit(self._commit, self._batch, self._pending))
            self._batch, self._pending = self.client.batch(), 0
        while self._inflight and (wait or len(self._inflight) >= 6):
            self.done += self._inflight.pop(0).result()
            self.progress.update(counter_text(f"seeding {self.label}", self.done, self.total))
        if wait:
            self._pool.shutdown()

    @staticmethod
    def _commit(batch: Any, size: int) -> int:
        from google.api_core import retry as api_retry

        # Sets only: a commit retried after a timeout writes the same documents again.
        batch.commit(retry=api_retry.Retry(timeout=600), timeout=120)
        return size


def _warm_up(client: Any) -> None:
    ref = client.collection("bench_warm_up").document("ping")
    ref.set({"at": 1}, timeout=120)
    ref.get(timeout=120)
    ref.delete(timeout=120)


def _appointment(
    rng: random.Random,
    point_id: str,
    day: date,
    product: str,
    dose: int,
    series_id: str,
    patient_key: str,
    appointment_id: str,
    linked: str | None,
    now: datetime,
) -> dict[str, Any]:
    from common.domain.appointments import Appointment
    from common.domain.calendar import SlotRef

    start = dtime(8 + rng.randrange(8), 15 * rng.randrange(4))
    ref = SlotRef(point_id, day, start, product)
    return Appointment(
        appointment_id=appointment_id,
        series_id=series_id,
        patient_key=patient_key,
        referral_id=f"ref-bench-{patient_key[:12]}",
        dose_kind="primary",
        dose_number=dose,
        product=product,
        point_id=point_id,
        slot_id=ref.slot_id,
        seat_id=ref.seat_id(rng.randrange(3)),
        starts_at=ref.starts_at,
        day=day,
        channel="portal",
        linked_appointment_id=linked,
        booked_by_role="patient",
        created_at=now,
        updated_at=now,
    ).to_document()


def seed(
    client: Any,
    args: argparse.Namespace,
    today: date,
    now: datetime,
    progress: Any,
    products: list[str] | None = None,
) -> dict:
    """Points, directory and live bookings; returns what the dry run must find. `products`:
    every point offers these (bench/replan.py), instead of the generator's own."""
    from bench.seed import bench_points
    from common.adapters.firestore_store import APPOINTMENTS, POINT_DIRECTORY, POINTS
    from common.services.directory import DIRECTORY_CHUNK, directory_entry

    _warm_up(client)
    rng = random.Random(args.seed)
    points = bench_points(args.points, products)
    writer = _Writer(client, progress, "points", len(points))
    for point in points:
        writer.set(POINTS, point["point_id"], point)
    ordered = sorted(points, key=lambda p: p["point_id"])
    for number, start in enumerate(range(0, len(ordered), DIRECTORY_CHUNK), start=1):
        entries = [directory_entry(p) for p in ordered[start : start + DIRECTORY_CHUNK]]
        writer.set(POINT_DIRECTORY, f"chunk-{number:03d}", {"entries": entries})
    writer.flush(wait=True)
    total = (3 * (args.cases + args.valid) + 1) // 2 + args.unknown
    writer = _Writer(client, progress, "bookings", total)
    expected = {"affected_cases": 0, "affected_bookings": 0, "unknown_bookings": 0}
    counter = 0

    def series(band: tuple[int, int], affected: bool, with_birth: bool = True) -> None:
        nonlocal counter
        point = points[counter % len(points)]["point_id"]
        counter += 1
        born = date(rng.randint(*band), rng.randint(1, 12), rng.randint(1, 28))
        two_doses = counter % 2 == 0 and with_birth
        product = "comirnaty" if two_doses else "jcovden"
        day = today + timedelta(days=2 + rng.randrange(28))
        key, series_id = uuid.uuid4().hex, uuid.uuid4().hex
        ids = [uuid.uuid4().hex for _ in range(2 if two_doses else 1)]
        for number, appointment_id in enumerate(ids, start=1):
            document = _appointment(
                rng,
                point,
                day + timedelta(days=35 * (number - 1)),
                product,
                number,
                series_id,
                key,
                appointment_id,
                ids[2 - number] if two_doses else None,
                now,
            )
            if with_birth:
                document["birth_date"] = born.isoformat()
            writer.set(APPOINTMENTS, appointment_id, document)
        if affected:
            expected["affected_cases"] += 1
            expected["affected_bookings"] += len(ids)
        elif not with_birth:
            expected["unknown_bookings"] += len(ids)

    for _ in range(args.cases):
        series(BAND, affected=True)
    for _ in range(args.valid):
        series(VALID, affected=False)
    for _ in range(args.unknown):
        series(BAND, affected=False, with_birth=False)
    writer.flush(wait=True)
    expected["bookings"] = writer.done
    progress.done(f"seeded {args.points:,} points and {writer.done:,} live bookings")
    return expected


def _correction(today: date, opens: date | None = None) -> str:
    """The proposed cohorts file: the band opens only in a year (or on `opens`), everyone
    else as now."""
    import yaml

    from common.domain.rulebook import RULES_DIR

    current = yaml.safe_load((RULES_DIR / "cohorts.yaml").read_text(encoding="utf-8"))
    current["version"] = "bench-impact"
    later = (opens or today + timedelta(days=365)).isoformat()
    current["cohorts"] = [
        {"born_to": BAND[0] - 1, "opens_at": "2021-01-15T00:00:00"},
        {"born_from": BAND[0], "born_to": BAND[1], "opens_at": f"{later}T00:00:00"},
        {"born_from": BAND[1] + 1, "born_to": 2009, "opens_at": "2021-05-01T00:00:00"},
        {"born_from": 2010, "opens_at": "2021-12-13T00:00:00"},
    ]
    return yaml.safe_dump(current, sort_keys=False)


def _ceiling(client: Any, seconds: float = 3.0) -> dict[str, float]:
    """Plain gets and writes per second from one client: this machine's yardstick now."""
    ref = client.collection("bench_ceiling").document("one")
    ref.set({"n": 0})
    rates = {}
    for name, op in (
        ("gets_per_s", lambda i: ref.get()),
        ("writes_per_s", lambda i: ref.set({"n": i})),
    ):
        done, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            op(done)
            done += 1
        rates[name] = round(done / (time.monotonic() - started), 1)
    ref.delete()
    return rates


class _Queue:
    def __init__(self) -> None:
        self.slices = 0

    def enqueue(self, job_id: str, suffix: str) -> str:
        self.slices += 1
        return "created"


def task_errors() -> tuple[type[Exception], ...]:
    """What makes a task fail and Cloud Tasks run it again: the store not answering in time."""
    from google.api_core import exceptions as gexc

    from common.domain.errors import DependencyUnavailableError, OverloadedError

    return (gexc.DeadlineExceeded, gexc.ServiceUnavailable, OverloadedError,
            DependencyUnavailableError)  # fmt: skip


def dry_run(
    client: Any,
    jobs: Any,
    change: dict[str, Any],
    expected: dict[str, Any],
    meter: Any,
    progress: Any,
) -> tuple[str, dict[str, Any]]:
    """The dry run of `change`, created as `POST /v1/admin/impact` creates it and run slice
    after slice as Cloud Tasks runs it: its id and its figures (documents counted by `meter`,
    a DocumentMeter on `client`). bench/replan.py re-plans its cases."""
    from google.cloud import firestore

    from common import clock
    from common.services.booking import Actor
    from common.services.impact import IMPACT_CASES, IMPACT_JOBS, CreateImpactJob

    failed = task_errors()
    now = clock.now()
    admin = Actor(uid="bench-admin", role="admin")
    created = jobs.create(admin, CreateImpactJob.model_validate({"change": change}), now)
    job_id = created.body["job"]["job_id"]
    before = meter.counts()
    started = time.monotonic()
    slices, retries = 0, 0
    while True:
        slices += 1
        try:
            outcome = jobs.run(job_id, clock.now())
        except failed as err:
            # The task failed (an emulator too busy to answer within the deadline): Cloud
            # Tasks runs it again after a backoff, and the job goes on from its cursor.
            retries += 1
            if retries > TASK_RETRIES:
                raise
            progress.done(f"dry run: slice failed ({type(err).__name__}), run again")
            time.sleep(TASK_RETRY_S)
            continue
        view = jobs.view(job_id)
        progress.update(
            f"dry run: {view['progress']['scanned']:,} bookings read, "
            f"{view['counts']['affected_cases']:,} cases",
            force=True,
        )
        if outcome["outcome"] in ("done", "failed"):
            break
    elapsed = time.monotonic() - started
    used = meter.counts() - before
    view = jobs.view(job_id)
    counts = view["counts"]
    listing_started = time.monotonic()
    listing = jobs.listing(admin, job_id, clock.now())
    lines = sum(1 for _ in listing.lines) - 1
    listing_s = time.monotonic() - listing_started
    job_doc = client.collection(IMPACT_JOBS).document(job_id).get().to_dict()
    chunk_sizes = [
        len(json.dumps(d.to_dict(), default=str))
        for d in client.collection(IMPACT_CASES)
        .where(filter=firestore.FieldFilter("job_id", "==", job_id))
        .stream()
    ]
    cases = counts["affected_cases"]
    return job_id, {
        "status": view["status"],
        "slices": slices,
        "slices_retried": retries,
        "pages": view["progress"]["pages"],
        "bookings_scanned": view["progress"]["scanned"],
        "affected_cases": cases,
        "affected_bookings": counts["affected_bookings"],
        "unknown_bookings": counts["unknown_bookings"],
        "points_with_cases": len(counts["by_point"]),
        "counties": len(counts["by_county"]),
        "expected": expected,
        "correct": (
            cases == expected["affected_cases"]
            and counts["affected_bookings"] == expected["affected_bookings"]
            and counts["unknown_bookings"] == expected["unknown_bookings"]
            and view["progress"]["scanned"] == expected["bookings"]
            and lines == view["progress"]["rows"]
        ),
        "run_s": round(elapsed, 1),
        "cases_per_s": round(cases / elapsed, 1),
        "bookings_per_s": round(view["progress"]["scanned"] / elapsed, 1),
        "documents": {
            "reads": used.billed_reads,
            "writes": used.writes,
            "commits": used.commits,
            "queries": used.queries,
            "reads_per_case": round(used.billed_reads / cases, 3),
            "writes_per_case": round(used.writes / cases, 4),
            "reads_per_booking_scanned": round(used.billed_reads / view["progress"]["scanned"], 3),
        },
        "job_document_bytes": len(json.dumps(job_doc, default=str)),
        "chunk_documents": len(chunk_sizes),
        "largest_chunk_bytes": max(chunk_sizes, default=0),
        "list_lines": lines,
        "list_stream_s": round(listing_s, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from google.cloud import firestore

    from bench import machine
    from bench.progress import Progress
    from common import clock
    from common.adapters.firestore_metering import DocumentMeter
    from common.domain.calendar import WARSAW
    from common.domain.rulebook import load_rule_book
    from common.services.impact import ImpactJobs
    from common.services.unit_of_work import FirestoreUnitsOfWork

    progress = Progress()
    emulator = _start_emulator(progress)
    os.environ.setdefault("LOCAL_STACK", "1")
    project = f"bench-impact-{uuid.uuid4().hex[:8]}"
    client = firestore.Client(project=project)
    now = clock.now()
    today = now.astimezone(WARSAW).date()
    cpu_start = machine.cpu_times()
    results: dict[str, Any] = {
        "command": "python -m bench.impact " + " ".join(sys.argv[1:]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine.machine_info(),
        "settings": {k: str(v) for k, v in vars(args).items()},
    }
    try:
        seeding = time.monotonic()
        expected = seed(client, args, today, now, progress)
        results["seed_s"] = round(time.monotonic() - seeding, 1)
        results["ceiling"] = _ceiling(client)
        meter = DocumentMeter(client)
        jobs = ImpactJobs(FirestoreUnitsOfWork(client, None), client, load_rule_book(), _Queue())
        change = {
            "kind": "rules",
            "effective_from": today.isoformat(),
            "cohorts": _correction(today),
        }
        _, results["dry_run"] = dry_run(client, jobs, change, expected, meter, progress)
    finally:
        results["load"] = {
            "machine_busy_share": machine.busy_share(cpu_start, machine.cpu_times()),
            "loadavg_at_end": machine.loadavg(),
        }
        if emulator is not None:
            emulator.stop()
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
    return results


def render(results: dict[str, Any]) -> str:
    run = results.get("dry_run", {})
    docs = run.get("documents", {})
    ceiling = results.get("ceiling", {})
    machine = results.get("machine", {})
    rows = [
        ("bookings scanned", f"{run.get('bookings_scanned', 0):,}"),
        (
            "affected cases (series) / bookings",
            f"{run.get('affected_cases', 0):,} / {run.get('affected_bookings', 0):,}",
        ),
        ("unknown (no birth date) bookings", f"{run.get('unknown_bookings', 0):,}"),
        (
            "points / counties with cases",
            f"{run.get('points_with_cases', 0):,} / {run.get('counties', 0):,}",
        ),
        ("exactly the seeded set", str(run.get("correct"))),
        (
            "run time (slices, pages)",
            f"{run.get('run_s')} s ({run.get('slices')}, {run.get('pages')})",
        ),
        ("cases per second", str(run.get("cases_per_s"))),
        ("bookings scanned per second", str(run.get("bookings_per_s"))),
        ("documents read per case (billed)", str(docs.get("reads_per_case"))),
        ("documents written per case", str(docs.get("writes_per_case"))),
        (
            "reads / writes / commits in all",
            f"{docs.get('reads', 0):,} / {docs.get('writes', 0):,} / {docs.get('commits', 0):,}",
        ),
        ("job document (largest write)", f"{run.get('job_document_bytes', 0):,} bytes"),
        (
            "chunk documents, largest",
            f"{run.get('chunk_documents')}, {run.get('largest_chunk_bytes', 0):,} bytes",
        ),
        (
            "list: lines, time to stream",
            f"{run.get('list_lines', 0):,}, {run.get('list_stream_s')} s",
        ),
        (
            "emulator ceiling, one client",
            f"{ceiling.get('gets_per_s')} gets/s, {ceiling.get('writes_per_s')} writes/s",
        ),
    ]
    head = (
        f"# Impact dry run benchmark\n\n`{results.get('command')}`, {results.get('started_at')}; "
        f"{machine.get('cpu_model', '')} x{machine.get('nproc', '')}, "
        f"{machine.get('memory_gib', '')} GiB, Python {machine.get('python', '')}, "
        f"Firestore emulator {machine.get('firestore_emulator', '')}; "
        f"seeding {results.get('seed_s')} s; machine busy "
        f"{results.get('load', {}).get('machine_busy_share')}\n\n"
    )
    table = "| figure | result |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    return head + table + "\n"


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.getLogger("common").setLevel(logging.ERROR)
    args = _args(argv)
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    Path(f"{args.out}.md").write_text(render(results))
    print(render(results))
    return 0 if results.get("dry_run", {}).get("correct") else 1


if __name__ == "__main__":
    raise SystemExit(main())
