"""VisitService against the in-memory unit of work: check-in, completion, no-show, walk-ins.

Pure tests (no emulator): each success is one commit, each refusal writes nothing, a visit
that changed between the read and the commit is read again and decided again, an outage
leaves nothing behind, and a request racing its own twin (same Idempotency-Key) answers with
the twin's stored response. A completion needs a check-in first, or an audited override.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from common.adapters.firestore_store import (
    ACTIVE_DOSES,
    APPOINTMENTS,
    AUDIT_LOG,
    AVAILABILITY,
    AVAILABILITY_DELTAS,
    IDEMPOTENCY,
    OUTBOX,
    PATIENTS,
    POINTS,
    REFERRALS,
    SEATS,
    VACCINATIONS,
)
from common.domain.appointments import Appointment, active_dose_lock_id
from common.domain.calendar import SlotRef
from common.domain.errors import (
    AgeNotAllowedError,
    AlreadyBookedError,
    AppointmentNotFoundError,
    CheckInRequiredError,
    ForbiddenError,
    InvalidStateTransitionError,
    PatientMismatchError,
    PointNotFoundError,
    ProductNotOfferedError,
    ReferralMissingError,
    ValidationFailedError,
    VisitNotDueError,
)
from common.domain.events import AppointmentCancelled, AppointmentNoShow, VaccinationCompleted
from common.domain.pesel import make_pesel, parse_pesel, pesel_key
from common.domain.rulebook import load_rule_book
from common.services.booking import Actor, BookingService
from common.services.idempotency import IdempotencyScope, IdempotentReplay, replay
from common.services.visits import (
    CheckInRequest,
    CompleteRequest,
    NoShowRequest,
    VisitService,
    WalkInRequest,
)
from tests.support.fake_store import FakeFirestore, FakeUnitsOfWork

SECRET = b"unit-test-pesel-secret"
RULES = load_rule_book()
NOW = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)  # 12:00 in Warsaw
TODAY = date(2026, 12, 2)
POINT = "pt-00001"
OTHER_POINT = "pt-00002"
STAFF = Actor(uid="staff-1", role="staff", point_id=POINT)
OTHER_STAFF = Actor(uid="staff-2", role="staff", point_id=OTHER_POINT)
ADMIN = Actor(uid="admin-1", role="admin")

ADULT = make_pesel(date(1980, 5, 17), "F", 1)
ADULT_2 = make_pesel(date(1980, 5, 17), "F", 2)
STRANGER = make_pesel(date(1980, 5, 17), "M", 3)  # no referral at all
CHILD = make_pesel(date(2016, 3, 3), "M", 4)


def key_of(pesel: str) -> str:
    return pesel_key(parse_pesel(pesel, TODAY), SECRET)


def frozen(store: FakeFirestore) -> dict[Any, Any]:
    return copy.deepcopy(store.documents)


def before_next_commit(store: FakeFirestore, change: Callable[[], None]) -> None:
    """Another request's change lands between the service's reads and its commit."""
    original = store.commit

    def racing(writes: Any, now: datetime) -> None:
        store.commit = original  # type: ignore[method-assign]
        change()
        original(writes, now)

    store.commit = racing  # type: ignore[method-assign]


class World:
    def __init__(self) -> None:
        self.units = FakeUnitsOfWork(now=lambda: NOW)
        self.store = self.units.store
        booking = BookingService(self.units, calendars=None, rule_book=RULES, pesel_secret=SECRET)  # type: ignore[arg-type]
        self.service = VisitService(self.units, RULES, SECRET, booking)
        for point_id in (POINT, OTHER_POINT):
            self.store.put(
                POINTS, point_id, {"point_id": point_id, "products": ["comirnaty", "jcovden"]}
            )
        for pesel in (ADULT, ADULT_2, STRANGER, CHILD):
            self.store.put(PATIENTS, key_of(pesel), {"patient_key": key_of(pesel), "pesel": pesel})
        for pesel in (ADULT, ADULT_2, CHILD):
            self.add_referral(pesel)

    def add_referral(self, pesel: str, kind: str = "primary") -> str:
        referral_id = f"ref-{key_of(pesel)[:8]}-{kind}"
        self.store.put(
            REFERRALS,
            referral_id,
            {
                "patient_key": key_of(pesel),
                "referral": {
                    "referral_id": referral_id,
                    "kind": kind,
                    "valid_from": (TODAY - timedelta(days=10)).isoformat(),
                    "valid_to": (TODAY + timedelta(days=80)).isoformat(),
                    "status": "active",
                    "booster_number": 0,
                },
            },
        )
        return referral_id

    def visit(
        self,
        pesel: str,
        *,
        day: date = TODAY,
        start: time = time(9, 0),
        product: str = "jcovden",
        dose_number: int = 1,
        seat: int = 0,
        point: str = POINT,
        linked: str | None = None,
        checked_in: bool = False,
    ) -> Appointment:
        key = key_of(pesel)
        ref = SlotRef(point, day, start, product)
        appointment_id = uuid.uuid4().hex
        appointment = Appointment(
            appointment_id=appointment_id,
            series_id=appointment_id,
            patient_key=key,
            referral_id=f"ref-{key[:8]}-primary",
            dose_kind="primary",
            dose_number=dose_number,
            product=product,
            point_id=point,
            slot_id=ref.slot_id,
            seat_id=ref.seat_id(seat),
            starts_at=ref.starts_at,
            day=day,
            channel="portal",
            linked_appointment_id=linked,
            booked_by_role="patient",
            created_at=NOW - timedelta(days=30),
            updated_at=NOW - timedelta(days=30),
        )
        document = appointment.to_document()
        if checked_in:  # the patient's PESEL was checked at the desk (check_in)
            document["checked_in_at"] = NOW - timedelta(minutes=5)
        self.store.put(APPOINTMENTS, appointment_id, document)
        self.store.put(SEATS, appointment.seat_id, {"appointment_id": appointment_id})
        self.store.put(
            ACTIVE_DOSES,
            active_dose_lock_id(key, "primary", dose_number),
            {"appointment_id": appointment_id, "patient_key": key},
        )
        return appointment

    def appointment(self, appointment_id: str) -> dict[str, Any]:
        data = self.store.data(APPOINTMENTS, appointment_id)
        assert data is not None
        return data

    def audits(self, action: str) -> list[dict[str, Any]]:
        return [a for a in self.store.collection(AUDIT_LOG).values() if a["action"] == action]


@pytest.fixture
def world() -> World:
    return World()


# -- the day's list ---------------------------------------------------------------------------
def test_the_days_list_orders_visits_masks_patients_and_writes_nothing(world: World) -> None:
    late = world.visit(ADULT, start=time(11, 0))
    early = world.visit(ADULT_2, start=time(8, 0), seat=1)
    world.visit(STRANGER, day=TODAY + timedelta(days=1))
    world.visit(CHILD, point=OTHER_POINT)
    before = frozen(world.store)
    listed = world.service.day_list(STAFF, POINT, TODAY, NOW)
    assert [v["appointment_id"] for v in listed["visits"]] == [
        early.appointment_id,
        late.appointment_id,
    ]
    assert listed["visits"][0]["patient"] == {
        "masked_pesel": ADULT_2[:6] + "*****",
        "birth_year": 1980,
        "sex": "F",
    }
    assert ADULT not in str(listed) and ADULT_2 not in str(listed)
    assert world.store.documents == before and world.store.commits == 0


def test_the_days_list_is_only_for_the_points_own_staff(world: World) -> None:
    with pytest.raises(ForbiddenError):
        world.service.day_list(OTHER_STAFF, POINT, TODAY, NOW)
    with pytest.raises(PointNotFoundError):
        world.service.day_list(ADMIN, "pt-09999", TODAY, NOW)


# -- check-in -------------------------------------------------------------------------------
def test_check_in_needs_the_patients_own_pesel_and_refusals_write_nothing(world: World) -> None:
    visit = world.visit(ADULT)
    before = frozen(world.store)
    with pytest.raises(PatientMismatchError):
        world.service.check_in(STAFF, visit.appointment_id, CheckInRequest(pesel=ADULT_2), NOW)
    with pytest.raises(ForbiddenError):
        world.service.check_in(OTHER_STAFF, visit.appointment_id, CheckInRequest(pesel=ADULT), NOW)
    with pytest.raises(ForbiddenError):
        world.service.check_in(
            Actor(uid="agent-1", role="agent", reason="x"),
            visit.appointment_id,
            CheckInRequest(pesel=ADULT),
            NOW,
        )
    with pytest.raises(AppointmentNotFoundError):
        world.service.check_in(STAFF, "0" * 32, CheckInRequest(pesel=ADULT), NOW)
    with pytest.raises(VisitNotDueError):
        world.service.check_in(
            STAFF, visit.appointment_id, CheckInRequest(pesel=ADULT), NOW - timedelta(days=1)
        )
    assert world.store.documents == before


def test_check_in_is_one_commit_with_its_audit_entry(world: World) -> None:
    visit = world.visit(ADULT)
    response = world.service.check_in(STAFF, visit.appointment_id, CheckInRequest(pesel=ADULT), NOW)
    assert response.status == 200
    assert response.body["appointment"]["checked_in_at"] == NOW.isoformat()
    assert world.store.commits == 1
    assert world.appointment(visit.appointment_id)["checked_in_at"] == NOW
    [entry] = world.audits("visit.check_in")
    assert entry["appointment_ids"] == [visit.appointment_id]
    assert entry["patient_keys"] == [key_of(ADULT)] and entry["actor_uid"] == STAFF.uid


def test_check_in_after_a_stale_commit_runs_again_from_its_reads(world: World) -> None:
    visit = world.visit(ADULT)
    world.store.fail_next_commits, world.store.fault = 1, gexc.FailedPrecondition
    response = world.service.check_in(STAFF, visit.appointment_id, CheckInRequest(pesel=ADULT), NOW)
    assert response.status == 200
    assert world.units.attempts == 2 and world.store.commits == 1
    assert len(world.audits("visit.check_in")) == 1


def test_a_visit_changed_between_read_and_commit_is_decided_again(world: World) -> None:
    visit = world.visit(ADULT)
    # Another desk records the visit as a no-show while this check-in is being decided.
    before_next_commit(
        world.store,
        lambda: world.service.no_show(ADMIN, visit.appointment_id, NoShowRequest(), NOW),
    )
    with pytest.raises(InvalidStateTransitionError) as refused:
        world.service.check_in(STAFF, visit.appointment_id, CheckInRequest(pesel=ADULT), NOW)
    assert refused.value.details == {"status": "no_show"}
    assert world.units.attempts == 3  # ours, the no-show's, ours again
    assert world.store.commits == 1  # the no-show only
    assert "checked_in_at" not in world.appointment(visit.appointment_id)
    assert world.audits("visit.check_in") == []


def test_check_in_during_an_outage_writes_nothing(world: World) -> None:
    visit = world.visit(ADULT)
    before = frozen(world.store)
    world.store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        world.service.check_in(STAFF, visit.appointment_id, CheckInRequest(pesel=ADULT), NOW)
    assert world.store.documents == before and world.store.commits == 0


def test_check_in_racing_its_twin_replays_the_twins_answer(world: World) -> None:
    visit = world.visit(ADULT)
    idem = IdempotencyScope("key-1", "fingerprint-1", NOW)
    body = CheckInRequest(pesel=ADULT)
    twin: list[Any] = []
    before_next_commit(
        world.store,
        lambda: twin.append(world.service.check_in(STAFF, visit.appointment_id, body, NOW, idem)),
    )
    with pytest.raises(IdempotentReplay) as replayed:
        world.service.check_in(STAFF, visit.appointment_id, body, NOW, idem)
    assert replay(replayed.value.stored, "fingerprint-1") == twin[0]
    assert world.store.data(IDEMPOTENCY, "key-1")["response_status"] == 200
    assert world.store.commits == 1 and len(world.audits("visit.check_in")) == 1


# -- completion -----------------------------------------------------------------------------
def test_completing_a_single_dose_records_closes_the_referral_and_emits(world: World) -> None:
    visit = world.visit(ADULT, product="jcovden", checked_in=True)
    body = CompleteRequest(product="jcovden", lot_number="XD-1234")
    response = world.service.complete(STAFF, visit.appointment_id, body, NOW)
    assert response.body["appointment"]["status"] == "completed"
    assert response.body["appointment"]["referral_closed"] is True
    assert world.store.commits == 1
    record = world.store.data(VACCINATIONS, visit.appointment_id)
    assert record is not None and record["lot_number"] == "XD-1234"
    assert record["dose"] == {
        "product_code": "jcovden",
        "dose_number": 1,
        "given_on": TODAY.isoformat(),
        "kind": "primary",
    }
    assert world.appointment(visit.appointment_id)["status"] == "completed"
    referral = world.store.data(REFERRALS, visit.referral_id)
    assert referral is not None and referral["referral"]["status"] == "used"
    [event] = world.store.published
    assert isinstance(event, VaccinationCompleted)
    assert (event.appointment_id, event.lot_number, event.point_id) == (
        visit.appointment_id,
        "XD-1234",
        POINT,
    )
    assert len(world.store.collection(OUTBOX)) == 1
    assert len(world.audits("visit.complete")) == 1
    before = frozen(world.store)
    with pytest.raises(InvalidStateTransitionError):
        world.service.complete(STAFF, visit.appointment_id, body, NOW)
    assert world.store.documents == before


def test_dose_one_of_two_keeps_the_referral_open(world: World) -> None:
    visit = world.visit(ADULT, product="comirnaty", checked_in=True)
    body = CompleteRequest(product="comirnaty", lot_number="FF1234")
    response = world.service.complete(ADMIN, visit.appointment_id, body, NOW)
    assert response.body["appointment"]["referral_closed"] is False
    referral = world.store.data(REFERRALS, visit.referral_id)
    assert referral is not None and referral["referral"]["status"] == "active"


def test_a_referral_kept_only_in_p1_is_left_to_p1(world: World) -> None:
    visit = world.visit(STRANGER, product="jcovden", checked_in=True)
    body = CompleteRequest(product="jcovden", lot_number="XD-1234")
    world.service.complete(STAFF, visit.appointment_id, body, NOW)
    assert world.store.data(REFERRALS, visit.referral_id) is None
    assert world.store.data(VACCINATIONS, visit.appointment_id) is not None


@pytest.mark.parametrize(
    ("product", "when", "error"),
    [
        ("comirnaty", NOW, ValidationFailedError),
        ("jcovden", NOW - timedelta(days=1), VisitNotDueError),
    ],
)
def test_completion_refusals_write_nothing(world: World, product, when, error) -> None:
    visit = world.visit(ADULT, product="jcovden")
    before = frozen(world.store)
    with pytest.raises(error):
        world.service.complete(
            STAFF, visit.appointment_id, CompleteRequest(product=product, lot_number="FF1"), when
        )
    assert world.store.documents == before


def test_two_desks_completing_one_visit_record_it_once(world: World) -> None:
    visit = world.visit(ADULT, product="jcovden", checked_in=True)
    body = CompleteRequest(product="jcovden", lot_number="XD-1234")
    before_next_commit(
        world.store, lambda: world.service.complete(ADMIN, visit.appointment_id, body, NOW)
    )
    with pytest.raises(InvalidStateTransitionError):
        world.service.complete(STAFF, visit.appointment_id, body, NOW)
    assert world.store.commits == 1 and len(world.store.published) == 1
    [entry] = world.audits("visit.complete")
    assert entry["actor_uid"] == ADMIN.uid


def test_completion_during_an_outage_writes_nothing(world: World) -> None:
    visit = world.visit(ADULT, product="jcovden", checked_in=True)
    before = frozen(world.store)
    world.store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        world.service.complete(
            STAFF, visit.appointment_id, CompleteRequest(product="jcovden", lot_number="X-1"), NOW
        )
    assert world.store.documents == before and world.store.published == []


def test_completion_needs_a_check_in_first(world: World) -> None:
    visit = world.visit(ADULT, product="jcovden")
    body = CompleteRequest(product="jcovden", lot_number="XD-1234")
    before = frozen(world.store)
    with pytest.raises(CheckInRequiredError) as refused:
        world.service.complete(STAFF, visit.appointment_id, body, NOW)
    assert refused.value.code == "check_in_required" and refused.value.http_status == 409
    assert world.store.documents == before and world.store.published == []
    world.service.check_in(STAFF, visit.appointment_id, CheckInRequest(pesel=ADULT), NOW)
    response = world.service.complete(STAFF, visit.appointment_id, body, NOW)
    assert response.body["appointment"]["status"] == "completed"
    assert response.body["appointment"]["checked_in"] is True
    assert response.body["appointment"]["check_in_override_reason"] is None
    assert len(world.audits("visit.complete")) == 1
    assert world.audits("visit.complete_without_check_in") == []


def test_completion_without_a_check_in_is_an_audited_override_with_its_reason(
    world: World,
) -> None:
    visit = world.visit(ADULT, product="jcovden")
    reason = "patient has no identity document; known to the nurse"
    body = CompleteRequest(product="jcovden", lot_number="XD-1234", check_in_override_reason=reason)
    response = world.service.complete(STAFF, visit.appointment_id, body, NOW)
    assert response.body["appointment"]["status"] == "completed"
    assert response.body["appointment"]["checked_in"] is False
    assert response.body["appointment"]["check_in_override_reason"] == reason
    assert world.store.commits == 1
    assert world.appointment(visit.appointment_id)["check_in_override_reason"] == reason
    [entry] = world.audits("visit.complete_without_check_in")
    assert entry["details"] == {"check_in_override_reason": reason}
    assert entry["appointment_ids"] == [visit.appointment_id] and entry["actor_uid"] == STAFF.uid
    assert world.audits("visit.complete") == []
    listed = world.service.day_list(STAFF, POINT, TODAY, NOW)
    assert listed["visits"][0]["check_in_override_reason"] == reason


def test_an_override_reason_is_not_recorded_for_a_visit_that_was_checked_in(
    world: World,
) -> None:
    visit = world.visit(ADULT, product="jcovden", checked_in=True)
    body = CompleteRequest(product="jcovden", lot_number="XD-1", check_in_override_reason="n/a")
    response = world.service.complete(STAFF, visit.appointment_id, body, NOW)
    assert response.body["appointment"]["check_in_override_reason"] is None
    assert len(world.audits("visit.complete")) == 1


# -- no-show --------------------------------------------------------------------------------
def _series(world: World) -> tuple[Appointment, Appointment]:
    dose2 = world.visit(
        ADULT, day=TODAY + timedelta(days=30), product="comirnaty", dose_number=2, seat=0
    )
    dose1 = world.visit(
        ADULT, day=TODAY, start=time(9, 0), product="comirnaty", linked=dose2.appointment_id
    )
    document = world.appointment(dose2.appointment_id) | {
        "linked_appointment_id": dose1.appointment_id
    }
    world.store.put(APPOINTMENTS, dose2.appointment_id, document)
    return dose1, Appointment.model_validate(document)


def test_no_show_only_once_the_visit_has_started(world: World) -> None:
    later = world.visit(ADULT, start=time(15, 0))
    before = frozen(world.store)
    with pytest.raises(VisitNotDueError):
        world.service.no_show(STAFF, later.appointment_id, NoShowRequest(), NOW)
    with pytest.raises(ForbiddenError):
        world.service.no_show(OTHER_STAFF, later.appointment_id, NoShowRequest(), NOW)
    assert world.store.documents == before


def test_no_show_frees_the_dose_and_cancels_dose_two_through_a_delta(world: World) -> None:
    dose1, dose2 = _series(world)
    response = world.service.no_show(
        STAFF, dose1.appointment_id, NoShowRequest(note="did not come"), NOW
    )
    assert response.body["appointment"]["status"] == "no_show"
    assert response.body["appointment"]["cancelled_linked_appointment_id"] == dose2.appointment_id
    # The staff are told what happened to dose 2 (the patient gets the cancellation's SMS).
    assert response.body["appointment"]["second_dose"] == {
        "outcome": "cancelled",
        "appointment_id": dose2.appointment_id,
        "starts_at": dose2.starts_at.isoformat(),
        "point_id": POINT,
    }
    assert world.store.commits == 1
    assert world.appointment(dose1.appointment_id)["no_show_note"] == "did not come"
    cancelled = world.appointment(dose2.appointment_id)
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "first_dose_missed")
    assert world.store.data(SEATS, dose2.seat_id) is None
    assert world.store.data(SEATS, dose1.seat_id) is not None  # the past visit keeps its seat
    assert world.store.collection(ACTIVE_DOSES) == {}
    # The freed seat is a delta for the folder, never a write to the availability document.
    [delta] = world.store.collection(AVAILABILITY_DELTAS).values()
    ref = SlotRef.parse(dose2.slot_id)
    assert delta["changes"] == [
        {"point_id": POINT, "day": ref.day_key, "slot": ref.slot_key, "delta": 1}
    ]
    assert world.store.collection(AVAILABILITY) == {}
    no_show, cancel = world.store.published
    assert isinstance(no_show, AppointmentNoShow) and no_show.appointment_id == dose1.appointment_id
    assert isinstance(cancel, AppointmentCancelled) and cancel.reason == "first_dose_missed"
    [entry] = world.audits("visit.no_show")
    assert set(entry["appointment_ids"]) == {dose1.appointment_id, dose2.appointment_id}


def test_no_show_rereads_dose_two_cancelled_meanwhile(world: World) -> None:
    dose1, dose2 = _series(world)

    def patient_cancels_dose_two() -> None:
        world.store.put(
            APPOINTMENTS,
            dose2.appointment_id,
            world.appointment(dose2.appointment_id) | {"status": "cancelled"},
        )
        del world.store.documents[(SEATS, dose2.seat_id)]

    before_next_commit(world.store, patient_cancels_dose_two)
    response = world.service.no_show(STAFF, dose1.appointment_id, NoShowRequest(), NOW)
    assert response.body["appointment"]["cancelled_linked_appointment_id"] is None
    assert response.body["appointment"]["second_dose"] == {"outcome": "not_booked"}
    assert world.units.attempts == 2 and world.store.commits == 1
    assert "cancel_reason" not in world.appointment(dose2.appointment_id)
    assert world.store.collection(AVAILABILITY_DELTAS) == {}  # the patient's cancel freed it
    [no_show] = world.store.published
    assert isinstance(no_show, AppointmentNoShow)


def test_a_no_show_of_a_single_dose_or_a_dose_two_says_there_is_no_dose_two(
    world: World,
) -> None:
    single = world.visit(ADULT, start=time(8, 0), product="jcovden")
    answer = world.service.no_show(STAFF, single.appointment_id, NoShowRequest(), NOW)
    assert answer.body["appointment"]["second_dose"] == {"outcome": "not_applicable"}
    dose2 = world.visit(ADULT_2, start=time(8, 0), product="comirnaty", dose_number=2, seat=1)
    answer = world.service.no_show(STAFF, dose2.appointment_id, NoShowRequest(), NOW)
    assert answer.body["appointment"]["second_dose"] == {"outcome": "not_applicable"}


def test_no_show_during_an_outage_writes_nothing(world: World) -> None:
    dose1, _ = _series(world)
    before = frozen(world.store)
    world.store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        world.service.no_show(STAFF, dose1.appointment_id, NoShowRequest(), NOW)
    assert world.store.documents == before and world.store.published == []


# -- walk-ins -------------------------------------------------------------------------------
def _walk_in(pesel: str = ADULT, **extra: Any) -> WalkInRequest:
    return WalkInRequest(pesel=pesel, product="jcovden", lot_number="JJ-001", **extra)


def test_a_walk_in_with_normal_eligibility_is_one_commit(world: World) -> None:
    response = world.service.walk_in(STAFF, POINT, _walk_in(), NOW)
    assert response.status == 201
    vaccination = response.body["vaccination"]
    assert (vaccination["dose_number"], vaccination["referral_closed"]) == (1, True)
    assert world.store.commits == 1
    record = world.store.data(VACCINATIONS, vaccination["vaccination_id"])
    assert record is not None and record["walk_in"] is True and record["leftover_dose"] is False
    lock = world.store.data(ACTIVE_DOSES, active_dose_lock_id(key_of(ADULT), "primary", 1))
    assert lock is not None and lock["appointment_id"] == vaccination["vaccination_id"]
    referral = world.store.data(REFERRALS, f"ref-{key_of(ADULT)[:8]}-primary")
    assert referral is not None and referral["referral"]["status"] == "used"
    [event] = world.store.published
    assert isinstance(event, VaccinationCompleted) and event.walk_in is True
    [entry] = world.audits("visit.walk_in")
    assert entry["details"] == {
        "point_id": POINT,
        "leftover_dose": False,
        "leftover_reason": None,
    }
    assert entry["appointment_ids"] == [vaccination["vaccination_id"]]
    listed = world.service.day_list(STAFF, POINT, TODAY, NOW)
    assert [w["vaccination_id"] for w in listed["walk_ins"]] == [vaccination["vaccination_id"]]


def test_walk_in_refusals_write_nothing(world: World) -> None:
    world.store.put(POINTS, "pt-00003", {"point_id": "pt-00003", "products": ["comirnaty"]})
    before = frozen(world.store)
    with pytest.raises(ReferralMissingError):
        world.service.walk_in(STAFF, POINT, _walk_in(STRANGER), NOW)
    with pytest.raises(ProductNotOfferedError):
        world.service.walk_in(ADMIN, "pt-00003", _walk_in(), NOW)
    with pytest.raises(ForbiddenError):
        world.service.walk_in(OTHER_STAFF, POINT, _walk_in(), NOW)
    with pytest.raises(PointNotFoundError):
        world.service.walk_in(ADMIN, "pt-09999", _walk_in(), NOW)
    assert world.store.documents == before


def test_a_leftover_dose_skips_eligibility_but_not_the_age_limit(world: World) -> None:
    leftover = {"leftover_dose": True, "reason": "last dose of an open vial"}
    response = world.service.walk_in(STAFF, POINT, _walk_in(STRANGER, **leftover), NOW)
    assert response.body["vaccination"]["leftover_dose"] is True
    assert response.body["vaccination"]["referral_closed"] is False
    [entry] = world.audits("visit.walk_in_leftover")
    assert entry["details"]["leftover_reason"] == "last dose of an open vial"
    before = frozen(world.store)
    with pytest.raises(AgeNotAllowedError):
        world.service.walk_in(STAFF, POINT, _walk_in(CHILD, **leftover), NOW)
    assert world.store.documents == before


def test_a_walk_in_for_a_booked_dose_is_refused_with_the_booked_visit(world: World) -> None:
    booked = world.visit(ADULT, day=TODAY + timedelta(days=3))
    before = frozen(world.store)
    with pytest.raises(AlreadyBookedError) as refused:
        world.service.walk_in(STAFF, POINT, _walk_in(), NOW)
    assert refused.value.details == {"appointment_id": booked.appointment_id}
    assert world.store.documents == before and world.store.commits == 0


def test_a_walk_in_during_an_outage_writes_nothing(world: World) -> None:
    before = frozen(world.store)
    world.store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        world.service.walk_in(STAFF, POINT, _walk_in(), NOW)
    assert world.store.documents == before and world.store.published == []


def test_a_walk_in_racing_its_twin_replays_the_twins_answer(world: World) -> None:
    idem = IdempotencyScope("key-2", "fingerprint-2", NOW)
    twin: list[Any] = []
    before_next_commit(
        world.store,
        lambda: twin.append(world.service.walk_in(STAFF, POINT, _walk_in(), NOW, idem)),
    )
    with pytest.raises(IdempotentReplay) as replayed:
        world.service.walk_in(STAFF, POINT, _walk_in(), NOW, idem)
    assert replay(replayed.value.stored, "fingerprint-2") == twin[0]
    assert twin[0].status == 201
    assert world.store.commits == 1 and len(world.store.collection(VACCINATIONS)) == 1
