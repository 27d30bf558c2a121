"""Why reservation uses seat documents: the hot-document probe.

Runs, against the official Firestore emulator, N concurrent bookers on ONE slot of capacity N:
  A. the naive design: a transaction reads the slot's counter and decrements it;
  B. our design: a blind batched commit that create()s one seat document (no reads, no locks).
Prints successes, surfaced failures and wall time for each. Usage (with the emulator running,
e.g. under `make run`, or any FIRESTORE_EMULATOR_HOST):

    FIRESTORE_EMULATOR_HOST=127.0.0.1:8080 python -m bench.contention_probe --bookers 20
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid

from google.api_core import exceptions as gexc
from google.cloud import firestore


def naive(db: firestore.Client, bookers: int) -> tuple[int, int, float]:
    slot = db.collection("probe_slots").document(uuid.uuid4().hex)
    slot.set({"free": bookers})
    ok = failed = 0
    lock = threading.Lock()
    barrier = threading.Barrier(bookers)

    @firestore.transactional
    def take(transaction: firestore.Transaction) -> bool:
        free = slot.get(transaction=transaction).get("free")
        if free <= 0:
            return False
        transaction.update(slot, {"free": free - 1})
        return True

    def run() -> None:
        nonlocal ok, failed
        barrier.wait()
        try:
            success = take(db.transaction())
        except (ValueError, gexc.GoogleAPICallError):
            success = False
        with lock:
            ok, failed = (ok + 1, failed) if success else (ok, failed + 1)

    started = time.monotonic()
    threads = [threading.Thread(target=run) for _ in range(bookers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ok, failed, time.monotonic() - started


def seats(db: firestore.Client, bookers: int) -> tuple[int, int, float]:
    slot_id = uuid.uuid4().hex
    ok = failed = 0
    lock = threading.Lock()
    barrier = threading.Barrier(bookers)

    def run(index: int) -> None:
        nonlocal ok, failed
        barrier.wait()
        # Each booker walks the seats from a different starting point, as the service does.
        for attempt in range(bookers):
            seat = (index + attempt) % bookers
            batch = db.batch()
            batch.create(db.collection("probe_seats").document(f"{slot_id}_{seat}"), {"b": index})
            batch.update(
                db.collection("probe_slots").document(slot_id), {"free": firestore.Increment(-1)}
            )
            try:
                batch.commit()
            except gexc.Conflict:
                continue
            with lock:
                ok += 1
            return
        with lock:
            failed += 1

    db.collection("probe_slots").document(slot_id).set({"free": bookers})
    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(bookers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ok, failed, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bookers", type=int, default=20)
    args = parser.parse_args()
    if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        raise SystemExit("set FIRESTORE_EMULATOR_HOST to a running Firestore emulator")
    db = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "probe"))
    for name, probe in (("read-modify-write transaction", naive), ("seat documents", seats)):
        ok, failed, seconds = probe(db, args.bookers)
        print(
            f"{name:32s} {args.bookers} bookers, capacity {args.bookers}: "
            f"{ok} booked, {failed} failed, {seconds:.1f} s"
        )


if __name__ == "__main__":
    main()
