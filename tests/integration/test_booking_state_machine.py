"""docs/reliability.md item 3: booking, cancelling, rescheduling and time passing, as a
property-based state machine against the Firestore emulator.

Hypothesis drives random sequences of book / cancel / reschedule / "the clock moves past a
slot" in a small world: two points, jcovden (one dose) and comirnaty (two doses, dose 2
booked with dose 1 at the same point in the 21-42 day window, nearest day 35), three
patients, slots of capacity 1-2. A plain sequential model (seats per slot, the state of each
appointment) predicts every answer: success with which appointments in which slots, or which
error code. After every step the database is read back and checked against the model and
against the invariants that must hold whatever the model says:

* no slot has more seats than its capacity, and availability `free` == capacity - seats;
* seats and booked appointments are the same set, each seat naming its appointment;
* at most one active booking per patient and dose, and the active-dose locks are exactly the
  booked appointments;
* an active dose 2 always has its active dose 1 (cancelling dose 2 alone is allowed, so the
  converse is not an invariant), and the two name each other;
* the outbox holds exactly one event per appointment changed.

The service is called directly with an explicit `now` (the HTTP entry points read the wall
clock), which is what makes "time passing" cheap: the model clock jumps past a slot's start
and both model and service must then refuse to book, cancel or move that visit.

Each example gets a project id of its own, i.e. an empty database in the emulator.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from google.cloud import firestore
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from common import clock, wiring
from common.adapters.firestore_store import (
    ACTIVE_DOSES,
    APPOINTMENTS,
    AVAILABILITY,
    OUTBOX,
    SEATS,
)
from common.config import Settings
from common.domain.calendar import WARSAW, PointCalendar, SlotRef
from common.domain.eligibility import load_cohort_rules
from common.domain.errors import DomainError
from common.domain.rulebook import RuleBook
from common.domain.vaccines import load_catalogue, second_dose_window
from common.services.availability import AvailabilityFolder
from common.services.booking import (
    Actor,
    BookAppointment,
    BookingService,
    CancelAppointment,
    RescheduleAppointment,
)
from tests.support.stack import add_patient, add_point, firestore_client, today_warsaw

POINT_A, POINT_B = "pt-00001", "pt-00002"
PATIENTS = 3
CATALOGUE = load_catalogue()
COHORTS = load_cohort_rules()


@dataclass(frozen=True)
class SlotSpec:
    point: str
    offset_days: int
    start: time
    product: str
    capacity: int  # 0: not in the calendar at all


# Days are offsets from today + 2. Dose 1 slots sit on days 0-1; their dose-2 windows
# (days 21-43) hold S35/S40 at A and S36 at B, so a dose 1 moved between points has to take
# its dose 2 along, and two bookings at A fill A's dose-2 slots.
SLOTS: dict[str, SlotSpec] = {
    "J_A": SlotSpec(POINT_A, 0, time(9, 0), "jcovden", 1),
    "J_A2": SlotSpec(POINT_A, 1, time(10, 0), "jcovden", 2),
    "J_B": SlotSpec(POINT_B, 0, time(11, 0), "jcovden", 1),
    "C_A": SlotSpec(POINT_A, 0, time(9, 0), "comirnaty", 2),
    "C_A2": SlotSpec(POINT_A, 1, time(12, 0), "comirnaty", 1),
    "C_B": SlotSpec(POINT_B, 1, time(9, 0), "comirnaty", 1),
    "S35": SlotSpec(POINT_A, 35, time(9, 0), "comirnaty", 1),
    "S40": SlotSpec(POINT_A, 40, time(9, 0), "comirnaty", 1),
    "S36": SlotSpec(POINT_B, 36, time(9, 0), "comirnaty", 1),
    # A well-formed slot id the calendar does not have.
    "GHOST": SlotSpec(POINT_A, 2, time(13, 0), "jcovden", 0),
}
FIRST_DOSE_SLOTS = ["J_A", "J_A2", "J_B", "C_A", "C_A2", "C_B"]


@pytest.fixture(scope="module", autouse=True)
def _emulators(local_cloud: Any) -> None:
    # Hypothesis' TestCase cannot take fixtures; asking for the session fixture here starts
    # the emulators (and sets FIRESTORE_EMULATOR_HOST) before any example runs. On a loaded
    # machine a freshly started emulator answers its first requests slower than the
    # services' 6 s RPC budget, so one unhurried round trip comes first.
    client = firestore.Client(project=f"warmup-{uuid.uuid4().hex[:8]}")
    document = client.collection("warmup").document("w")
    document.set({"ok": True}, timeout=120)
    document.get(timeout=120)
    list(client.collection("warmup").stream(timeout=120))
    client.close()


@dataclass
class ModelAppointment:
    appointment_id: str
    patient: int
    slot: str
    dose: int
    linked: str | None
    active: bool = True


@dataclass
class Model:
    day0: date
    now: datetime
    appointments: dict[str, ModelAppointment] = field(default_factory=dict)
    events: Counter[str] = field(default_factory=Counter)

    def day(self, slot: str) -> date:
        return self.day0 + timedelta(days=SLOTS[slot].offset_days)

    def starts_at(self, slot: str) -> datetime:
        return datetime.combine(self.day(slot), SLOTS[slot].start, tzinfo=WARSAW)

    def slot_id(self, slot: str) -> str:
        spec = SLOTS[slot]
        return SlotRef(spec.point, self.day(slot), spec.start, spec.product).slot_id

    def seats(self, slot: str) -> int:
        return sum(1 for a in self.appointments.values() if a.active and a.slot == slot)

    def free(self, slot: str) -> int:
        return SLOTS[slot].capacity - self.seats(slot)

    def past(self, slot: str) -> bool:
        return self.starts_at(slot) <= self.now

    def bookable_error(self, slot: str) -> str | None:
        """What BookingService._bookable says: no such slot, started, or full."""
        if SLOTS[slot].capacity == 0 or self.past(slot) or self.free(slot) <= 0:
            return "slot_unavailable"
        return None

    def second_dose_slot(self, point: str, first_day: date) -> str | None:
        """The free slot nearest the planned day in the window, earliest first on a tie."""
        earliest, latest, planned = second_dose_window(CATALOGUE.get("comirnaty"), first_day)
        candidates = [
            name
            for name, spec in SLOTS.items()
            if spec.point == point
            and spec.product == "comirnaty"
            and spec.capacity > 0
            and earliest <= self.day(name) <= latest
            and self.free(name) > 0
        ]
        candidates.sort(key=lambda n: (abs((self.day(n) - planned).days), self.starts_at(n)))
        return candidates[0] if candidates else None

    def active_dose(self, patient: int, dose: int) -> bool:
        return any(
            a.active and a.patient == patient and a.dose == dose for a in self.appointments.values()
        )


Outcome = tuple[str, list[tuple[int, str]]]  # ("ok", [(dose, slot), ...]) or (code, [])


class BookingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # A fresh project per example: an empty database, and wiring pointed at it.
        self._saved_project = os.environ.get("GOOGLE_CLOUD_PROJECT")
        self.project = f"sm-{uuid.uuid4().hex[:12]}"
        os.environ["GOOGLE_CLOUD_PROJECT"] = self.project
        wiring.reset()
        self.db = firestore_client(self.project)
        day0 = today_warsaw() + timedelta(days=2)
        self.model = Model(day0=day0, now=clock.now())
        for point in (POINT_A, POINT_B):
            add_point(
                self.db,
                point,
                slots=[
                    (self.model.day(name), spec.start, spec.product, spec.capacity)
                    for name, spec in SLOTS.items()
                    if spec.point == point and spec.capacity > 0
                ],
            )
        self.pesels = [add_patient(self.db, serial=i) for i in range(PATIENTS)]
        self.service = BookingService.on_firestore(
            self.db,
            RuleBook.fixed(CATALOGUE, COHORTS),  # the model pins these rules
            Settings.from_env().pesel_hash_key,
            publisher=None,
        )
        self.keys = [self.service.patient_key(p, self.model.now) for p in self.pesels]

    def teardown(self) -> None:
        if self._saved_project is None:
            os.environ.pop("GOOGLE_CLOUD_PROJECT", None)
        else:
            os.environ["GOOGLE_CLOUD_PROJECT"] = self._saved_project
        wiring.reset()
        self.db.close()

    # -- helpers -------------------------------------------------------------------------
    def _actor(self, patient: int) -> Actor:
        return Actor(uid=f"patient-{patient}", role="patient")

    def _slot_of(self, slot_id: str) -> str:
        return next(n for n in SLOTS if self.model.slot_id(n) == slot_id)

    def _run(self, call: Any) -> tuple[str, list[dict[str, Any]]]:
        try:
            result = call()
        except DomainError as err:
            return err.code, []
        return "ok", result.body["appointments"]

    def _check(
        self, operation: str, expected: Outcome, actual: tuple[str, list[dict[str, Any]]]
    ) -> None:
        code, appointments = actual
        # Shown by --hypothesis-show-statistics: which outcomes the examples reached.
        event(f"{operation}: {code}" + (f" x{len(appointments)}" if appointments else ""))
        got = sorted((a["dose_number"], self._slot_of(a["slot_id"])) for a in appointments)
        assert (code, got) == (expected[0], sorted(expected[1])), (
            f"model {expected}, got {code} {got}"
        )

    def _pick(self, index: int) -> ModelAppointment:
        # Before the first booking, an id nobody has: the answer must be 404 all the same.
        # (Not a precondition: rules disabled at the start make Hypothesis discard examples.)
        ordered = list(self.model.appointments.values())
        if not ordered:
            return ModelAppointment(uuid.uuid4().hex, 0, "J_A", 1, None)
        return ordered[index % len(ordered)]

    def _known(self, target: ModelAppointment) -> bool:
        return target.appointment_id in self.model.appointments

    def _acting(self, owner: int, intruder: int) -> int:
        # One time in four the caller is somebody else, who must get a 404 and change nothing.
        return (owner + 1) % PATIENTS if intruder == 0 else owner

    # -- rules ---------------------------------------------------------------------------
    @initialize(slot=st.sampled_from(FIRST_DOSE_SLOTS))
    def first_booking(self, slot: str) -> None:
        # Every example starts with a booking, so that its steps act on something.
        self.book(0, slot)

    @rule(patient=st.integers(0, PATIENTS - 1), slot=st.sampled_from(sorted(SLOTS)))
    def book(self, patient: int, slot: str) -> None:
        model = self.model
        spec = SLOTS[slot]
        expected: Outcome
        second = None
        error = model.bookable_error(slot)
        if error is None and spec.product == "comirnaty":
            second = model.second_dose_slot(spec.point, model.day(slot))
            if second is None:
                error = "slot_unavailable"
        if error is None and model.active_dose(patient, 1):
            error = "already_booked"
        if error is not None:
            expected = (error, [])
        else:
            expected = ("ok", [(1, slot)] + ([(2, second)] if second else []))
        command = BookAppointment(
            pesel=self.pesels[patient],
            slot_id=model.slot_id(slot),
            channel="portal",
            actor=self._actor(patient),
        )
        actual = self._run(lambda: self.service.book(command, model.now))
        self._check("book", expected, actual)
        if actual[0] == "ok":
            by_dose = {a["dose_number"]: a for a in actual[1]}
            for dose, a in by_dose.items():
                model.appointments[a["appointment_id"]] = ModelAppointment(
                    a["appointment_id"],
                    patient,
                    self._slot_of(a["slot_id"]),
                    dose,
                    a["linked_appointment_id"],
                )
            model.events["appointment.booked"] += len(by_dose)

    @rule(index=st.integers(0, 15), intruder=st.integers(0, 3))
    def cancel(self, index: int, intruder: int) -> None:
        model = self.model
        target = self._pick(index)
        caller = self._acting(target.patient, intruder)
        linked = model.appointments.get(target.linked or "")
        expected: Outcome
        if caller != target.patient or not self._known(target):
            expected = ("appointment_not_found", [])
        elif not target.active or model.past(target.slot):
            expected = ("invalid_state", [])
        else:
            targets = [target]
            if target.dose == 1 and linked is not None and linked.active:
                targets.append(linked)
            expected = ("ok", [(a.dose, a.slot) for a in targets])
        command = CancelAppointment(
            appointment_id=target.appointment_id,
            actor=self._actor(caller),
            channel="portal",
            patient_key=self.keys[caller],
        )
        actual = self._run(lambda: self.service.cancel(command, model.now))
        self._check("cancel", expected, actual)
        for a in actual[1]:
            model.appointments[a["appointment_id"]].active = False
            model.events["appointment.cancelled"] += 1

    @rule(
        index=st.integers(0, 15),
        slot_pick=st.integers(0, 99),
        anywhere=st.integers(0, 4),
        intruder=st.integers(0, 3),
    )
    def reschedule(self, index: int, slot_pick: int, anywhere: int, intruder: int) -> None:
        model = self.model
        target = self._pick(index)
        caller = self._acting(target.patient, intruder)
        # Mostly a slot of the visit's own product (the only moves that can succeed); one
        # time in five any slot, to reach the refusals for another product or a ghost slot.
        product = SLOTS[target.slot].product
        names = sorted(n for n in SLOTS if anywhere == 0 or SLOTS[n].product == product)
        slot = names[slot_pick % len(names)]
        expected = self._expect_move(target, caller, slot)
        command = RescheduleAppointment(
            appointment_id=target.appointment_id,
            new_slot_id=model.slot_id(slot),
            actor=self._actor(caller),
            channel="portal",
            patient_key=self.keys[caller],
        )
        actual = self._run(lambda: self.service.reschedule(command, model.now))
        self._check("reschedule", expected, actual)
        for a in actual[1]:
            model.appointments[a["appointment_id"]].slot = self._slot_of(a["slot_id"])
            model.events["appointment.rescheduled"] += 1

    def _expect_move(self, target: ModelAppointment, caller: int, slot: str) -> Outcome:
        model = self.model
        spec = SLOTS[slot]
        product = SLOTS[target.slot].product
        linked = model.appointments.get(target.linked or "")
        if caller != target.patient or not self._known(target):
            return ("appointment_not_found", [])
        if not target.active or model.past(target.slot):
            return ("invalid_state", [])
        if spec.product != product or slot == target.slot:
            return ("invalid_request", [])
        error = model.bookable_error(slot)
        if error is not None:
            return (error, [])
        moves = [(target.dose, slot)]
        if linked is not None and linked.active:
            if target.dose == 1:
                earliest, latest, _ = second_dose_window(CATALOGUE.get(product), model.day(slot))
                keeps = (
                    SLOTS[linked.slot].point == spec.point
                    and earliest <= model.day(linked.slot) <= latest
                )
                if not keeps:
                    second = model.second_dose_slot(spec.point, model.day(slot))
                    if second is None:
                        return ("slot_unavailable", [])
                    moves.append((2, second))
            else:
                earliest, latest, _ = second_dose_window(
                    CATALOGUE.get(product), model.day(linked.slot)
                )
                if not earliest <= model.day(slot) <= latest:
                    return ("dose_interval_violated", [])
        return ("ok", moves)

    @rule(slot=st.sampled_from(FIRST_DOSE_SLOTS))
    def time_passes(self, slot: str) -> None:
        # The clock only moves forward: to just after this slot's start, if that is later.
        self.model.now = max(self.model.now, self.model.starts_at(slot) + timedelta(minutes=1))

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def database_matches_the_model(self) -> None:
        model = self.model
        stored = {s.id: s.to_dict() for s in self.db.collection(APPOINTMENTS).stream()}
        assert set(stored) == set(model.appointments)
        for aid, m in model.appointments.items():
            a = stored[aid]
            assert a["status"] == ("booked" if m.active else "cancelled"), (aid, a)
            assert a["slot_id"] == model.slot_id(m.slot), (aid, a["slot_id"], m.slot)
            assert (a["dose_number"], a["linked_appointment_id"]) == (m.dose, m.linked)
            assert a["patient_key"] == self.keys[m.patient]
        booked = {aid: a for aid, a in stored.items() if a["status"] == "booked"}

        # Seats are exactly the booked appointments, each within its slot's capacity.
        seats = {s.id: s.to_dict() for s in self.db.collection(SEATS).stream()}
        assert sorted(s["appointment_id"] for s in seats.values()) == sorted(booked)
        for seat_id, seat in seats.items():
            assert booked[seat["appointment_id"]]["seat_id"] == seat_id
            slot = self._slot_of(seat["slot_id"])
            assert seat_id.startswith(seat["slot_id"] + "_")
            assert 0 <= int(seat_id.rsplit("_", 1)[1]) < SLOTS[slot].capacity, seat_id
        per_slot = Counter(self._slot_of(s["slot_id"]) for s in seats.values())

        # Between requests no seat is held by an attempt that ended (a leaked hold would keep
        # later bookers of this instance off a free seat).
        assert self.service.broker.holds() == 0

        # Availability (once the background folder caught up): capacity unchanged,
        # free == capacity - seats, never negative.
        AvailabilityFolder(self.db).fold_all()
        for point in (POINT_A, POINT_B):
            document = self.db.collection(AVAILABILITY).document(point).get().to_dict()
            calendar = PointCalendar.from_document(point, document)
            for name, spec in SLOTS.items():
                if spec.point != point or spec.capacity == 0:
                    continue
                found = calendar.get(SlotRef.parse(model.slot_id(name)))
                assert found is not None
                assert per_slot[name] <= spec.capacity, name
                assert per_slot[name] == model.seats(name), name
                assert (found.capacity, found.free) == (spec.capacity, model.free(name)), name

        # One active booking per patient and dose; the locks are exactly the bookings.
        per_dose = Counter((a["patient_key"], a["dose_number"]) for a in booked.values())
        assert all(n == 1 for n in per_dose.values()), per_dose
        locks = [s.to_dict()["appointment_id"] for s in self.db.collection(ACTIVE_DOSES).stream()]
        assert sorted(locks) == sorted(booked)

        # A series: the doses name each other, and dose 2 is never active without dose 1.
        for aid, a in stored.items():
            linked_id = a["linked_appointment_id"]
            if linked_id is None:
                continue
            linked = stored[linked_id]
            assert linked["linked_appointment_id"] == aid
            assert linked["series_id"] == a["series_id"]
            if a["dose_number"] == 2 and a["status"] == "booked":
                assert linked["status"] == "booked", (aid, linked_id)

        events = Counter(s.to_dict()["event_type"] for s in self.db.collection(OUTBOX).stream())
        assert events == +model.events


BookingMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=15,
    deadline=None,
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow],
)
TestBookingStateMachine = BookingMachine.TestCase


def test_the_model_world_is_what_the_machine_assumes() -> None:
    # Guard the arithmetic the machine relies on: both dose-1 days of A reach A's dose-2
    # slots, and the dose-1 days of B reach B's; no dose-1 slot is inside any window.
    day0 = date(2030, 1, 7)
    model = Model(day0=day0, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert model.second_dose_slot(POINT_A, model.day("C_A")) == "S35"
    assert model.second_dose_slot(POINT_A, model.day("C_A2")) == "S35"
    assert model.second_dose_slot(POINT_B, model.day("C_B")) == "S36"
    assert model.second_dose_slot(POINT_B, model.day("C_A")) == "S36"
    assert all(SLOTS[n].offset_days < 21 for n in FIRST_DOSE_SLOTS)
