"""The staff calendar's decisions, against the in-memory unit of work (no emulator).

Publish, add, change, block and remove a slot; who is displaced when capacity goes down and
what a cut writes (blockers, cancelled visits, released locks, events, the audit entry, the
control), all in one commit; what a race makes it do (a stale control: read again; a booker
taking a seat we meant to block: read again and displace the booker); and what it leaves when
it refuses or Firestore is down: nothing.
"""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from google.api_core import exceptions as gexc

from common.adapters.firestore_store import (
    ACTIVE_DOSES,
    APPOINTMENTS,
    AVAILABILITY_DELTAS,
    CALENDAR_CONTROLS,
    IDEMPOTENCY,
    SEATS,
)
from common.domain.appointments import active_dose_lock_id
from common.domain.calendar import SlotRef
from common.domain.errors import (
    CalendarBusyError,
    ForbiddenError,
    InvalidStateTransitionError,
    ProductNotOfferedError,
    SlotExistsError,
    SlotNotFoundError,
)
from common.services.idempotency import IdempotencyScope, IdempotentReplay, replay
from common.services.staff_calendar import (
    AddSlotRequest,
    CalendarQuery,
    ChangeSlotRequest,
    PublishCalendarRequest,
    StaffCalendarService,
)
from tests.support.fake_calendar import (
    MONDAY,
    NOW,
    OTHER_POINT,
    POINT,
    RULES,
    FakeCalendars,
    FakeFolder,
    FakeSearch,
    RacingUnits,
    Staff,
    add_patient,
    add_point,
    add_slots,
    audits,
    book,
    everything,
    published,
    slot_entry,
)

STAFF = Staff()
JCOVDEN = SlotRef(POINT, MONDAY, time(9, 0), "jcovden")
COMIRNATY = SlotRef(POINT, MONDAY, time(10, 0), "comirnaty")
COMIRNATY_2 = SlotRef(POINT, MONDAY + timedelta(days=35), time(10, 0), "comirnaty")


class World:
    def __init__(self) -> None:
        self.units = RacingUnits(now=lambda: NOW)
        self.store = self.units.store
        self.folder = FakeFolder(self.store)
        self.search = FakeSearch()
        self.calendars = FakeCalendars()
        self.service = StaffCalendarService(
            self.units, RULES, self.search, self.folder, calendars=self.calendars
        )
        add_point(self.store)

    def change(self, ref: SlotRef, idem=None, **body):
        return self.service.change_slot(
            STAFF, POINT, ref.slot_id, ChangeSlotRequest(**body), NOW, idem
        )

    def appointment(self, appointment_id: str) -> dict:
        return self.store.data(APPOINTMENTS, appointment_id)

    def seat(self, ref: SlotRef, index: int) -> dict | None:
        return self.store.data(SEATS, ref.seat_id(index))


@pytest.fixture
def world() -> World:
    return World()


def _booked(world: World, ref: SlotRef, indices: list[int]):
    return [
        book(world.store, ref, index, add_patient(world.store, serial=10 + index))
        for index in indices
    ]


# -- publish and add ------------------------------------------------------------------------
def test_publish_adds_the_template_keeps_what_exists_in_one_commit(world) -> None:
    add_slots(world.store, [(JCOVDEN, 2)])
    body = PublishCalendarRequest(
        date_from=MONDAY,
        date_to=MONDAY + timedelta(days=2),
        weekdays=[0, 1],
        opens="09:00",
        closes="10:00",
        slot_minutes=30,
        capacity=4,
        product="jcovden",
    )
    response = world.service.publish(STAFF, POINT, body, NOW)
    assert response.status == 200
    assert (response.body["added"], response.body["kept"]) == (3, 1)
    assert JCOVDEN.slot_id not in response.body["slot_ids"]
    assert slot_entry(world.store, JCOVDEN) == {"cap": 2, "free": 2}  # never lowered here
    tuesday = SlotRef(POINT, MONDAY + timedelta(days=1), time(9, 30), "jcovden")
    assert tuesday.slot_id in response.body["slot_ids"]
    assert slot_entry(world.store, tuesday) == {"cap": 4, "free": 4}
    assert world.store.commits == 1
    assert world.store.data(CALENDAR_CONTROLS, POINT)["point_id"] == POINT
    [entry] = audits(world.store)
    assert entry["action"] == "calendar.publish"
    assert entry["details"] == {"point_id": POINT, "product": "jcovden", "added": 3, "kept": 1}
    # Pending bookings were folded first; this instance's search and booking see it at once.
    assert world.folder.folded == [POINT]
    assert world.search.view.invalidated == 1 and world.calendars.invalidated == [POINT]


