"""A point's calendar in the in-memory store, for pure unit tests of the staff calendar and
SDS sync services (tests/support/fake_store.py is the store and the unit of work).

What the services need besides the store is faked here in its simplest honest form: the
folder applies pending free-seat deltas to the availability documents, search answers with
one fixed offer and remembers being asked, booking's calendar cache remembers what was
invalidated. `RacingUnits` lets a test commit "someone else's" write just before the
service's own commit: the moment a real race would hit.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from google.cloud.firestore_v1 import DELETE_FIELD
from google.cloud.firestore_v1.transforms import Sentinel

from common.adapters.firestore_store import (
    ACTIVE_DOSES,
    APPOINTMENTS,
    AUDIT_LOG,
    AVAILABILITY,
    AVAILABILITY_DELTAS,
    PATIENTS,
    POINTS,
    SEATS,
)
from common.domain.appointments import Appointment, active_dose_lock_id
from common.domain.calendar import SlotRef
from common.domain.pesel import make_pesel
from common.domain.rulebook import load_rule_book
from common.services.seats import seat_document
from tests.support.fake_store import FakeFirestore, FakeUnitOfWork, FakeUnitsOfWork

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # a Wednesday
MONDAY = date(2026, 12, 14)  # the week after next
POINT = "pt-00001"
OTHER_POINT = "pt-00002"
RULES = load_rule_book()


def _is_delete_field(value: Any) -> bool:
    # The fake store copies the sentinel it does not know: recognise the copy.
    return isinstance(value, Sentinel) and value.description == DELETE_FIELD.description


def _drop_deleted_fields(data: dict[str, Any]) -> None:
    for name, value in list(data.items()):
        if _is_delete_field(value):
            del data[name]
        elif isinstance(value, dict):
            _drop_deleted_fields(value)


@dataclass
class RacingUnits(FakeUnitsOfWork):
    """FakeUnitsOfWork whose next commits are each preceded by one racer's write.

    It also applies `DELETE_FIELD` (which FakeFirestore stores as a value): the staff
    calendar deletes `blocked`, `blocked_cap` and `tmpl` with it."""

    races: list[Callable[[], None]] = field(default_factory=list)

    def begin(self, idem: Any = None) -> FakeUnitOfWork:
        uow = super().begin(idem)
        own_commit = uow.commit

        def commit() -> None:
            if self.races:
                self.races.pop(0)()
            own_commit()
            for _, key, _, _ in uow.writes:
                found = self.store.documents.get(key)
                if found is not None:
                    _drop_deleted_fields(found[0])

        uow.commit = commit  # type: ignore[method-assign]
        return uow


class FakeFolder:
    """AvailabilityFolder over the fake store: pending deltas applied, each once."""

    def __init__(self, store: FakeFirestore) -> None:
        self.store = store
        self.folded: list[str | None] = []

    def fold_point(self, point_id: str) -> None:
        self.folded.append(point_id)
        self._fold(point_id)

    def fold_all(self) -> None:
        self.folded.append(None)
        self._fold(None)

    def _fold(self, point_id: str | None) -> None:
        for delta_id, delta in self.store.collection(AVAILABILITY_DELTAS).items():
            if point_id is not None and point_id not in delta["point_ids"]:
                continue
            for change in delta["changes"]:
                document = self.store.data(AVAILABILITY, change["point_id"])
                entry = document["days"][change["day"]][change["slot"]]
                entry["free"] = entry.get("free", 0) + change["delta"]
                self.store.put(AVAILABILITY, change["point_id"], document)
            del self.store.documents[(AVAILABILITY_DELTAS, delta_id)]


class FakeView:
    def __init__(self) -> None:
        self.invalidated = 0

    def invalidate(self) -> None:
        self.invalidated += 1


class FakeSearch:
    """Search's answer: one free slot at OTHER_POINT (never the slot that was lost)."""

    def __init__(self) -> None:
        self.view = FakeView()
        self.queries: list[Any] = []

    def search(self, query: Any, now: datetime) -> dict[str, Any]:
        self.queries.append(query)
        offer = SlotRef(OTHER_POINT, query.date_from, time(12, 0), query.product)
        return {
            "items": [
                {
                    "distance_km": 4.2,
                    "earliest_slots": [
                        {
                            "slot_id": offer.slot_id,
                            "point_id": OTHER_POINT,
                            "starts_at": offer.starts_at.isoformat(),
                        }
                    ],
                }
            ]
        }


