"""Reserved capacity, pure: bands, layers, groups, the seat rule, the service on an in-memory
store, and the seat choice under every interleaving of stale reads (common/domain/
reservations.py, common/services/reservations.py, common/services/seats.py)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from common.adapters.firestore_store import AUDIT_LOG, AVAILABILITY, POINTS, SEATS
from common.domain.calendar import SlotAvailability, SlotRef
from common.domain.errors import ForbiddenError, PointNotFoundError, ValidationFailedError
from common.domain.reservations import (
    Reservation,
    ReservationConflictError,
    ReservationGroup,
    explicit_band,
    first_fit_layer,
    outsider_free,
    overlapping_scopes,
    seat_rule,
    share_bound,
)
from common.domain.rulebook import load_rule_book
from common.services.booking import Actor
from common.services.reservations import (
    RESERVATION_LAYERS,
    RESERVATIONS,
    CancelReservationRequest,
    ReservationBook,
    ReservationRequest,
    ReservationService,
)
from common.services.seats import SeatBroker, SlotChoice
from tests.support.fake_store import FakeUnitsOfWork

NOW = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
DAY = date(2026, 12, 5)
POINT = "pt-00001"
REF = SlotRef(POINT, DAY, time(9, 0), "jcovden")
OLD = date(1944, 5, 14)
YOUNG = date(1980, 5, 17)
STAFF = Actor(uid="staff-1", role="staff", point_id=POINT)


def reservation(
    layer: int = 0, percent: int = 50, *, until: datetime = NOW + timedelta(hours=2), **extra
) -> Reservation:
    return Reservation(
        reservation_id=extra.pop("reservation_id", f"r{layer}"),
        point_id=POINT,
        group=extra.pop("group", ReservationGroup(born_to=1950)),
        percent=percent,
        layer=layer,
        until=until,
        **extra,
    )


# -- bands and layers ------------------------------------------------------------------------
@pytest.mark.parametrize("capacity", range(0, 41))
def test_layers_that_do_not_overlap_give_bands_that_do_not_overlap(capacity: int) -> None:
    layers = [(0, 30), (30, 20), (50, 45), (95, 5)]
    bands = [reservation(lo, p).default_band(capacity) for lo, p in layers]
    seen: set[int] = set()
    for band, (_, percent) in zip(bands, layers, strict=True):
        assert not band & seen
        assert band <= set(range(capacity))
        assert abs(len(band) - percent * capacity / 100) < 1  # the share, rounded
        seen |= band
    assert seen == set(range(capacity))  # 100 % in all: every seat, once


def test_share_bound_is_integer_ceiling() -> None:
    assert [share_bound(p, 10) for p in (0, 1, 10, 30, 33, 100)] == [0, 1, 1, 3, 4, 10]
    assert share_bound(50, 3) == 2 and share_bound(50, 4) == 2


def test_first_fit_layer() -> None:
    assert first_fit_layer([], 40) == 0
    assert first_fit_layer([(0, 30)], 20) == 30
    assert first_fit_layer([(0, 30), (50, 100)], 20) == 30
    assert first_fit_layer([(0, 30), (50, 100)], 25) is None
    assert first_fit_layer([(20, 40)], 20) == 0
    assert first_fit_layer([(0, 100)], 1) is None
    assert first_fit_layer([(0, 60)], 40) == 60


def test_overlapping_scopes() -> None:
    d1, d2, d3 = date(2026, 12, 5), date(2026, 12, 6), date(2026, 12, 7)
    assert overlapping_scopes((POINT, None, None, None), (POINT, d1, d1, "jcovden"))
    assert not overlapping_scopes((POINT, None, None, None), ("pt-00002", None, None, None))
    assert not overlapping_scopes((POINT, d1, d1, None), (POINT, d2, d3, None))
    assert overlapping_scopes((POINT, d1, d2, None), (POINT, d2, None, None))
    assert not overlapping_scopes((POINT, None, None, "jcovden"), (POINT, None, None, "comirnaty"))


def test_an_explicit_band_takes_free_seats_as_many_as_the_default() -> None:
    assert explicit_band(frozenset({0, 1}), {2, 3}, 6) is None  # the default is free
    assert explicit_band(frozenset({0, 1}), {1}, 6) == (0, 2)
    assert explicit_band(frozenset({0, 1}), {0, 1, 2}, 6) == (3, 4)
    assert explicit_band(frozenset({0, 1}), {0, 1, 2, 3, 4}, 6) == (5,)  # fewer: no more free
    assert explicit_band(frozenset({0, 1}), {0, 1}, 2) == ()


# -- groups --------------------------------------------------------------------------------------
def test_groups_by_birth_years_and_by_age_on_the_visit_day() -> None:
    born_by_1950 = ReservationGroup(born_to=1950)
    assert born_by_1950.includes(OLD, DAY) and not born_by_1950.includes(YOUNG, DAY)
    assert not born_by_1950.includes(None, DAY)  # an unknown person is in no group
    seventies = ReservationGroup(age_min=70, age_max=79)
    turning_70 = date(1956, 12, 5)
    assert seventies.includes(turning_70, DAY)  # the birthday is the visit day
    assert not seventies.includes(turning_70, DAY - timedelta(days=1))
    assert not seventies.includes(date(1946, 12, 5), DAY)  # 80 that day
    # A cohort counts as a member only when wholly inside the group.
    assert born_by_1950.includes_all(1941, 1950, DAY)
    assert not born_by_1950.includes_all(1941, 1955, DAY)
    assert not born_by_1950.includes_all(None, 2009, DAY)
    assert ReservationGroup(age_min=60).includes_all(None, 1960, DAY)  # 65+ in 2026
    assert not ReservationGroup(age_min=60).includes_all(None, 1970, DAY)


@pytest.mark.parametrize(
    "fields",
    [{}, {"born_to": 1950, "age_min": 60}, {"born_from": 1960, "born_to": 1950},
     {"age_min": 80, "age_max": 70}, {"born_to": 1850}],
)  # fmt: skip
def test_a_group_is_one_kind_with_bounds_in_order(fields: dict) -> None:
    with pytest.raises(ValidationError):
        ReservationGroup(**fields)


# -- the seat rule ----------------------------------------------------------------------------
def test_the_rule_keeps_the_band_from_outsiders_and_prefers_it_for_members() -> None:
    found = [reservation(0, 50)]
    outsider = seat_rule(found, REF, 4, YOUNG, NOW)
    assert outsider is not None and outsider.kept == {0, 1} and not outsider.preferred
    assert outsider.kept_prefix() == 2 and outsider.until == NOW + timedelta(hours=2)
    member = seat_rule(found, REF, 4, OLD, NOW)
    assert member is not None and member.preferred == {0, 1} and not member.kept
    unknown = seat_rule(found, REF, 4, None, NOW)
    assert unknown is not None and unknown.kept == {0, 1}
    # After `until`, cancelled, or out of its scope: no rule at all.
    assert seat_rule(found, REF, 4, YOUNG, NOW + timedelta(hours=2)) is None
    assert seat_rule([reservation(0, 50, status="cancelled")], REF, 4, YOUNG, NOW) is None
    assert seat_rule([reservation(0, 50, product="comirnaty")], REF, 4, YOUNG, NOW) is None
    later = reservation(0, 50, date_from=DAY + timedelta(days=1))
    assert seat_rule([later], REF, 4, YOUNG, NOW) is None


def test_explicit_bands_and_two_groups() -> None:
    explicit = reservation(0, 50, bands={REF.slot_id: (2, 3)})
    rule = seat_rule([explicit], REF, 4, YOUNG, NOW)
    assert rule is not None and rule.kept == {2, 3} and rule.kept_prefix() is None
    young_group = reservation(50, 50, reservation_id="r2", group=ReservationGroup(born_from=1970))
    both = seat_rule([reservation(0, 50), young_group], REF, 4, YOUNG, NOW)
    assert both is not None and both.kept == {0, 1} and both.preferred == {2, 3}
    neither = seat_rule([reservation(0, 50), young_group], REF, 4, date(1960, 1, 1), NOW)
    assert neither is not None and neither.kept == {0, 1, 2, 3}


def test_search_bound_never_shows_more_than_bookable() -> None:
    rule = seat_rule([reservation(0, 50)], REF, 4, YOUNG, NOW)
    assert [outsider_free(f, rule) for f in (4, 3, 2, 1, 0)] == [2, 1, 0, 0, 0]
    assert outsider_free(3, None) == 3
    assert outsider_free(3, seat_rule([reservation(0, 50)], REF, 4, OLD, NOW)) == 3


def test_a_reservation_survives_its_document() -> None:
    original = reservation(
        10, 30, date_from=DAY, date_to=DAY, product="jcovden", bands={REF.slot_id: (1, 2)},
        created_at=NOW, created_by="staff-1",
    )  # fmt: skip
    assert Reservation.from_document(original.to_document()) == original


# -- the seat choice under stale reads: exact, whatever the interleaving -----------------------
class _Reader:
    """Seats as documents (only what SlotChoice reads), with create() preconditions."""

    def __init__(self) -> None:
        self.seats: dict[int, str] = {}

    def count(self, collection: str, *where) -> int:
        low = next((v for f, op, v in where if f == "index" and op == ">="), 0)
        high = next(v for f, op, v in where if f == "index" and op == "<")
        return sum(1 for i in self.seats if low <= i < high)

    def query(self, collection: str, *where):
        from common.services.unit_of_work import Document

        return [Document(REF.seat_id(i), {"index": i}, NOW) for i in self.seats]


@pytest.mark.parametrize("seed", range(40))
def test_no_interleaving_of_claims_gives_an_outsider_a_kept_seat(seed: int) -> None:
    rng = random.Random(seed)
    capacity = rng.randint(1, 8)
    percent = rng.choice([10, 25, 50, 75, 100])
    found = [reservation(0, percent)]
    band = found[0].default_band(capacity)
    slot = SlotAvailability(REF, capacity, capacity)
    people = [("member", OLD)] * rng.randint(0, 6) + [("outsider", YOUNG)] * rng.randint(0, 12)
    rng.shuffle(people)
    reader = _Reader()
    choices = []
    for kind, born in people:
        # Each booker in an instance of its own (its own broker): they may pick the same seat.
        rule = seat_rule(found, REF, capacity, born, NOW)
        choice = SlotChoice(
            [slot], SeatBroker(), random.Random(rng.random()), now=NOW,
            rule=lambda s, rule=rule: rule,
        )  # fmt: skip
        choices.append((kind, choice, choice.pick(reader)))  # every read before any commit
    holders: dict[int, str] = {}
    refused: list[str] = []
    pending = list(choices)
    while pending:
        kind, choice, has_seat = pending.pop(rng.randrange(len(pending)))
        if not has_seat:
            refused.append(kind)
            continue
        if choice.seat in reader.seats:  # the create() precondition: someone was first
            pending.append((kind, choice, choice.pick(reader)))  # read again, pick again
            continue
        reader.seats[choice.seat] = kind
        holders[choice.seat] = kind
    members = sum(1 for k in holders.values() if k == "member")
    outsiders = sum(1 for k in holders.values() if k == "outsider")
    k = len(band)
    assert all(holders[i] == "member" for i in band if i in holders)
    assert len(holders) <= capacity
    assert outsiders + max(0, members - k) <= capacity - k
    # Nobody refused while a seat was theirs to take.
    if "member" in refused:
        assert len(holders) == capacity
    if "outsider" in refused:
        assert all(i in holders for i in range(capacity) if i not in band)


# -- the service on an in-memory store -------------------------------------------------------
@pytest.fixture
def units() -> FakeUnitsOfWork:
    units = FakeUnitsOfWork(now=lambda: NOW)
    units.store.put(POINTS, POINT, {"point_id": POINT, "products": ["jcovden", "comirnaty"]})
    slots = {"0900_jcovden": {"cap": 4, "free": 2}, "1000_jcovden": {"cap": 4, "free": 4}}
    days = {"d20261205": slots}
    units.store.put(AVAILABILITY, POINT, {"point_id": POINT, "days": days})
    for index in (0, 3):  # two seats of 09:00 taken before any reservation
        units.store.put(
            SEATS, REF.seat_id(index),
            {"slot_id": REF.slot_id, "point_id": POINT, "day": DAY.isoformat(), "index": index},
        )  # fmt: skip
    return units


def _service(units: FakeUnitsOfWork) -> tuple[ReservationService, ReservationBook]:
    book = ReservationBook(units)
    ids = iter(f"res{i:03d}" for i in range(100))
    return ReservationService(units, load_rule_book(), book, new_id=lambda: next(ids)), book


def _body(**fields) -> ReservationRequest:
    return ReservationRequest(
        **({"percent": 50, "born_to": 1950, "until": NOW + timedelta(hours=2)} | fields)
    )


def test_a_reservation_is_made_with_its_layer_bands_audit_and_layers(units) -> None:
    service, book = _service(units)
    assert book.at_point(POINT, NOW) == ()
    made = service.create(STAFF, POINT, _body(), NOW)
    assert made.status == 201 and made.body["reservation"]["state"] == "active"
    stored = Reservation.from_document(units.store.data(RESERVATIONS, "res000"))
    # 09:00 had seats 0 and 3 taken: its band is written down among the free ones.
    assert stored.layer == 0 and dict(stored.bands) == {REF.slot_id: (1, 2)}
    assert units.store.data(RESERVATION_LAYERS, POINT)["layers"]["res000"]["percent"] == 50
    [entry] = units.store.collection(AUDIT_LOG).values()
    assert entry["action"] == "reservation.create" and entry["actor_uid"] == "staff-1"
    # The book was told: this instance applies it at once.
    [cached] = book.at_point(POINT, NOW)
    rule = book.rule(REF, 4, YOUNG, NOW)
    assert cached.reservation_id == "res000" and rule is not None and rule.kept == {1, 2}
    # A second group takes the next layer (of jcovden's slots); comirnaty's slots have only
    # the first one's layer taken, so a third group gets the same layer there.
    young = {"born_to": None, "born_from": 2000}
    assert service.create(STAFF, POINT, _body(product="jcovden", **young), NOW).status == 201
    assert Reservation.from_document(units.store.data(RESERVATIONS, "res001")).layer == 50
    assert service.create(STAFF, POINT, _body(product="comirnaty", **young), NOW).status == 201
    assert Reservation.from_document(units.store.data(RESERVATIONS, "res002")).layer == 50
    with pytest.raises(ReservationConflictError):
        service.create(STAFF, POINT, _body(percent=1, product="comirnaty"), NOW)


def test_more_than_100_percent_or_a_stranger_writes_nothing(units) -> None:
    service, _ = _service(units)
    service.create(STAFF, POINT, _body(percent=80), NOW)
    before = {k: v[0] for k, v in units.store.documents.items()}
    with pytest.raises(ReservationConflictError):
        service.create(STAFF, POINT, _body(percent=30), NOW)
    with pytest.raises(ForbiddenError):
        service.create(Actor(uid="s2", role="staff", point_id="pt-00002"), POINT, _body(), NOW)
    with pytest.raises(ForbiddenError):
        service.create(Actor(uid="a", role="agent", reason="x"), POINT, _body(), NOW)
    with pytest.raises(ValidationFailedError):
        service.create(STAFF, POINT, _body(until=NOW - timedelta(seconds=1)), NOW)
    with pytest.raises(ValidationFailedError):
        service.create(STAFF, POINT, _body(until=NOW + timedelta(days=181)), NOW)
    with pytest.raises(PointNotFoundError):
        service.create(Actor(uid="ad", role="admin"), "pt-09999", _body(), NOW)
    assert {k: v[0] for k, v in units.store.documents.items()} == before


def test_a_cancelled_reservation_frees_its_layer(units) -> None:
    service, book = _service(units)
    service.create(STAFF, POINT, _body(percent=100), NOW)
    cancelled = service.cancel(STAFF, POINT, "res000", CancelReservationRequest(), NOW)
    assert cancelled.body["reservation"]["state"] == "cancelled"
    assert units.store.data(RESERVATION_LAYERS, POINT)["layers"] == {}
    assert book.at_point(POINT, NOW) == ()
    again = service.cancel(STAFF, POINT, "res000", CancelReservationRequest(), NOW)
    assert again.status == 200  # already cancelled: the same answer, nothing more written
    assert service.create(STAFF, POINT, _body(percent=100), NOW).status == 201
    listing = service.listing(STAFF, POINT, NOW)["reservations"]
    assert sorted(r["state"] for r in listing) == ["active", "cancelled"]


def test_the_book_reloads_once_per_period() -> None:
    units = FakeUnitsOfWork(now=lambda: NOW)
    ticks = [0.0]
    book = ReservationBook(units, ttl_s=15.0, monotonic=lambda: ticks[0])
    units.store.put(RESERVATIONS, "r0", reservation(0, 50).to_document())
    assert len(book.at_point(POINT, NOW)) == 1 and book.loads == 1
    units.store.put(RESERVATIONS, "r1", reservation(50, 50, reservation_id="r1").to_document())
    ticks[0] = 14.0
    assert len(book.at_point(POINT, NOW)) == 1 and book.loads == 1  # within the bound
    ticks[0] = 15.5
    assert len(book.at_point(POINT, NOW)) == 2 and book.loads == 2
    # `until` needs no reload: past it, the reservation is simply not in force.
    assert book.at_point(POINT, NOW + timedelta(hours=3)) == ()
