"""Rules in force everywhere: a new rules version, added the way rules/index.yaml says (a new
file plus one line in the index), changes every decision made from its day on, and none made
before it.

The rules folder is a copy of common/domain/rules with a vaccines version in force from D
that gives Comirnaty a 21/28/30-day dose-2 window (was 21/35/42) and raises Jcovden's minimum
age to 21 (was 18). The services are the ones `common.wiring` builds with RULES_DIR pointing at
that folder, so the test also shows that wiring hands every service the rule book. Every
decision is made at an explicit moment: BEFORE is 23:30 on D - 1 and ON is 00:30 on D (Warsaw),
both on the same UTC day, so the wall clock and the hour of the run never matter.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from common import wiring
from common.adapters.firestore_store import APPOINTMENTS, PATIENTS, SMS_DIALOGS
from common.adapters.sms_client import SmsInbound
from common.domain.calendar import WARSAW, SlotRef
from common.domain.errors import AgeNotAllowedError, DoseIntervalError
from common.services.booking import Actor, BookAppointment, RescheduleAppointment
from common.services.directory import rebuild_directory
from common.services.sds_sync import SHORTFALL_REASON, SUPPLY_ACTOR
from common.services.staff_calendar import ChangeSlotRequest
from common.services.visits import CheckInRequest, CompleteRequest, WalkInRequest
from tests.support.points import events
from tests.support.rules import COMIRNATY_NEW_NAME, NEW_VERSION, write_rules_with_new_version
from tests.support.stack import add_patient, add_point

D = date(2031, 3, 3)
# As the clock gives them (UTC): 23:30 on D - 1 and 00:30 on D in Warsaw, one UTC day.
BEFORE = datetime(2031, 3, 2, 22, 30, tzinfo=UTC)
ON = datetime(2031, 3, 2, 23, 30, tzinfo=UTC)
ADULT = date(1980, 5, 17)
YOUNG = date(2011, 6, 1)  # 19 from before D until well after every visit here: 18+, not 21+

# Kraków: bookings, moves, walk-ins, the SMS dialog (postcode 31-001 is next to it).
POINT_A = "pt-00001"
# Warsaw, far from Kraków: displacements at C, their alternatives at Z nearby.
POINT_C = "pt-00002"
POINT_Z = "pt-00003"
V = D + timedelta(days=7)  # dose 1 at A
W = D + timedelta(days=10)  # dose 1 at C
TEN, EIGHT, NOON = time(10, 0), time(8, 0), time(12, 0)


def slot(point: str, day: date, start: time, product: str) -> str:
    return SlotRef(point, day, start, product).slot_id


@functools.cache
def _no_publisher() -> None:
    return None  # events stay in the outbox, where the test reads them


class _Texts:
    """Stands in for the SMS sender: keeps the texts instead of sending them."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_once(self, notification_id, phone, render, meta, now, retry_failed=False) -> str:
        self.sent.append(render())
        return "sent"


TEXTS = _Texts()


@functools.cache
def _texts() -> _Texts:
    return TEXTS