class FakeCalendars:
    def __init__(self) -> None:
        self.invalidated: list[str] = []

    def invalidate(self, point_id: str) -> None:
        self.invalidated.append(point_id)


@dataclass(frozen=True)
class Staff:
    uid: str = "staff-1"
    role: str = "staff"
    point_id: str | None = POINT
    reason: str | None = None


def add_point(store: FakeFirestore, point_id: str = POINT, products=("jcovden", "comirnaty")):
    store.put(
        POINTS,
        point_id,
        {"point_id": point_id, "products": list(products), "lat": 50.06, "lon": 19.94},
    )


def add_slots(store: FakeFirestore, slots: list[tuple[SlotRef, int]]) -> None:
    """Slots of the given capacity, all seats free (merged into the points' documents)."""
    for ref, capacity in slots:
        document = store.data(AVAILABILITY, ref.point_id) or {"point_id": ref.point_id, "days": {}}
        document["days"].setdefault(ref.day_key, {})[ref.slot_key] = {
            "cap": capacity,
            "free": capacity,
        }
        store.put(AVAILABILITY, ref.point_id, document)


def slot_entry(store: FakeFirestore, ref: SlotRef) -> dict[str, Any]:
    document = store.data(AVAILABILITY, ref.point_id) or {}
    return document["days"][ref.day_key][ref.slot_key]


def add_patient(store: FakeFirestore, serial: int, born: date = date(1980, 5, 17)) -> str:
    key = f"patient-{serial:04d}"
    store.put(PATIENTS, key, {"pesel": make_pesel(born, "F", serial)})
    return key


def book(
    store: FakeFirestore,
    ref: SlotRef,
    index: int,
    patient_key: str,
    *,
    appointment_id: str | None = None,
    dose_number: int = 1,
    linked_appointment_id: str | None = None,
    series_id: str | None = None,
) -> Appointment:
    """A booking as its commit leaves it, with its free-seat change already folded."""
    appointment = Appointment(
        appointment_id=appointment_id or hashlib.md5(ref.seat_id(index).encode()).hexdigest(),
        series_id=series_id or f"series-{patient_key}",
        patient_key=patient_key,
        referral_id=f"ref-{patient_key}",
        dose_kind="primary",
        dose_number=dose_number,
        product=ref.product,
        point_id=ref.point_id,
        slot_id=ref.slot_id,
        seat_id=ref.seat_id(index),
        starts_at=ref.starts_at,
        day=ref.day,
        channel="portal",
        linked_appointment_id=linked_appointment_id,
        booked_by_role="patient",
        created_at=NOW,
        updated_at=NOW,
    )
    store.put(APPOINTMENTS, appointment.appointment_id, appointment.to_document())
    store.put(SEATS, appointment.seat_id, seat_document(appointment, NOW))
    lock = active_dose_lock_id(patient_key, "primary", dose_number)
    store.put(
        ACTIVE_DOSES,
        lock,
        {"appointment_id": appointment.appointment_id, "patient_key": patient_key},
    )
    document = store.data(AVAILABILITY, ref.point_id)
    document["days"][ref.day_key][ref.slot_key]["free"] -= 1
    store.put(AVAILABILITY, ref.point_id, document)
    return appointment


def everything(store: FakeFirestore) -> dict[tuple[str, str], dict[str, Any]]:
    """Every document's data (not its version), to compare before and after."""
    return {key: copy.deepcopy(data) for key, (data, _) in store.documents.items()}


def audits(store: FakeFirestore) -> list[dict[str, Any]]:
    return list(store.collection(AUDIT_LOG).values())


def published(store: FakeFirestore, event_type: str) -> list[Any]:
    return [e for e in store.published if e.event_type == event_type]
