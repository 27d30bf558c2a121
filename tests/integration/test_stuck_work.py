"""Nothing stuck (issue 13, item 6): the outage of the incident, then exactly one SMS per event.

The incident: Firestore frozen for a while and the SMS gateway down; the booking's
notification stayed `sending`, the push subscription gave up (dead letter), and nothing ever
sent it. Here, against the official emulators, the SMS simulator and every function behind the
dev gateway: the gateway is down, Firestore (as the functions reach it) is frozen for several
seconds in the middle of the redeliveries, the push retries run out and the event is
dead-lettered; the gateway comes back and still nothing is sent, because no one is left to
retry. The scheduled sweeper (`sweep_stuck_work`, through the gateway, at a clock moved past
the record's due time) sends it: one SMS per event, however often it runs, and a replay of the
dead letter adds none.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from common import clock, wiring
from common.services.booking import Actor, BookAppointment
from emulator.replay_dead_letters import peek, replay
from tests.integration import sms_support
from tests.integration.sms_support import SmsWorld, point_with_slots, wait_for
from tests.support.freezer import FreezableProxy

gateway_url = sms_support.gateway_url
tasks_emulator = sms_support.tasks_emulator
push_world = sms_support.push_world

INSPECT = "notifications-dead-letter-inspect"
PATIENT = Actor(uid="patient-1", role="patient")


@pytest.fixture
def moving_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[clock.FileClock]:
    """The functions' clock as a file this test moves (as the full-day test moves the stack's),
    starting where the suite's clock is."""
    start = clock.process_clock().offset_s
    moving = clock.FileClock(tmp_path / "clock.json")
    moving.set_offset(start)
    monkeypatch.setenv(clock.FILE_VARIABLE, str(moving.path))
    clock.process_clock.cache_clear()
    wiring.reset()
    yield moving
    monkeypatch.delenv(clock.FILE_VARIABLE)
    clock.process_clock.cache_clear()
    wiring.reset()


@pytest.fixture
def freezer(push_world: SmsWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[FreezableProxy]:
    """Firestore as the functions reach it, through a proxy the test can freeze (the test's
    own client, `world.db`, goes straight to the emulator)."""
    proxy = FreezableProxy(os.environ["FIRESTORE_EMULATOR_HOST"])
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", proxy.address)
    wiring.reset()
    yield proxy
    proxy.close()


def _move(moving: clock.FileClock, moment: datetime) -> None:
    moving.move_to(moment)
    time.sleep(0.3)  # every process's clock looks at the file at most every 0.1 s


def _sweep(world: SmsWorld) -> dict:
    response = requests.post(f"{world.gateway_url}/_functions/sweep_stuck_work", timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_after_the_outage_the_sweeper_sends_exactly_one_sms_per_event(
    push_world: SmsWorld, freezer: FreezableProxy, moving_clock: clock.FileClock
):
    world = push_world
    slots = point_with_slots(world.db, days=[4], capacity=5)
    phones = ["+48600300001", "+48600300002"]
    pesels = [world.patient(phone, serial)[0] for serial, phone in enumerate(phones, start=1)]

    # The SMS gateway is down; both bookings commit and publish their events.
    world.faults(down=True, down_mode="close")
    for pesel in pesels:
        wiring.booking_service().book(
            BookAppointment(pesel=pesel, slot_id=slots[0], channel="portal", actor=PATIENT),
            clock.now(),
        )
    records = lambda: [  # noqa: E731
        d.to_dict() | {"id": d.id} for d in world.db.collection("notifications").stream()
    ]
    assert wait_for(lambda: len(records()) == 2), "the pushes never reached notify_patient"
    assert all(r["status"] == "sending" for r in records())

    # Firestore freezes for a while in the middle of the redeliveries, then thaws; the
    # gateway stays down until the subscription gives up: both events are dead-lettered.
    freezer.freeze_for(8)
    # Patience for a loaded machine: each delivery waits on the frozen store or the gateway.
    letters = wait_for(lambda: len(peek(world.project, INSPECT, pull_timeout_s=2)) >= 2, 240, 0.5)
    assert letters, "the push retries never ran out"
    assert all(r["status"] == "sending" for r in records())

    # The gateway is back: nobody is left to retry, nothing is sent by itself.
    world.faults()
    wait_for(lambda: world.messages(), timeout_s=3)
    assert world.messages() == []

    # The sweeper, once the records are due (5 minutes after their last attempt).
    _move(moving_clock, moving_clock.now() + timedelta(minutes=6))
    swept = _sweep(world)
    assert swept["notifications"] == {"sent": 2}, swept
    for phone in phones:
        (sms,) = world.messages(phone)
        assert "zarezerwowano szczepienie" in sms["text"]
    assert all(r["status"] == "sent" and r.get("to_enc") is None for r in records())

    # Again, and with the dead letters replayed: still one SMS per event.
    assert _sweep(world)["notifications"] == {}
    assert replay(world.project, INSPECT, "appointment-events", pull_timeout_s=2) == 2
    wait_for(lambda: len(world.messages()) > 2, timeout_s=5)
    assert [len(world.messages(p)) for p in phones] == [1, 1]


def test_a_sweep_while_the_gateway_is_still_down_sends_nothing_and_tries_later(
    push_world: SmsWorld, moving_clock: clock.FileClock
):
    world = push_world
    slots = point_with_slots(world.db, days=[4])
    phone = "+48600300011"
    pesel, _ = world.patient(phone, 11)
    world.faults(down=True, down_mode="close")
    wiring.booking_service().book(
        BookAppointment(pesel=pesel, slot_id=slots[0], channel="portal", actor=PATIENT),
        clock.now(),
    )
    assert wait_for(lambda: len(peek(world.project, INSPECT, pull_timeout_s=2)) >= 1, 240, 0.5)
    _move(moving_clock, moving_clock.now() + timedelta(minutes=6))
    assert _sweep(world)["notifications"] == {"still_failing": 1}
    (record,) = [d.to_dict() for d in world.db.collection("notifications").stream()]
    assert record["status"] == "sending" and record["sweeps"] == 1
    due = record["retry_after"]
    assert due > moving_clock.now()  # moved on: not swept again at once
    assert _sweep(world)["notifications"] == {}
    world.faults()
    _move(moving_clock, due + timedelta(seconds=1))
    assert _sweep(world)["notifications"] == {"sent": 1}
    assert len(world.messages(phone)) == 1