@pytest.fixture
def world(project: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rules = write_rules_with_new_version(tmp_path / "rules", D)
    monkeypatch.setenv("RULES_DIR", str(rules))
    monkeypatch.setattr(wiring, "publisher", _no_publisher)
    monkeypatch.setattr(wiring, "sms_sender", _texts)
    wiring.reset()
    assert wiring.rule_book().rules_for(D).catalogue.version == NEW_VERSION
    db = wiring.firestore_client()
    a_days = [V + timedelta(days=n) for n in range(51)]
    a = add_point(
        db,
        POINT_A,
        products=("comirnaty", "jcovden", "spikevax"),
        slots=[(d, TEN, "comirnaty", 20) for d in a_days]
        + [(V, TEN, "jcovden", 20), (D + timedelta(days=1), EIGHT, "jcovden", 5)],
    )
    c = add_point(
        db,
        POINT_C,
        lat=52.2297,
        lon=21.0122,
        slots=[
            (W, TEN, "comirnaty", 5),
            (W + timedelta(days=35), EIGHT, "comirnaty", 1),
            (W + timedelta(days=36), EIGHT, "comirnaty", 1),
            (W + timedelta(days=1), EIGHT, "jcovden", 1),
            (W + timedelta(days=2), EIGHT, "jcovden", 2),
        ],
    )
    z = add_point(
        db,
        POINT_Z,
        lat=52.25,
        lon=21.0,
        # Free dose-2 slots near C: one inside both windows after W, two inside the old only.
        slots=[(W + timedelta(days=n), NOON, "comirnaty", 5) for n in (29, 33, 34)]
        + [(W + timedelta(days=5), NOON, "jcovden", 5)],
    )
    rebuild_directory(db, [a, c, z])  # each add_point lists only itself
    return db


_serials = iter(range(1, 5000))


def patient(db, born: date = ADULT) -> str:
    return add_patient(db, born=born, serial=next(_serials), today=D)


def book(pesel: str, slot_id: str, now: datetime, second: str | None = None) -> list[dict]:
    command = BookAppointment(
        pesel=pesel,
        slot_id=slot_id,
        channel="portal",
        actor=Actor(uid=f"patient-{pesel}", role="patient"),
        second_slot_id=second,
    )
    return wiring.booking_service().book(command, now).body["appointments"]


def move(pesel: str, appointment: dict, slot_id: str, now: datetime) -> list[dict]:
    service = wiring.booking_service()
    command = RescheduleAppointment(
        appointment_id=appointment["appointment_id"],
        new_slot_id=slot_id,
        actor=Actor(uid=f"patient-{pesel}", role="patient"),
        channel="portal",
        patient_key=service.patient_key(pesel, now),
    )
    return service.reschedule(command, now).body["appointments"]


def day_of(appointment: dict[str, Any]) -> date:
    return datetime.fromisoformat(appointment["starts_at"]).astimezone(WARSAW).date()


def test_dose_1_eligibility_follows_the_age_limit_in_force(world) -> None:
    before = book(patient(world, YOUNG), slot(POINT_A, V, TEN, "jcovden"), BEFORE)
    assert [a["product"] for a in before] == ["jcovden"]
    with pytest.raises(AgeNotAllowedError) as refused:
        book(patient(world, YOUNG), slot(POINT_A, V, TEN, "jcovden"), ON)
    assert refused.value.details["min_age"] == 21
    assert book(patient(world), slot(POINT_A, V, TEN, "jcovden"), ON)  # adults still may


def test_the_dose_2_of_a_series_is_booked_in_the_window_in_force(world) -> None:
    first = slot(POINT_A, V, TEN, "comirnaty")
    before = book(patient(world), first, BEFORE)
    on = book(patient(world), first, ON)
    assert day_of(before[1]) == V + timedelta(days=35)  # planned 35 (21..42)
    assert day_of(on[1]) == V + timedelta(days=28)  # planned 28 (21..30)
    day_35 = slot(POINT_A, V + timedelta(days=35), TEN, "comirnaty")
    assert book(patient(world), first, BEFORE, second=day_35)
    with pytest.raises(DoseIntervalError):
        book(patient(world), first, ON, second=day_35)


def test_moving_dose_1_rechecks_dose_2_against_the_window_in_force(world) -> None:
    first, later = (
        slot(POINT_A, V, TEN, "comirnaty"),
        slot(POINT_A, V + timedelta(days=3), TEN, "comirnaty"),
    )
    kept_pesel, moved_pesel = patient(world), patient(world)
    kept = book(kept_pesel, first, BEFORE)
    moved = book(moved_pesel, first, BEFORE)
    assert day_of(kept[1]) == day_of(moved[1]) == V + timedelta(days=35)
    # Dose 2 is then 32 days after the new dose 1: inside 21..42, outside 21..30.
    by_old = move(kept_pesel, kept[0], later, BEFORE)
    assert [a["dose_number"] for a in by_old] == [1]
    stored = world.collection(APPOINTMENTS).document(kept[1]["appointment_id"]).get().to_dict()
    assert stored["slot_id"] == kept[1]["slot_id"]
    by_new = move(moved_pesel, moved[0], later, ON)
    assert [a["dose_number"] for a in by_new] == [1, 2]
    assert day_of(by_new[1]) == V + timedelta(days=3 + 28)


def test_moving_dose_2_is_judged_by_the_window_in_force(world) -> None:
    first = slot(POINT_A, V, TEN, "comirnaty")
    day_28 = slot(POINT_A, V + timedelta(days=28), TEN, "comirnaty")
    day_35 = slot(POINT_A, V + timedelta(days=35), TEN, "comirnaty")
    allowed, refused = patient(world), patient(world)
    series = book(allowed, first, BEFORE, second=day_28)
    assert day_of(move(allowed, series[1], day_35, BEFORE)[0]) == V + timedelta(days=35)
    series = book(refused, first, BEFORE, second=day_28)
    with pytest.raises(DoseIntervalError):
        move(refused, series[1], day_35, ON)


def test_moving_dose_2_after_dose_1_was_given_keeps_the_window_in_force(world) -> None:
    pesel = patient(world)
    series = book(pesel, slot(POINT_A, V, TEN, "comirnaty"), BEFORE)  # dose 2 on V + 35
    given = datetime.combine(V, time(10, 30), tzinfo=WARSAW).astimezone(UTC)  # after D
    staff = Actor(uid="staff-a", role="staff", point_id=POINT_A)
    body = CompleteRequest(product="comirnaty", lot_number="LOT-2031")
    visits = wiring.visit_service()
    visits.check_in(staff, series[0]["appointment_id"], CheckInRequest(pesel=pesel), given)
    visits.complete(staff, series[0]["appointment_id"], body, given)
    with pytest.raises(DoseIntervalError):  # 36 days: inside 21..42, outside 21..30
        move(pesel, series[1], slot(POINT_A, V + timedelta(days=36), TEN, "comirnaty"), given)
    moved = move(pesel, series[1], slot(POINT_A, V + timedelta(days=29), TEN, "comirnaty"), given)
    assert day_of(moved[0]) == V + timedelta(days=29)


def test_walk_ins_follow_the_age_limit_in_force(world) -> None:
    visits = wiring.visit_service()
    staff = Actor(uid="staff-a", role="staff", point_id=POINT_A)

    def walk_in(now: datetime, **leftover: Any):
        body = WalkInRequest(
            pesel=patient(world, YOUNG), product="jcovden", lot_number="LOT-2031", **leftover
        )
        return visits.walk_in(staff, POINT_A, body, now)

    assert walk_in(BEFORE).status == 201
    with pytest.raises(AgeNotAllowedError):
        walk_in(ON)
    leftover = {"leftover_dose": True, "reason": "a vial opened at closing"}
    assert walk_in(BEFORE, **leftover).status == 201
    with pytest.raises(AgeNotAllowedError):
        walk_in(ON, **leftover)


def _displaced(db) -> dict[str, list[dict]]:
    return {e["appointment_id"]: e["alternatives"] for e in events(db, "appointment.displaced")}


def test_staff_displacement_offers_only_what_the_age_allows_in_force(world) -> None:
    calendar = wiring.staff_calendar_service()
    staff = Actor(uid="staff-c", role="staff", point_id=POINT_C)
    one, two = (
        slot(POINT_C, W + timedelta(days=1), EIGHT, "jcovden"),
        slot(POINT_C, W + timedelta(days=2), EIGHT, "jcovden"),
    )
    [young_before] = book(patient(world, YOUNG), one, BEFORE)
    [young_on] = book(patient(world, YOUNG), two, BEFORE)
    [adult_on] = book(patient(world), two, BEFORE)
    calendar.change_slot(staff, POINT_C, one, ChangeSlotRequest(capacity=0), BEFORE)
    calendar.change_slot(staff, POINT_C, two, ChangeSlotRequest(capacity=0), ON)
    offers = _displaced(world)
    jcovden_at_z = slot(POINT_Z, W + timedelta(days=5), NOON, "jcovden")
    assert [a["slot_id"] for a in offers[young_before["appointment_id"]]] == [jcovden_at_z]
    assert offers[young_on["appointment_id"]] == []  # 19: no longer old enough for Jcovden
    assert [a["slot_id"] for a in offers[adult_on["appointment_id"]]] == [jcovden_at_z]


def test_supply_displacement_offers_a_dose_2_its_window_in_force(world) -> None:
    calendar = wiring.staff_calendar_service()
    first = slot(POINT_C, W, TEN, "comirnaty")
    second_before = slot(POINT_C, W + timedelta(days=35), EIGHT, "comirnaty")
    second_on = slot(POINT_C, W + timedelta(days=36), EIGHT, "comirnaty")
    before = book(patient(world), first, BEFORE, second=second_before)
    on = book(patient(world), first, BEFORE, second=second_on)
    for second, now in ((second_before, BEFORE), (second_on, ON)):
        calendar.apply_supply_capacity(SUPPLY_ACTOR, POINT_C, second, 0, 1, SHORTFALL_REASON, now)
    offers = _displaced(world)
    days = {
        key: [day_of(a) - W for a in offers[series[1]["appointment_id"]]]
        for key, series in (("before", before), ("on", on))
    }
    assert days == {
        "before": [timedelta(days=n) for n in (29, 33, 34)],  # 21..42 after dose 1
        "on": [timedelta(days=29)],  # 21..30 after dose 1
    }


def test_the_sms_dialog_offers_the_products_the_age_allows_in_force(world) -> None:
    dialog = wiring.sms_dialog_service()

    def start(phone: str, now: datetime) -> dict:
        pesel = patient(world, YOUNG)
        # The dialog answers only the patient's own verified number (docs/integrations.md).
        key = wiring.booking_service().patient_key(pesel, now)
        world.collection(PATIENTS).document(key).update({"phone": phone})
        inbound = SmsInbound(
            message_id=f"m-{phone}", sender=phone, text=f"{pesel} 31-001", received_at=now
        )
        assert dialog.receive(inbound, now) == "offered"
        [state] = [
            s.to_dict()
            for s in world.collection(SMS_DIALOGS).stream()
            if s.to_dict().get("patient_key") == wiring.booking_service().patient_key(pesel, now)
        ]
        return state

    before = start("+48600100201", BEFORE)
    assert "jcovden" in before["products"]
    assert before["offer"]["slot_id"] == slot(POINT_A, D + timedelta(days=1), EIGHT, "jcovden")
    on = start("+48600100202", ON)
    assert on["products"] == [p for p in before["products"] if p != "jcovden"]
    assert on["offer"]["slot_id"] == slot(POINT_A, V, TEN, "comirnaty")
    assert COMIRNATY_NEW_NAME in TEXTS.sent[-1]  # and named as the new version names it