def test_publish_brings_back_a_removed_slot_without_its_blockers(world) -> None:
    add_slots(world.store, [(JCOVDEN, 3)])
    world.service.remove_slot(STAFF, POINT, JCOVDEN.slot_id, NOW)
    assert [world.seat(JCOVDEN, n)["blocker"] for n in range(3)] == [True] * 3
    body = PublishCalendarRequest(
        date_from=MONDAY,
        date_to=MONDAY,
        weekdays=[0],
        opens="09:00",
        closes="09:30",
        slot_minutes=30,
        capacity=2,
        product="jcovden",
    )
    response = world.service.publish(STAFF, POINT, body, NOW)
    assert response.body["slot_ids"] == [JCOVDEN.slot_id]
    assert slot_entry(world.store, JCOVDEN) == {"cap": 2, "free": 2}
    assert world.seat(JCOVDEN, 0) is None and world.seat(JCOVDEN, 1) is None


def test_add_a_slot_then_the_same_slot_again_is_refused_and_writes_nothing(world) -> None:
    body = AddSlotRequest(day=MONDAY, start="09:00", product="jcovden", capacity=2)
    added = world.service.add_slot(STAFF, POINT, body, NOW)
    assert added.status == 201 and added.body["slot"]["slot_id"] == JCOVDEN.slot_id
    assert slot_entry(world.store, JCOVDEN) == {"cap": 2, "free": 2}
    assert [a["action"] for a in audits(world.store)] == ["slot.add"]
    before, commits = everything(world.store), world.store.commits
    with pytest.raises(SlotExistsError):
        world.service.add_slot(STAFF, POINT, body, NOW)
    assert everything(world.store) == before and world.store.commits == commits


# -- capacity -------------------------------------------------------------------------------
def test_lowering_capacity_displaces_the_visits_on_the_cut_seats_in_one_commit(world) -> None:
    add_slots(world.store, [(JCOVDEN, 3)])
    kept, *cut = _booked(world, JCOVDEN, [0, 1, 2])
    response = world.change(JCOVDEN, capacity=1)
    body = response.body
    assert (body["slot"]["capacity"], body["slot"]["free"], body["slot"]["booked"]) == (1, 0, 1)
    assert [d["appointment_id"] for d in body["displaced"]] == [a.appointment_id for a in cut]
    assert all(d["patient"]["masked_pesel"].endswith("*****") for d in body["displaced"])
    assert world.store.commits == 1
    assert world.appointment(kept.appointment_id)["status"] == "booked"
    for appointment in cut:
        stored = world.appointment(appointment.appointment_id)
        assert (stored["status"], stored["cancel_reason"]) == (
            "cancelled",
            "point_capacity_reduced",
        )
        lock = active_dose_lock_id(appointment.patient_key, "primary", 1)
        assert world.store.data(ACTIVE_DOSES, lock) is None  # the patient may book again
    # The displaced visits' seats are blockers now: still taken, so `free` does not change.
    assert [world.seat(JCOVDEN, n).get("blocker") for n in (1, 2)] == [True, True]
    assert world.seat(JCOVDEN, 0)["appointment_id"] == kept.appointment_id
    assert slot_entry(world.store, JCOVDEN) | {"changed_at": None} == {
        "cap": 1,
        "free": 0,
        "changed_at": None,
    }
    assert world.store.collection(AVAILABILITY_DELTAS) == {}
    fired = published(world.store, "appointment.displaced")
    assert [e.appointment_id for e in fired] == [a.appointment_id for a in cut]
    for event in fired:
        assert event.reason == "point_capacity_reduced"
        assert [o.point_id for o in event.alternatives] == [OTHER_POINT]
        assert all(o.slot_id != JCOVDEN.slot_id for o in event.alternatives)
    [entry] = audits(world.store)
    assert entry["action"] == "slot.change"
    assert entry["appointment_ids"] == [a.appointment_id for a in cut]
    assert entry["details"]["capacity_from"] == 3 and entry["details"]["capacity_to"] == 1


