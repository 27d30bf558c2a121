"""Helpers of the point, hotline and authorisation tests: a small world, snapshots, reads."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from google.cloud import firestore

from common import clock
from common.adapters.firestore_store import (
    ACTIVE_DOSES,
    APPOINTMENTS,
    AUDIT_LOG,
    AVAILABILITY,
    GUARDIANS,
    OUTBOX,
    SEATS,
)
from common.config import Settings
from common.domain.appointments import Appointment, active_dose_lock_id
from common.domain.calendar import WARSAW, PointCalendar, SlotRef
from common.domain.pesel import parse_pesel, pesel_key
from common.services.availability import AvailabilityFolder
from common.services.directory import write_points
from common.services.guardians import guardian_doc_id, guardian_document
from tests.support.stack import Api, add_patient, add_point, firestore_client, today_warsaw

POINT_X = "pt-00001"
POINT_Y = "pt-00002"
POINT_Z = "pt-00003"  # near X: where displaced patients are offered alternatives


def key_of(pesel: str) -> str:
    return pesel_key(parse_pesel(pesel, today_warsaw()), Settings.from_env().pesel_hash_key)


def sid(point: str, day: date, start: time, product: str) -> str:
    return SlotRef(point, day, start, product).slot_id


def snapshot(db: firestore.Client) -> dict[str, dict[str, Any]]:
    """Every document of every collection, ignoring nothing."""
    found: dict[str, dict[str, Any]] = {}
    for collection in db.collections():
        for doc in collection.stream():
            found[doc.reference.path] = doc.to_dict()
    return found


def events(db: firestore.Client, event_type: str | None = None) -> list[dict[str, Any]]:
    found = []
    for doc in db.collection(OUTBOX).stream():
        data = doc.to_dict()
        if event_type is None or data["event_type"] == event_type:
            found.append(json.loads(data["payload"]) | {"_create_time": doc.create_time})
    return found


def audits(db: firestore.Client, action: str | None = None) -> list[dict[str, Any]]:
    found = []
    for doc in db.collection(AUDIT_LOG).stream():
        data = doc.to_dict()
        if action is None or data["action"] == action:
            found.append(data | {"_create_time": doc.create_time})
    return found


def update_time(db: firestore.Client, collection: str, doc_id: str) -> datetime:
    return db.collection(collection).document(doc_id).get().update_time


def slot_state(db: firestore.Client, slot_id: str) -> dict[str, Any] | None:
    """A slot as search shows it, once the folder has caught up (it runs in the background
    in production: common/services/availability.py)."""
    AvailabilityFolder(db).fold_all()
    ref = SlotRef.parse(slot_id)
    document = db.collection(AVAILABILITY).document(ref.point_id).get().to_dict() or {}
    return (document.get("days") or {}).get(ref.day_key, {}).get(ref.slot_key)


def check_seat_invariants(db: firestore.Client, point_id: str) -> None:
    """No patient holds a seat index >= capacity; free = capacity - patients' seats (once the
    folder has caught up)."""
    AvailabilityFolder(db).fold_all()
    document = db.collection(AVAILABILITY).document(point_id).get().to_dict()
    calendar = PointCalendar.from_document(point_id, document)
    seats = [s.to_dict() | {"_id": s.id} for s in db.collection(SEATS).stream()]
    patient_seats = [s for s in seats if not s.get("blocker")]
    appointments = {s.id: s.to_dict() for s in db.collection(APPOINTMENTS).stream() if s.to_dict()}
    for seat in patient_seats:
        holder = appointments[seat["appointment_id"]]
        assert holder["seat_id"] == seat["_id"]
        assert holder["status"] in ("booked", "completed", "no_show"), holder["status"]
    booked = [a for a in appointments.values() if a["status"] == "booked"]
    assert sorted(a["seat_id"] for a in booked) == sorted(
        s["_id"] for s in patient_seats if appointments[s["appointment_id"]]["status"] == "booked"
    )
    for ref, slot in calendar.slots.items():
        mine = [s for s in patient_seats if s["slot_id"] == ref.slot_id]
        for seat in mine:
            index = int(seat["_id"].rsplit("_", 1)[1])
            assert index < slot.capacity, (seat["_id"], slot.capacity)
        assert slot.free == slot.capacity - len(mine), (ref.slot_id, slot, len(mine))


@dataclass
class World:
    """Three points (X and Z near each other in Kraków, Y in Warsaw), patients and staff."""

    project: str
    api: Api
    db: firestore.Client
    day: date
    pesels: list[str] = field(default_factory=list)

    def token(self, who: str) -> str:
        if who.startswith("patient-"):
            index = int(who.split("-")[1])
            return self.api.token(who, "patient", pesel=self.pesels[index])
        if who == "staff-x":
            return self.api.token("staff-x", "staff", point_id=POINT_X)
        if who == "staff-y":
            return self.api.token("staff-y", "staff", point_id=POINT_Y)
        if who == "agent":
            return self.api.token("agent-1", "agent")
        if who == "admin":
            return self.api.token("admin-1", "admin")
        raise ValueError(who)

    def call(self, method: str, path: str, who: str | None, **kwargs: Any):
        token = self.token(who) if who else None
        return self.api.call(method, path, token=token, **kwargs)

    def write(self, method: str, path: str, who: str | None, body: Any = None, **kwargs: Any):
        return self.call(method, path, who, body=body, key=uuid.uuid4().hex, **kwargs)

    def book(self, patient: int, slot_id: str, **extra: Any):
        return self.write(
            "POST", "/v1/appointments", f"patient-{patient}", {"slot_id": slot_id, **extra}
        )

    def appointment(self, appointment_id: str) -> dict[str, Any]:
        return self.db.collection(APPOINTMENTS).document(appointment_id).get().to_dict()


def make_world(project: str, patients: int = 4, slots: dict[str, list] | None = None) -> World:
    db = firestore_client(project)
    day = today_warsaw() + timedelta(days=3)
    default = {
        POINT_X: [
            (day, time(9, 0), "jcovden", 3),
            (day, time(10, 0), "comirnaty", 2),
            (day + timedelta(days=35), time(10, 0), "comirnaty", 3),
        ],
        POINT_Y: [(day, time(9, 0), "jcovden", 2)],
        POINT_Z: [
            (day, time(12, 0), "jcovden", 5),
            (day + timedelta(days=1), time(8, 0), "jcovden", 1),
        ],
    }
    plan = slots or default
    products = ("comirnaty", "jcovden", "comirnaty_paediatric")
    points = [
        add_point(db, point_id, lat=lat, lon=lon, products=products, slots=plan.get(point_id, []))
        for point_id, lat, lon in (
            (POINT_X, 50.0614, 19.9366),
            (POINT_Y, 52.2297, 21.0122),
            (POINT_Z, 50.0700, 19.9500),
        )
    ]
    write_points(db, points)  # add_point's directory holds only its own point
    pesels = [add_patient(db, serial=i) for i in range(patients)]
    return World(project, Api(project), db, day, pesels)


def add_child(db: firestore.Client, guardian_pesel: str, *, born: date, serial: int = 77) -> str:
    """A child with a referral of their own, and the guardian relation."""
    child = add_patient(db, born=born, sex="M", serial=serial)
    parsed = parse_pesel(child, today_warsaw())
    guardian_key, child_key = key_of(guardian_pesel), key_of(child)
    db.collection(GUARDIANS).document(guardian_doc_id(guardian_key, child_key)).set(
        guardian_document(guardian_key, child_key, parsed.birth_date)
    )
    return child


def seed_visit(
    db: firestore.Client,
    pesel: str,
    *,
    point: str = POINT_X,
    day: date,
    start: time = time(9, 0),
    product: str = "jcovden",
    dose_number: int = 1,
    seat: int = 0,
    linked: str | None = None,
    kind: str = "primary",
) -> str:
    """A booked visit written directly (for days a booking could not pick: today, the past)."""
    key = key_of(pesel)
    ref = SlotRef(point, day, start, product)
    appointment_id = uuid.uuid4().hex
    now = clock.now().astimezone(WARSAW)
    appointment = Appointment(
        appointment_id=appointment_id,
        series_id=appointment_id,
        patient_key=key,
        referral_id=f"ref-{key[:8]}-{kind}",
        dose_kind=kind,
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
        created_at=now,
        updated_at=now,
    )
    batch = db.batch()
    batch.set(db.collection(APPOINTMENTS).document(appointment_id), appointment.to_document())
    batch.set(
        db.collection(SEATS).document(ref.seat_id(seat)),
        {"appointment_id": appointment_id, "slot_id": ref.slot_id, "point_id": point},
    )
    batch.set(
        db.collection(ACTIVE_DOSES).document(
            active_dose_lock_id(key, kind, dose_number)  # type: ignore[arg-type]
        ),
        {"appointment_id": appointment_id, "patient_key": key},
    )
    batch.commit()
    return appointment_id


__all__ = ["add_point", "firestore_client"]
