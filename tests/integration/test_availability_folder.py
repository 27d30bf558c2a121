"""The background folder: each delta applied once, each point written at most once a round."""

from __future__ import annotations

from datetime import UTC, datetime

from google.cloud import firestore

from common.adapters.firestore_metering import DocumentMeter
from common.adapters.firestore_store import AVAILABILITY, AVAILABILITY_DELTAS
from common.services.availability import AvailabilityFolder, delta_document
from tests.support.stack import firestore_client

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
SLOT = "pt-00001_20261127_0800_comirnaty"


class Clock:
    """run_for's monotonic clock and sleep, moved by the sleeps it asks for."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _pending(db: firestore.Client, count: int) -> None:
    db.collection(AVAILABILITY).document("pt-00001").set(
        {"days": {"d20261127": {"0800_comirnaty": {"capacity": 500, "free": 500}}}}
    )
    batch = db.batch()
    for n in range(count):
        ref = db.collection(AVAILABILITY_DELTAS).document(f"d{n:04d}")
        batch.set(ref, delta_document([(SLOT, -1)], NOW) or {})
    batch.commit()


def test_a_backlog_is_folded_one_round_a_second_writing_the_point_once_a_round(project: str):
    db = firestore_client(project)
    _pending(db, 25)
    meter = DocumentMeter(db)
    clock = Clock()
    folder = AvailabilityFolder(db, batch_size=10)

    result = folder.run_for(3.5, interval_s=1.0, monotonic=clock.monotonic, sleep=clock.sleep)

    # Four rounds in 3.5 s (at 0, 1, 2, 3): 10 + 10 + 5 + nothing; one point write a round.
    assert (result.deltas, result.points) == (25, 3)
    assert len(clock.sleeps) == 3
    free = db.collection(AVAILABILITY).document("pt-00001").get().to_dict()
    assert free["days"]["d20261127"]["0800_comirnaty"]["free"] == 475
    assert not list(db.collection(AVAILABILITY_DELTAS).limit(1).stream())
    # Writes: the 25 deletes and exactly one availability write per round that had deltas.
    assert meter.counts().writes == 25 + 3, meter.counts()


def test_a_folder_that_lost_the_race_applies_nothing(project: str):
    db = firestore_client(project)
    _pending(db, 30)
    late = AvailabilityFolder(db, batch_size=30)
    # The late folder read the pending deltas; another folds them before it commits.
    seen = list(db.collection(AVAILABILITY_DELTAS).stream())
    assert AvailabilityFolder(db, batch_size=30).fold_once().deltas == 30
    # Its deletes find nothing (exists precondition), so its increments are not applied.
    assert late.apply(seen).deltas == 0
    free = db.collection(AVAILABILITY).document("pt-00001").get().to_dict()
    assert free["days"]["d20261127"]["0800_comirnaty"]["free"] == 470
