"""Choosing a seat: from the truth (the seat documents), cheaply, and without trampling.

A slot of capacity C has seats 0..C-1; `seats/{slot}_{n}` exists exactly when seat n is taken
(by a patient, or by a blocker after a capacity cut: blockers only ever hold indices >= the
current capacity). So:

- "is this slot full?" is one aggregation: the number of seats of the slot with an index below
  its capacity (one billed read per thousand index entries, i.e. one read). A booker who finds
  the slot full is refused after that one read, with no write.
- "which seats are free?" is one query of the slot's taken seats, made only when it is not.
- Bookers in the same instance do not pick the same seat: the broker hands each a different
  free one, and makes a booker wait for the others' outcome (instead of colliding with them)
  when every free seat is being tried in this instance. Bookers in different instances can
  still pick the same seat: the loser's commit finds it taken (create() precondition), and it
  reads again and picks another. Every collision means somebody else got a seat, so this ends.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common.adapters.firestore_store import SEATS
from common.domain.calendar import SlotAvailability
from common.domain.errors import OverloadedError

# How long a booker waits for the other bookers of this instance to learn whether their seat
# is theirs, before reading the slot again.
WAIT_FOR_OTHERS_S = 2.0
# How often a booker may find every free seat being tried here and read again, before it is
# told the slot is too busy (503 with Retry-After: it was never refused as full).
MAX_REREADS = 20
HOLD_EXPIRES_S = 30.0


def seat_index(seat_id: str) -> int:
    return int(seat_id.rsplit("_", 1)[1])


def count_taken(reader: Any, slot: SlotAvailability) -> int:
    """Seats of the slot that are taken, among those its capacity makes bookable."""
    return reader.count(SEATS, ("slot_id", "==", slot.ref.slot_id), ("index", "<", slot.capacity))


def taken_seats(reader: Any, slot: SlotAvailability) -> set[int]:
    return {seat_index(d.id) for d in reader.query(SEATS, ("slot_id", "==", slot.ref.slot_id))}


def seat_document(appointment: Any, now: Any) -> dict[str, Any]:
    return {
        "appointment_id": appointment.appointment_id,
        "slot_id": appointment.slot_id,
        "index": seat_index(appointment.seat_id),
        "point_id": appointment.point_id,
        "day": appointment.day.isoformat(),
        "claimed_at": now,
    }


class SeatBroker:
    """The seats being tried right now by the bookers of this instance, per slot.

    A hold is released when its attempt ends; one older than HOLD_EXPIRES_S belongs to an
    attempt that never said so (a bug, a thread killed) and no longer keeps others off.
    """

    def __init__(self, monotonic: Any = time.monotonic) -> None:
        self._trying: dict[str, dict[int, float]] = {}
        self._changed = threading.Condition()
        self._monotonic = monotonic

    def reserve(self, slot_id: str, free: Sequence[int], rng: random.Random) -> int | None:
        """A free seat nobody here is trying; None when every free seat is being tried here
        (after waiting up to WAIT_FOR_OTHERS_S for one of those attempts to end)."""
        with self._changed:
            now = self._monotonic()
            trying = self._trying.setdefault(slot_id, {})
            for seat, since in list(trying.items()):
                if now - since > HOLD_EXPIRES_S:
                    del trying[seat]
            options = [i for i in free if i not in trying]
            if not options:
                self._changed.wait(WAIT_FOR_OTHERS_S)
                return None
            seat = rng.choice(options)
            trying[seat] = now
            return seat

    def release(self, slot_id: str, seat: int) -> None:
        with self._changed:
            trying = self._trying.get(slot_id)
            if trying is not None:
                trying.pop(seat, None)
                if not trying:
                    del self._trying[slot_id]
            self._changed.notify_all()

    def holds(self) -> int:
        with self._changed:
            return sum(len(t) for t in self._trying.values())


@dataclass
class SlotChoice:
    """One dose's candidate slots, best first, and the seat held for the current attempt."""

    candidates: list[SlotAvailability]
    broker: SeatBroker
    rng: random.Random
    index: int = 0
    seat: int | None = None
    rereads: int = 0

    @property
    def slot(self) -> SlotAvailability:
        return self.candidates[self.index]

    @property
    def seat_id(self) -> str:
        assert self.seat is not None
        return self.slot.ref.seat_id(self.seat)

    def pick(self, reader: Any) -> bool:
        """Hold a seat that the store says is free: True; False when no candidate has one."""
        self.release()
        while self.index < len(self.candidates):
            slot = self.slot
            if count_taken(reader, slot) >= slot.capacity:
                self.index += 1
                continue
            taken = taken_seats(reader, slot)
            free = [i for i in range(slot.capacity) if i not in taken]
            if not free:
                self.index += 1
                continue
            seat = self.broker.reserve(slot.ref.slot_id, free, self.rng)
            if seat is None:
                self.rereads += 1
                if self.rereads > MAX_REREADS:
                    raise OverloadedError("this slot is very busy right now; try again shortly")
                continue  # the others' attempts ended: read the slot again
            self.seat = seat
            return True
        return False

    def release(self) -> None:
        if self.seat is not None and self.index < len(self.candidates):
            self.broker.release(self.slot.ref.slot_id, self.seat)
        self.seat = None
