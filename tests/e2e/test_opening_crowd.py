"""docs/reliability.md items 1, 2 and 12 at the scale of a real opening, through HTTP.

1,000 patients, each with a valid e-referral, book the same slot of 100 seats at the same
instant, through the gateway served as the local stack serves it (gunicorn workers,
emulator/serve.py), each behaving as api/openapi.yaml tells clients to (bench/crowd.py: the
same Idempotency-Key again after a 503/429 with Retry-After or a dropped connection, for up
to 60 s). Exactly 100 are booked and 900 refused as full, each with the nearest alternatives;
nobody is left without an answer, nobody is refused while a seat was still free, no patient
holds two bookings, and the free seats search shows (once folded) are 0. A behaviour test:
how long it takes is the benchmark's business (`make bench`), not asserted here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.crowd import judge, opening_day, run_crowd, seed_opening
from common import clock
from emulator.processes import ManagedProcess, free_port, http_ok
from tests.support.stack import firestore_client

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
BOOKERS = int(os.environ.get("CROWD_BOOKERS", "1000"))
SEATS = int(os.environ.get("CROWD_SEATS", "100"))


@pytest.fixture
def gateway_port(project: str, tmp_path: Path) -> Iterator[int]:
    port = free_port(HOST)
    process = ManagedProcess(
        name="gateway",
        argv=[sys.executable, "-m", "emulator.gateway", "--host", HOST, "--port", str(port)],
        ready=lambda: http_ok(f"http://{HOST}:{port}/healthz"),
        log_path=tmp_path / "gateway.log",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    process.start()
    try:
        process.wait_ready(90)
        yield port
    finally:
        process.stop()


def test_a_thousand_at_once_on_a_hundred_seats_get_exactly_a_hundred_bookings(
    project: str, gateway_port: int
) -> None:
    db = firestore_client(project)
    opening = seed_opening(
        db, project, bookers=BOOKERS, seats_per_point=SEATS, day=opening_day(clock.now())
    )
    answers, wall_s = run_crowd(HOST, gateway_port, opening.bookers)
    outcome = judge(db, opening, answers, wall_s)
    print(f"\n{BOOKERS} bookers on {SEATS} seats: {outcome.summary()}")

    assert outcome.unanswered == 0, outcome
    assert outcome.booked == SEATS, outcome
    assert outcome.refused_full == BOOKERS - SEATS, outcome
    assert not outcome.refused_other, outcome
    assert outcome.refused_while_free == 0, outcome
    assert (outcome.seats_in_store, outcome.booked_in_store) == (SEATS, SEATS), outcome
    assert outcome.patients_with_two == 0, outcome
    assert outcome.free_after_fold == {opening.point_ids[0]: 0}, outcome
    # Every refusal says why and offers what else there is (here: nothing nearby).
    refused = [a for a in answers if a.status == 409]
    assert all(a.body["error"]["details"]["reason"] == "full" for a in refused)
    assert all("alternatives" in a.body["error"]["details"] for a in refused)
