"""CPU per request of the busiest functions, measured in-process (the capacity model's input).

    FIRESTORE_EMULATOR_HOST=127.0.0.1:8080 PUBSUB_EMULATOR_HOST=127.0.0.1:8085 \
        python scripts/measure_request_cpu.py

Serves every function through the dev gateway in this process (werkzeug's test client, no
HTTP server), against the emulators named by FIRESTORE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST (each
booking's event is published, as deployed), on a project
of its own seeded with 7,000 points (about a million slots) and patients; then times, with
this process's CPU clock (all its threads, gRPC's included; the emulator's work is another
process and not counted), many searches (warm instance), bookings and cancellations. Prints
milliseconds of CPU per request; docs/capacity.md turns them into instance settings.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LOCAL_STACK", "1")  # emulator mode (common/config.py)
os.environ.setdefault("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
os.environ.setdefault("GOOGLE_CLOUD_PROJECT", f"cpu-{uuid.uuid4().hex[:8]}")


def main() -> int:
    from google.cloud import firestore
    from werkzeug.test import Client

    from bench.progress import Progress
    from bench.seed import bench_points, patient_pesels, seed_patients, seed_points, slot_ids
    from common import clock
    from common.config import Settings
    from emulator.gateway import build_gateway
    from emulator.identities import mint_id_token

    if not {"FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"} <= set(os.environ):
        print("set FIRESTORE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST", file=sys.stderr)
        return 2
    from google.cloud import pubsub_v1

    from common.declarations import load_declarations
    from emulator.provision import provision_pubsub

    declarations = load_declarations().model_copy(update={"subscriptions": {}})
    provision_pubsub(
        os.environ["GOOGLE_CLOUD_PROJECT"],
        "http://127.0.0.1:9/_functions",
        declarations,
        pubsub_v1.PublisherClient(),
        pubsub_v1.SubscriberClient(),
    )
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    db = firestore.Client(project=project)
    progress = Progress()
    points = bench_points(7000, products=["jcovden", "comirnaty"])
    calendars = seed_points(db, points, clock.today_warsaw() + timedelta(days=2), 9, progress)
    bookers = 400
    pesels = patient_pesels(bookers)
    seed_patients(db, pesels, Settings.from_env().pesel_hash_key, clock.today_warsaw(), progress)
    gateway = Client(build_gateway())

    def auth(uid: str, pesel: str) -> dict[str, str]:
        token = mint_id_token(project, uid, role="patient", pesel=pesel)
        return {"Authorization": f"Bearer {token}"}

    searcher = auth("searcher", pesels[0])
    postcodes = ["31-001", "00-001", "80-001", "60-001", "50-001", "90-001", "20-001", "70-001"]
    for postcode in postcodes:  # warm: the directory and every calendar in memory
        assert gateway.get(f"/v1/slots?postcode={postcode}", headers=searcher).status_code == 200
    n = 3000
    cpu = time.process_time()
    for i in range(n):
        query = f"/v1/slots?postcode={postcodes[i % 8]}&limit=5&product=jcovden"
        assert gateway.get(query, headers=searcher).status_code == 200
    search_ms = 1000 * (time.process_time() - cpu) / n

    slots = [s for c in calendars[:bookers] for s in slot_ids(c, "jcovden")[:1]]
    booked: list[tuple[str, dict[str, str]]] = []
    cpu = time.process_time()
    for i, (pesel, slot) in enumerate(zip(pesels, slots, strict=False)):
        headers = auth(f"p{i}", pesel) | {"Idempotency-Key": f"b{i}"}
        response = gateway.post("/v1/appointments", json={"slot_id": slot}, headers=headers)
        assert response.status_code == 201, response.get_json()
        booked.append((response.get_json()["appointments"][0]["appointment_id"], headers))
    book_ms = 1000 * (time.process_time() - cpu) / len(booked)
    cpu = time.process_time()
    for aid, headers in booked:
        headers = headers | {"Idempotency-Key": f"c-{aid}"}
        response = gateway.post(f"/v1/appointments/{aid}/cancel", json={}, headers=headers)
        assert response.status_code == 200, response.get_json()
    cancel_ms = 1000 * (time.process_time() - cpu) / len(booked)
    print(f"search {search_ms:.2f} ms CPU (warm, {n} requests)")
    print(f"book   {book_ms:.2f} ms CPU ({len(booked)} one-dose bookings)")
    print(f"cancel {cancel_ms:.2f} ms CPU ({len(booked)} cancellations)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