def test_lowering_over_free_seats_blocks_them_and_raising_unblocks(world) -> None:
    add_slots(world.store, [(JCOVDEN, 4)])
    _booked(world, JCOVDEN, [0])
    lowered = world.change(JCOVDEN, capacity=1)
    assert lowered.body["displaced"] == []
    assert [bool(world.seat(JCOVDEN, n)) for n in range(4)] == [True, True, True, True]
    assert slot_entry(world.store, JCOVDEN)["free"] == 0
    assert world.store.published == []
    raised = world.change(JCOVDEN, capacity=3)
    assert (raised.body["slot"]["capacity"], raised.body["slot"]["free"]) == (3, 2)
    assert [world.seat(JCOVDEN, n) is None for n in range(4)] == [False, True, True, False]
    entry = slot_entry(world.store, JCOVDEN)
    assert (entry["cap"], entry["free"]) == (3, 2)
    assert [a["action"] for a in audits(world.store)] == ["slot.change", "slot.change"]


def test_blocking_displaces_everyone_and_keeps_the_slot_with_its_capacity(world) -> None:
    add_slots(world.store, [(JCOVDEN, 3)])
    [one] = _booked(world, JCOVDEN, [1])
    response = world.change(JCOVDEN, blocked=True)
    assert response.body["slot"]["blocked"] is True
    assert response.body["slot"]["blocked_capacity"] == 3
    assert [d["appointment_id"] for d in response.body["displaced"]] == [one.appointment_id]
    entry = slot_entry(world.store, JCOVDEN)
    assert (entry["cap"], entry["free"], entry["blocked"], entry["blocked_cap"]) == (0, 0, True, 3)
    assert all(world.seat(JCOVDEN, n)["blocker"] for n in range(3))
    unblocked = world.change(JCOVDEN, blocked=False)
    assert unblocked.body["slot"]["capacity"] == 3 and unblocked.body["displaced"] == []
    entry = slot_entry(world.store, JCOVDEN)
    assert {k: v for k, v in entry.items() if k != "changed_at"} == {"cap": 3, "free": 3}
    assert all(world.seat(JCOVDEN, n) is None for n in range(3))


def test_removing_leaves_a_tombstone_and_a_second_remove_is_not_found(world) -> None:
    add_slots(world.store, [(JCOVDEN, 2)])
    booked = _booked(world, JCOVDEN, [0, 1])
    response = world.service.remove_slot(STAFF, POINT, JCOVDEN.slot_id, NOW)
    assert response.body["removed"] is True
    assert {e.reason for e in published(world.store, "appointment.displaced")} == {"slot_removed"}
    assert {e.appointment_id for e in published(world.store, "appointment.displaced")} == {
        a.appointment_id for a in booked
    }
    assert slot_entry(world.store, JCOVDEN) == {"cap": 0, "free": 0, "removed": True}
    assert [a["action"] for a in audits(world.store)] == ["slot.remove"]
    with pytest.raises(SlotNotFoundError):
        world.service.remove_slot(STAFF, POINT, JCOVDEN.slot_id, NOW)


