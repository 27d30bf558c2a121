"""The hotline's look-up: one patient, named by a full PESEL, and an audit entry for it.

Only a whole, valid PESEL finds a patient: no partial numbers, no names, so an agent cannot
browse the register. Reading a patient's data is itself an audited action: the look-up is a
unit of work (common/services/unit_of_work.py) whose only write is its audit entry, committed
after the reads it records.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.adapters.firestore_store import APPOINTMENTS, REFERRALS, VACCINATIONS
from common.domain.appointments import Appointment
from common.domain.errors import ForbiddenError, OverloadedError
from common.domain.pesel import parse_pesel, pesel_key
from common.domain.visits import local_day, patient_summary
from common.services.actions import Subject
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner


class LookupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    pesel: str = Field(pattern=r"^\d{11}$")
    reason: str = Field(min_length=3, max_length=500)


def _busy() -> Exception:
    return OverloadedError("the patient register is busy right now; try again shortly")


class HotlineService:
    def __init__(self, units: UnitOfWorkRunner, secret: bytes, quotas: Any = None) -> None:
        self.units = units
        self.secret = secret
        # An agent's look-ups per minute and day (common/domain/quotas.yaml): an agent is
        # not a search engine of the register; a supervisor (claim `supervisor`) has no limit.
        self.quotas = quotas

    def _agent_identity(self, actor: Any) -> str:
        return hashlib.sha256(f"quota\x00{actor.uid}".encode()).hexdigest()[:32]

    def lookup(self, actor: Any, body: LookupRequest, now: datetime) -> dict[str, Any]:
        if actor.role not in ("agent", "admin"):
            raise ForbiddenError(f"this operation is not open to the role '{actor.role}'")
        pesel = parse_pesel(body.pesel, local_day(now))
        key = pesel_key(pesel, self.secret)
        limited = self.quotas is not None and not getattr(actor, "supervisor", False)
        agent = self._agent_identity(actor)
        if limited:
            self.quotas.enforce(self.units, self.units.reader(), actor, "lookup", agent, now)

        def attempt(uow: UnitOfWork) -> dict[str, Any]:
            referrals = [
                d.data["referral"] for d in uow.query(REFERRALS, ("patient_key", "==", key))
            ]
            appointments = sorted(
                (
                    Appointment.model_validate(d.data)
                    for d in uow.query(APPOINTMENTS, ("patient_key", "==", key))
                ),
                key=lambda a: (a.starts_at, a.dose_number),
            )
            vaccinations = [d.data for d in uow.query(VACCINATIONS, ("patient_key", "==", key))]
            # The patient is a subject even with no appointment: the entry names who was seen.
            uow.audit(actor, "patient.lookup", [*appointments, Subject("", key)], now)
            if limited:
                self.quotas.count(uow, "lookup", agent, now)
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

        return self.units.run(attempt, gave_up=_busy)
