"""A patient's children under 18, whom they may book for (GET /v1/me/dependents)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.cloud import firestore

from common.domain.visits import local_day, patient_summary
from common.services.actions import patients_by_key
from common.services.booking import BookingService
from common.services.guardians import children_of


def dependents_of(
    client: firestore.Client, booking: BookingService, guardian_key: str, now: datetime
) -> dict[str, Any]:
    today = local_day(now)
    keys = children_of(client, guardian_key, today)
    people = patients_by_key(client, keys, today)
    return {
        "dependents": [
            {
                "patient": patient_summary(people.get(key)),
                "appointments": [a.to_api() for a in booking.appointments_of(key)],
            }
            for key in keys
        ]
    }