def test_a_displaced_dose_one_takes_its_dose_two_whose_seat_is_freed_by_a_delta(world) -> None:
    add_slots(world.store, [(COMIRNATY, 2), (COMIRNATY_2, 2)])
    patient = add_patient(world.store, serial=7)
    dose1 = book(world.store, COMIRNATY, 1, patient, series_id="s1")
    dose2 = book(
        world.store,
        COMIRNATY_2,
        0,
        patient,
        dose_number=2,
        series_id="s1",
        linked_appointment_id=dose1.appointment_id,
    )
    # (dose 1's link to dose 2, as booking writes it)
    world.store.put(
        APPOINTMENTS,
        dose1.appointment_id,
        dose1.model_copy(update={"linked_appointment_id": dose2.appointment_id}).to_document(),
    )
    world.change(COMIRNATY, capacity=1)
    assert world.appointment(dose1.appointment_id)["status"] == "cancelled"
    assert world.appointment(dose2.appointment_id)["status"] == "cancelled"
    assert world.seat(COMIRNATY_2, 0) is None
    assert world.store.data(ACTIVE_DOSES, active_dose_lock_id(patient, "primary", 2)) is None
    [cancelled] = published(world.store, "appointment.cancelled")
    assert cancelled.appointment_id == dose2.appointment_id
    assert cancelled.reason == "point_capacity_reduced_first_dose"
    # Dose 2's freed seat is a patient-level change: a delta, not a write to the calendar.
    [delta] = world.store.collection(AVAILABILITY_DELTAS).values()
    assert [(c["slot"], c["delta"]) for c in delta["changes"]] == [(COMIRNATY_2.slot_key, 1)]
    assert slot_entry(world.store, COMIRNATY_2)["free"] == 1
    world.folder.fold_all()
    assert slot_entry(world.store, COMIRNATY_2)["free"] == 2
    assert slot_entry(world.store, COMIRNATY)["free"] == 1  # dose 1's seat: a blocker now
    [entry] = audits(world.store)
    assert set(entry["appointment_ids"]) == {dose1.appointment_id, dose2.appointment_id}


# -- races ----------------------------------------------------------------------------------
def test_a_stale_control_version_runs_the_attempt_again_from_its_reads(world) -> None:
    add_slots(world.store, [(JCOVDEN, 3)])
    world.store.put(CALENDAR_CONTROLS, POINT, {"point_id": POINT})
    world.units.races.append(
        lambda: world.store.put(CALENDAR_CONTROLS, POINT, {"point_id": POINT, "by": "another"})
    )
    response = world.change(JCOVDEN, capacity=2)
    assert response.body["slot"]["capacity"] == 2
    assert world.units.attempts == 2 and world.store.commits == 1
    assert world.store.data(CALENDAR_CONTROLS, POINT)["updated_at"] == NOW  # ours, on theirs
    assert len(audits(world.store)) == 1 and world.folder.folded == [POINT, POINT]


def test_a_calendar_that_keeps_changing_is_busy_and_nothing_is_written(world) -> None:
    add_slots(world.store, [(JCOVDEN, 3)])
    world.store.put(CALENDAR_CONTROLS, POINT, {"point_id": POINT})
    world.units.races.extend(
        lambda: world.store.put(CALENDAR_CONTROLS, POINT, {"point_id": POINT}) for _ in range(8)
    )
    before_entry = slot_entry(world.store, JCOVDEN)
    with pytest.raises(CalendarBusyError):
        world.change(JCOVDEN, capacity=1)
    assert world.units.attempts == 8 and world.store.commits == 0
    assert slot_entry(world.store, JCOVDEN) == before_entry and audits(world.store) == []


def test_a_booker_taking_a_seat_we_meant_to_block_is_displaced_on_the_next_read(world) -> None:
    add_slots(world.store, [(JCOVDEN, 3)])
    [kept] = _booked(world, JCOVDEN, [0])
    racer = add_patient(world.store, serial=99)
    late: list = []
    # Between our read (seats 1 and 2 free) and our commit, a booker claims seat 2.
    world.units.races.append(lambda: late.append(book(world.store, JCOVDEN, 2, racer)))
    response = world.change(JCOVDEN, capacity=1)
    [booker] = late
    assert world.units.attempts == 2 and world.store.commits == 1
    assert [d["appointment_id"] for d in response.body["displaced"]] == [booker.appointment_id]
    assert world.appointment(booker.appointment_id)["status"] == "cancelled"
    assert world.appointment(kept.appointment_id)["status"] == "booked"
    assert world.seat(JCOVDEN, 1)["blocker"] and world.seat(JCOVDEN, 2)["blocker"]
    assert [e.appointment_id for e in published(world.store, "appointment.displaced")] == [
        booker.appointment_id
    ]
    assert slot_entry(world.store, JCOVDEN)["free"] == 0 and len(audits(world.store)) == 1


