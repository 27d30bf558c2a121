"""Documents read per search, counted (not guessed), at several data sizes.

The claim of common/services/search.py: a page costs one availability document per point it
examines, however many points and slots the country has; the directory costs a few chunk
reads once a minute per instance. Counted with the exact DocumentMeter.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from common.adapters.firestore_metering import DocumentMeter
from common.domain.calendar import WARSAW
from common.services.directory import (
    DIRECTORY_CHUNK,
    regular_calendar,
    write_calendars,
    write_points,
)
from common.services.search import SearchQuery, SearchService
from common.wiring import rule_book
from emulator.seed.points import generate_points
from tests.support.stack import firestore_client

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def _seed(project: str, points: int, days: int) -> None:
    db = firestore_client(project)
    seeds = [p.to_dict() for p in generate_points(points, seed=7)]
    for seed in seeds:
        seed["products"] = ["comirnaty", "jcovden"]
    write_points(db, seeds)
    first_day = NOW.astimezone(WARSAW).date() + timedelta(days=1)
    calendars = [
        regular_calendar(
            p["point_id"],
            p["products"],
            first_day,
            days,
            opens=time(8, 0),
            slots_per_day=16,
            capacity=2,
            weekends=True,
        )
        for p in seeds
    ]
    write_calendars(firestore_client(project), calendars)


@pytest.mark.parametrize(("points", "days"), [(100, 28), (1000, 14), (7000, 7)])
def test_reads_per_search_stay_flat_as_the_country_grows(project: str, points: int, days: int):
    _seed(project, points, days)
    db = firestore_client(project)
    meter = DocumentMeter(db)
    service = SearchService(db, rule_book())
    query = SearchQuery(postcode="31-001", product="comirnaty", limit=5, radius_km=300)

    first = service.search(query, NOW)
    cold = meter.counts()
    service.search(query, NOW)
    warm = meter.counts() - cold

    chunks = -(-points // DIRECTORY_CHUNK)
    assert len(first["items"]) == 5
    # Cold: the directory chunks once, plus one availability document per point shown.
    assert cold.reads == chunks + 5, f"{points} points: cold search read {cold.reads} documents"
    # Warm (directory cached): exactly the five points shown, whatever the data size.
    assert warm.reads == 5, f"{points} points: warm search read {warm.reads} documents"
    assert warm.writes == 0
    slots = points * days * 16
    print(f"\n{points} points, {slots} slots: cold {cold.reads} reads, warm {warm.reads} reads")


def test_sparse_availability_is_bounded_by_the_scan_limit(project: str):
    """When the nearest points are full, a page reads at most 4 x limit documents."""
    _seed(project, 60, 0)  # points with empty calendars: nothing free anywhere
    db = firestore_client(project)
    service = SearchService(db, rule_book())
    service.search(SearchQuery(postcode="31-001", limit=5, radius_km=300), NOW)  # warm up
    meter = DocumentMeter(db)
    result = service.search(SearchQuery(postcode="31-001", limit=5, radius_km=300), NOW)
    assert result["items"] == []
    assert meter.counts().reads == 20
    assert result["next_cursor"] is not None  # the client may go on scanning further
