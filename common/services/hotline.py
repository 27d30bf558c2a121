"""The hotline's look-up: one patient, named by a full PESEL, and an audit entry for it.

Only a whole, valid PESEL finds a patient: no partial numbers, no names, so an agent cannot
browse the register. Reading a patient's data is itself an audited action: the look-up
writes its audit entry and nothing else.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field

from common.adapters.firestore_store import AUDIT_LOG, REFERRALS, RPC, VACCINATIONS
from common.domain.errors import ForbiddenError
from common.domain.pesel import parse_pesel, pesel_key
from common.domain.visits import local_day, patient_summary
from common.services import audit
from common.services.booking import BookingService


class LookupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    pesel: str = Field(pattern=r"^\d{11}$")
    reason: str = Field(min_length=3, max_length=500)


class HotlineService:
    def __init__(self, client: firestore.Client, booking: BookingService, secret: bytes) -> None:
        self.db = client
        self.booking = booking
        self.secret = secret

    def lookup(self, actor: Any, body: LookupRequest, now: datetime) -> dict[str, Any]:
        if actor.role not in ("agent", "admin"):
            raise ForbiddenError(f"this operation is not open to the role '{actor.role}'")
        pesel = parse_pesel(body.pesel, local_day(now))
        key = pesel_key(pesel, self.secret)
        referrals = [
            s.to_dict()["referral"]
            for s in self.db.collection(REFERRALS)
            .where(filter=firestore.FieldFilter("patient_key", "==", key))
            .stream(**RPC)
        ]
        appointments = self.booking.appointments_of(key)
        vaccinations = [
            s.to_dict()
            for s in self.db.collection(VACCINATIONS)
            .where(filter=firestore.FieldFilter("patient_key", "==", key))
            .stream(**RPC)
        ]
        entry = audit.audit_entry(actor, "patient.lookup", appointments, now)
        entry["patient_keys"] = [key]
        self.db.collection(AUDIT_LOG).document(uuid.uuid4().hex).create(entry, **RPC)
        return {
            "patient": patient_summary(pesel),
            "referrals": sorted(referrals, key=lambda r: r.get("valid_from", "")),
            "appointments": [a.to_api() for a in appointments],
            "vaccinations": [
                {
                    "vaccination_id": v.get("vaccination_id"),
                    "product": v["dose"]["product_code"],
                    "dose_kind": v["dose"]["kind"],
                    "dose_number": v["dose"]["dose_number"],
                    "given_on": v["dose"]["given_on"],
                    "point_id": v.get("point_id"),
                    "lot_number": v.get("lot_number"),
                    "leftover_dose": bool(v.get("leftover_dose")),
                }
                for v in sorted(vaccinations, key=lambda v: v["dose"]["given_on"])
            ],
        }
