"""Search from memory: documents read per search, counted (not guessed), at several sizes.

The claim of common/services/search.py: a warm instance answers a search without reading
Firestore; it holds every point's calendar (AvailabilityView) and refreshes it at most once a
second with the documents that changed, so what it reads follows what changed, not how many
searches it answers or how big the country is. The results are those of reading every
calendar afresh. Counted with the exact DocumentMeter; the view's clock is a test's own.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from google.cloud import firestore

from common.adapters.firestore_metering import DocumentMeter
from common.adapters.firestore_store import AVAILABILITY
from common.domain.calendar import WARSAW, PointCalendar
from common.geo import haversine_km, load_postcode_directory
from common.services.availability import (
    AvailabilityFolder,
    AvailabilityView,
    delta_document,
)
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


class Ticker:
    """The view's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _seed(project: str, points: int, days: int) -> list[dict]:
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
    write_calendars(db, calendars)
    return seeds


def _service(db: firestore.Client, ticker: Ticker) -> SearchService:
    view = AvailabilityView(db, monotonic=ticker, overlap=timedelta(0))
    return SearchService(db, rule_book(), view=view)


# The national network's 7,000 points with two days each: what grows is the number of points
# (the emulator indexes every slot of a calendar, so a week each took a minute of the suite).
@pytest.mark.parametrize(("points", "days"), [(100, 28), (1000, 14), (7000, 2)])
def test_a_warm_search_reads_nothing_as_the_country_grows(project: str, points: int, days: int):
    _seed(project, points, days)
    db = firestore_client(project)
    meter = DocumentMeter(db)
    ticker = Ticker()
    service = _service(db, ticker)
    query = SearchQuery(postcode="31-001", product="comirnaty", limit=5, radius_km=300)

    first = service.search(query, NOW)
    cold = meter.counts()
    for _ in range(20):
        service.search(query, NOW)
    warm = meter.counts() - cold
    ticker.now += 1.5  # past the refresh interval, nothing changed: one empty query
    service.search(query, NOW)
    refresh = meter.counts() - cold - warm

    chunks = -(-points // DIRECTORY_CHUNK)
    assert len(first["items"]) == 5
    # Cold: the directory chunks and every point's calendar, once per instance.
    assert cold.reads == chunks + points, f"{points} points: cold read {cold.reads}"
    # Warm: nothing at all, whatever the data size, for twenty searches.
    assert warm.reads == 0 and warm.queries == 0, f"{points} points: warm read {warm}"
    # A refresh with nothing changed: one query that finds nothing (billed one read).
    assert (refresh.reads, refresh.queries, refresh.billed_reads) == (0, 1, 1), refresh
    assert cold.writes == warm.writes == refresh.writes == 0
    slots = points * days * 16
    print(f"\n{points} points, {slots} slots: cold {cold.reads} reads, 20 warm searches 0 reads")


def test_a_refresh_reads_only_what_changed_and_search_shows_it(project: str):
    seeds = _seed(project, 200, 7)
    db = firestore_client(project)
    ticker = Ticker()
    service = _service(db, ticker)
    query = SearchQuery(postcode="31-001", product="comirnaty", limit=1, radius_km=300)
    nearest = service.search(query, NOW)["items"][0]
    slot = nearest["earliest_slots"][0]
    # Two seats of the nearest point's first slot are booked: their delta is folded.
    db.collection("availability_deltas").document("d1").set(
        delta_document([(slot["slot_id"], -2)], NOW) or {}
    )
    assert AvailabilityFolder(db).fold_all().points == 1
    meter = DocumentMeter(db)
    # Within the refresh interval the view is the one it had: bounded staleness.
    assert service.search(query, NOW)["items"][0]["free_seats"] == nearest["free_seats"]
    ticker.now += 1.5
    after = service.search(query, NOW)["items"][0]
    assert after["free_seats"] == nearest["free_seats"] - 2
    assert slot["slot_id"] not in {s["slot_id"] for s in after["earliest_slots"]}
    # The refresh read the one changed calendar (and re-reads whatever changed in the last
    # few seconds, REFRESH_OVERLAP: here only that one), not the 200 points.
    assert meter.counts().reads == 1, meter.counts()
    assert len(seeds) == 200


@pytest.mark.parametrize("product", ["comirnaty", "jcovden", None])
def test_results_are_those_of_every_calendar_read_afresh(project: str, product: str | None):
    seeds = _seed(project, 300, 10)
    db = firestore_client(project)
    service = _service(db, Ticker())
    center = load_postcode_directory().lookup("31-001")
    assert center is not None
    query = SearchQuery(postcode="31-001", product=product, limit=8, radius_km=120)
    got = service.search(query, NOW)
    # The reference: every point in the radius, nearest first, its calendar read now.
    documents = {s.id: s.to_dict() for s in db.collection(AVAILABILITY).stream()}
    expected = []
    date_from = NOW.astimezone(WARSAW).date()
    for point in sorted(
        seeds,
        key=lambda p: (haversine_km(center.point, _geo(p)), p["point_id"]),
    ):
        if haversine_km(center.point, _geo(point)) > query.radius_km:
            continue
        total, earliest = PointCalendar.free_in_document(
            point["point_id"],
            documents.get(point["point_id"]),
            not_before=NOW,
            date_from=date_from,
            date_to=date_from + timedelta(days=30),
            product=product,
            earliest=3,
        )
        if total:
            expected.append((point["point_id"], total, [s.ref.slot_id for s in earliest]))
        if len(expected) == query.limit:
            break
    assert [
        (i["point"]["point_id"], i["free_seats"], [s["slot_id"] for s in i["earliest_slots"]])
        for i in got["items"]
    ] == expected


def _geo(point: dict):
    from common.geo import GeoPoint

    return GeoPoint(point["lat"], point["lon"])


def test_sparse_availability_is_bounded_by_the_scan_limit(project: str):
    """When the nearest points are full, a page looks at most at 4 x limit points."""
    _seed(project, 60, 0)  # points with empty calendars: nothing free anywhere
    db = firestore_client(project)
    service = _service(db, Ticker())
    service.search(SearchQuery(postcode="31-001", limit=5, radius_km=300), NOW)  # warm up
    meter = DocumentMeter(db)
    result = service.search(SearchQuery(postcode="31-001", limit=5, radius_km=300), NOW)
    assert result["items"] == []
    assert result["points_scanned"] == 20
    assert meter.counts().reads == 0
    assert result["next_cursor"] is not None  # the client may go on scanning further
