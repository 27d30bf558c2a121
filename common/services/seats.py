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
- Reserved capacity (common/domain/reservations.py): a choice may carry the booker's rule of
  each slot. Seats kept for a group the booker is not in are never tried (they are not in the
  booker's free list, so no interleaving of claims gives one to an outsider: a claim is a
  create() of that very document); a member tries their own group's kept seats first.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.cloud.firestore_v1 import DELETE_FIELD

from common.adapters.firestore_store import SEATS
from common.domain.calendar import SlotAvailability
from common.domain.errors import OverloadedError

# How long a booker waits for the other bookers of this instance to learn whether their seat
# is theirs, before reading the slot again.
WAIT_FOR_OTHERS_S = 2.0
# How often a booker may find every free seat being tried here and read again, before it is
# told the slot is too busy (503 with Retry-After: it was never refused as full).
MAX_REREADS = 20
HOLD_FIELDS = ("hold_id", "holder", "held_until")
HOLD_EXPIRES_S = 30.0


def seat_index(seat_id: str) -> int:
    return int(seat_id.rsplit("_", 1)[1])


def count_taken(reader: Any, slot: SlotAvailability) -> int:
    """Seats of the slot that are booked, among those its capacity makes bookable (held
    seats carry no `index` yet, so a full count is always a full slot)."""
    return reader.count(SEATS, ("slot_id", "==", slot.ref.slot_id), ("index", "<", slot.capacity))


def count_taken_from(reader: Any, slot: SlotAvailability, first: int) -> int:
    """Booked seats of the slot with an index in [first, capacity) (same index as above)."""
    return reader.count(
        SEATS,
        ("slot_id", "==", slot.ref.slot_id),
        ("index", ">=", first),
        ("index", "<", slot.capacity),
    )


def seat_documents(reader: Any, slot: SlotAvailability) -> dict[int, Any]:
    """The slot's seat documents by index: booked, blocked, held."""
    return {seat_index(d.id): d for d in reader.query(SEATS, ("slot_id", "==", slot.ref.slot_id))}


def taken_seats(reader: Any, slot: SlotAvailability, now: Any = None) -> set[int]:
    """Indices that are not free: every document but a hold that has expired."""
    return {i for i, d in seat_documents(reader, slot).items() if not expired_hold(d, now)}


def expired_hold(document: Any, now: Any) -> bool:
    """A seat held for someone (a timed hold) whose time is up: anyone may take it over."""
    held_until = document.data.get("held_until") if document is not None else None
    return held_until is not None and now is not None and held_until <= now


def hold_seat_document(slot: SlotAvailability, seat: int, hold_id: str, holder: str,
                       held_until: Any, now: Any) -> dict[str, Any]:  # fmt: skip
    """A seat held for a while (no `index`: not booked; `held_until`: taken till then)."""
    return {
        "hold_id": hold_id,
        "holder": holder,  # the keyed patient id
        "held_until": held_until,
        "slot_id": slot.ref.slot_id,
        "point_id": slot.ref.point_id,
        "day": slot.ref.day.isoformat(),
        "claimed_at": now,
    }


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
    now: Any = None  # the decision's moment: an expired hold's seat is free to take over
    # The chosen seat's document when it is an expired hold (taken over with a version
    # precondition); None when the seat has no document (created).
    replaces: Any = None
    # The booker's rule of a slot under reserved capacity (common/domain/reservations.py:
    # SeatRule, or None); and, when a candidate was passed over only because its free seats
    # are kept for a group, until when they are kept.
    rule: Callable[[SlotAvailability], Any] | None = None
    reserved_until: Any = None

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
        self.reserved_until = None
        while self.index < len(self.candidates):
            slot = self.slot
            if count_taken(reader, slot) >= slot.capacity:
                self.index += 1
                continue
            rule = self.rule(slot) if self.rule is not None else None
            prefix = rule.kept_prefix() if rule is not None and rule.kept else None
            if prefix and count_taken_from(reader, slot, prefix) >= slot.capacity - prefix:
                self.reserved_until = rule.until  # every seat not kept for a group is taken
                self.index += 1
                continue
            documents = seat_documents(reader, slot)
            free = [
                i
                for i in range(slot.capacity)
                if i not in documents or expired_hold(documents[i], self.now)
            ]
            kept_free = False
            if rule is not None:
                kept_free = any(i in rule.kept for i in free)
                free = [i for i in free if i not in rule.kept]
                free = [i for i in free if i in rule.preferred] or free  # the group's own first
            if not free:
                if kept_free:
                    self.reserved_until = rule.until
                self.index += 1
                continue
            seat = self.broker.reserve(slot.ref.slot_id, free, self.rng)
            if seat is None:
                self.rereads += 1
                if self.rereads > MAX_REREADS:
                    raise OverloadedError("this slot is very busy right now; try again shortly")
                continue  # the others' attempts ended: read the slot again
            self.seat = seat
            self.replaces = documents.get(seat)
            return True
        return False

    def stage(self, uow: Any, document: dict[str, Any]) -> None:
        """Claim the chosen seat in the caller's commit: create it, or take over an expired
        hold on it (only if the hold is still that one: a version precondition)."""
        if self.replaces is None:
            uow.create(SEATS, self.seat_id, document)
            return
        cleared = dict.fromkeys(HOLD_FIELDS, DELETE_FIELD)
        for name in ("hold_id", "holder", "held_until"):
            if name in document:
                cleared.pop(name)
        uow.update(SEATS, self.seat_id, cleared | document, if_version=self.replaces.version)

    def release(self) -> None:
        if self.seat is not None and self.index < len(self.candidates):
            self.broker.release(self.slot.ref.slot_id, self.seat)
        self.seat = None
        self.replaces = None
