"""PointsAdminService against the in-memory unit of work: admins create and update points.

Pure tests (no emulator): an upsert is one commit of the point, its empty calendar (a new
point only), its audit entry and the stored answer; the directory is rebuilt after the commit
from every point; refusals and outages write nothing, and rebuild nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from common.adapters.firestore_store import AUDIT_LOG, AVAILABILITY, IDEMPOTENCY, POINTS
from common.domain.errors import ForbiddenError, PointNotFoundError, UnknownProductError
from common.domain.rulebook import load_rule_book
from common.services.availability import CHANGED_AT
from common.services.booking import Actor
from common.services.idempotency import IdempotencyScope, IdempotentReplay, replay
from common.services.points_admin import PointRequest, PointsAdminService
from tests.support.fake_store import FakeUnitsOfWork

NOW = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
ADMIN = Actor(uid="admin-1", role="admin")
POINT = {
    "name": "Punkt Szczepień Rynek",
    "kind": "pharmacy",
    "street": "Rynek Główny 1",
    "postcode": "31-042",
    "place": "Kraków",
    "lat": 50.0617,
    "lon": 19.9373,
    "products": ["comirnaty"],
}


class Directory:
    """Records every rebuild of the search directory (the points it was rebuilt from)."""

    def __init__(self) -> None:
        self.rebuilds: list[list[str]] = []

    def __call__(self, points: Sequence[dict[str, Any]]) -> None:
        self.rebuilds.append(sorted(p["point_id"] for p in points))


@pytest.fixture
def units() -> FakeUnitsOfWork:
    units = FakeUnitsOfWork(now=lambda: NOW)
    units.store.put(POINTS, "pt-00001", {"point_id": "pt-00001", "name": "Punkt 1"})
    units.store.put(AVAILABILITY, "pt-00001", {"point_id": "pt-00001", "days": {"20261203": {}}})
    return units


@pytest.fixture
def directory() -> Directory:
    return Directory()


@pytest.fixture
def service(units: FakeUnitsOfWork, directory: Directory) -> PointsAdminService:
    return PointsAdminService(units, load_rule_book(), directory)


def test_creating_a_point_is_one_commit_with_its_calendar_then_the_directory(
    units: FakeUnitsOfWork, service: PointsAdminService, directory: Directory
) -> None:
    created = service.upsert(ADMIN, "pt-09999", PointRequest(**POINT), NOW)
    assert created.status == 201
    assert created.body["point"]["point_id"] == "pt-09999"
    assert units.store.commits == 1
    point = units.store.data(POINTS, "pt-09999")
    assert point is not None and point["name"] == POINT["name"]
    calendar = units.store.data(AVAILABILITY, "pt-09999")
    assert calendar == {"point_id": "pt-09999", "days": {}, CHANGED_AT: NOW}
    [entry] = units.store.collection(AUDIT_LOG).values()
    assert entry["action"] == "point.upsert"
    assert entry["details"] == {"point_id": "pt-09999", "created": True}
    assert directory.rebuilds == [["pt-00001", "pt-09999"]]
    assert service.get("pt-09999")["point"]["name"] == POINT["name"]


def test_updating_a_point_keeps_its_calendar(
    units: FakeUnitsOfWork, service: PointsAdminService, directory: Directory
) -> None:
    calendar = units.store.documents[(AVAILABILITY, "pt-00001")]
    updated = service.upsert(ADMIN, "pt-00001", PointRequest(**POINT | {"name": "Nowa"}), NOW)
    assert updated.status == 200
    assert units.store.data(POINTS, "pt-00001")["name"] == "Nowa"  # type: ignore[index]
    assert units.store.documents[(AVAILABILITY, "pt-00001")] == calendar
    [entry] = units.store.collection(AUDIT_LOG).values()
    assert entry["details"] == {"point_id": "pt-00001", "created": False}
    assert directory.rebuilds == [["pt-00001"]]


@pytest.mark.parametrize(
    ("actor", "point_id", "change", "error"),
    [
        (Actor(uid="staff-x", role="staff", point_id="pt-00001"), "pt-00001", {}, ForbiddenError),
        (Actor(uid="agent-1", role="agent", reason="x"), "pt-09999", {}, ForbiddenError),
        (ADMIN, "Not/A/Point", {}, PointNotFoundError),
        (ADMIN, "pt-09999", {"products": ["sputnik"]}, UnknownProductError),
    ],
)
def test_refusals_write_nothing(
    units: FakeUnitsOfWork,
    service: PointsAdminService,
    directory: Directory,
    actor,
    point_id,
    change,
    error,
) -> None:
    before = copy.deepcopy(units.store.documents)
    with pytest.raises(error):
        service.upsert(actor, point_id, PointRequest(**POINT | change), NOW)
    assert units.store.documents == before and directory.rebuilds == []


def test_an_unknown_point_is_not_found(service: PointsAdminService) -> None:
    with pytest.raises(PointNotFoundError):
        service.get("pt-09999")
    with pytest.raises(PointNotFoundError):
        service.get("../points")


def test_a_calendar_created_meanwhile_is_kept_and_the_upsert_decided_again(
    units: FakeUnitsOfWork, service: PointsAdminService, directory: Directory
) -> None:
    original = units.store.commit
    published = {"point_id": "pt-09999", "days": {"20261203": {"1000_comirnaty": {"free": 2}}}}

    def staff_publish_first(writes: Any, now: datetime) -> None:
        units.store.commit = original  # type: ignore[method-assign]
        units.store.put(AVAILABILITY, "pt-09999", published)
        original(writes, now)

    units.store.commit = staff_publish_first  # type: ignore[method-assign]
    created = service.upsert(ADMIN, "pt-09999", PointRequest(**POINT), NOW)
    assert created.status == 201
    assert units.attempts == 2 and units.store.commits == 1
    assert units.store.data(AVAILABILITY, "pt-09999") == published
    assert len(units.store.collection(AUDIT_LOG)) == 1
    assert directory.rebuilds == [["pt-00001", "pt-09999"]]


def test_an_outage_writes_nothing_and_rebuilds_nothing(
    units: FakeUnitsOfWork, service: PointsAdminService, directory: Directory
) -> None:
    before = copy.deepcopy(units.store.documents)
    units.store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        service.upsert(ADMIN, "pt-09999", PointRequest(**POINT), NOW)
    assert units.store.documents == before and directory.rebuilds == []


def test_an_upsert_racing_its_twin_replays_the_twins_answer(
    units: FakeUnitsOfWork, service: PointsAdminService, directory: Directory
) -> None:
    idem = IdempotencyScope("key-1", "fingerprint-1", NOW)
    original = units.store.commit
    twin: list[Any] = []

    def twin_first(writes: Any, now: datetime) -> None:
        units.store.commit = original  # type: ignore[method-assign]
        twin.append(service.upsert(ADMIN, "pt-09999", PointRequest(**POINT), NOW, idem))
        original(writes, now)

    units.store.commit = twin_first  # type: ignore[method-assign]
    with pytest.raises(IdempotentReplay) as replayed:
        service.upsert(ADMIN, "pt-09999", PointRequest(**POINT), NOW, idem)
    assert replay(replayed.value.stored, "fingerprint-1") == twin[0]
    assert twin[0].status == 201
    assert units.store.data(IDEMPOTENCY, "key-1") is not None
    assert units.store.commits == 1 and len(units.store.collection(AUDIT_LOG)) == 1
    assert directory.rebuilds == [["pt-00001", "pt-09999"]]