# -- refusals, outages, replays -------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "error"),
    [
        (
            lambda w: w.service.change_slot(
                Staff(point_id=OTHER_POINT),
                POINT,
                JCOVDEN.slot_id,
                ChangeSlotRequest(capacity=0),
                NOW,
            ),
            ForbiddenError,
        ),
        (
            lambda w: w.service.change_slot(
                Staff(role="patient"), POINT, JCOVDEN.slot_id, ChangeSlotRequest(capacity=0), NOW
            ),
            ForbiddenError,
        ),
        (
            lambda w: w.change(SlotRef(POINT, MONDAY, time(11, 0), "jcovden"), capacity=0),
            SlotNotFoundError,
        ),
        (
            lambda w: w.service.change_slot(
                STAFF, POINT, JCOVDEN.slot_id, ChangeSlotRequest(capacity=0), JCOVDEN.starts_at
            ),
            InvalidStateTransitionError,
        ),
        (
            lambda w: w.service.add_slot(
                STAFF,
                POINT,
                AddSlotRequest(day=MONDAY, start="12:00", product="spikevax", capacity=1),
                NOW,
            ),
            ProductNotOfferedError,
        ),
    ],
)
def test_a_refusal_writes_nothing(world, call, error) -> None:
    add_slots(world.store, [(JCOVDEN, 3)])
    _booked(world, JCOVDEN, [0, 1, 2])
    before = everything(world.store)
    with pytest.raises(error):
        call(world)
    assert everything(world.store) == before
    assert world.store.commits == 0 and world.store.published == []


def test_an_outage_leaves_nothing_written_and_nothing_published(world) -> None:
    add_slots(world.store, [(JCOVDEN, 3)])
    _booked(world, JCOVDEN, [0, 1, 2])
    before = everything(world.store)
    world.store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        world.change(JCOVDEN, capacity=0)
    assert everything(world.store) == before and world.store.published == []
    assert world.calendars.invalidated == []  # nothing committed: nothing to see


def test_the_same_idempotency_key_replays_the_first_answer_and_writes_nothing_more(world) -> None:
    add_slots(world.store, [(JCOVDEN, 3)])
    _booked(world, JCOVDEN, [0, 1, 2])
    scope = IdempotencyScope("key-1", "fingerprint-1", NOW)
    first = world.change(JCOVDEN, idem=scope, capacity=1)
    assert len(first.body["displaced"]) == 2
    assert world.store.data(IDEMPOTENCY, "key-1")["response_status"] == 200
    before = everything(world.store)
    # A twin of the request (its first answer lost): its commit finds the key's record.
    with pytest.raises(IdempotentReplay) as twin:
        world.change(JCOVDEN, idem=scope, capacity=1)
    assert replay(twin.value.stored, "fingerprint-1") == first
    assert everything(world.store) == before
    assert len(published(world.store, "appointment.displaced")) == 2


def test_the_staff_view_reads_what_the_folder_brought_up_to_date(world) -> None:
    add_slots(world.store, [(JCOVDEN, 3), (COMIRNATY, 2)])
    world.store.put(
        AVAILABILITY_DELTAS,
        "d1",
        {
            "changes": [
                {"point_id": POINT, "day": JCOVDEN.day_key, "slot": JCOVDEN.slot_key, "delta": -1}
            ],
            "point_ids": [POINT],
        },
    )
    view = world.service.calendar(STAFF, POINT, CalendarQuery(date_from=MONDAY), NOW)
    slots = {s["slot_id"]: (s["capacity"], s["free"], s["booked"]) for s in view["slots"]}
    assert slots == {JCOVDEN.slot_id: (3, 2, 1), COMIRNATY.slot_id: (2, 2, 0)}
    assert world.store.commits == 0
    with pytest.raises(ForbiddenError):
        world.service.calendar(Staff(point_id=OTHER_POINT), POINT, CalendarQuery(), NOW)
