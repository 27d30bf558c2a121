"""Who may book for whom: a parent (guardian) for their child under 18.

`guardians/{guardian_key}_{child_key}` (both keyed hashes of PESELs, so no PESEL is in an id)
says that the first may act for the second; P1's family data fills it in production, the
demo seed locally. The document carries the child's birth date, so that the right ends on
the 18th birthday without anyone having to remove it.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from google.cloud import firestore

from common.adapters.firestore_store import GUARDIANS, RPC
from common.domain.eligibility import age_on

ADULT_AGE = 18


def guardian_doc_id(guardian_key: str, child_key: str) -> str:
    return f"{guardian_key}_{child_key}"


def guardian_document(guardian_key: str, child_key: str, child_birth_date: date) -> dict[str, Any]:
    return {
        "guardian_key": guardian_key,
        "child_key": child_key,
        "child_birth_date": child_birth_date.isoformat(),
        "relation": "parent",
    }


def is_minor_record(data: dict[str, Any] | None, today: date) -> bool:
    if not data:
        return False
    try:
        born = date.fromisoformat(str(data["child_birth_date"]))
        return born <= today and age_on(born, today) < ADULT_AGE
    except (KeyError, ValueError):
        return False


def may_act_for(client: firestore.Client, guardian_key: str, child_key: str, today: date) -> bool:
    if guardian_key == child_key:
        return True
    snapshot = (
        client.collection(GUARDIANS).document(guardian_doc_id(guardian_key, child_key)).get(**RPC)
    )
    return snapshot.exists and is_minor_record(snapshot.to_dict(), today)


def children_of(client: firestore.Client, guardian_key: str, today: date) -> list[str]:
    """The keys of the guardian's children who are minors today."""
    query = client.collection(GUARDIANS).where(
        filter=firestore.FieldFilter("guardian_key", "==", guardian_key)
    )
    return sorted(
        s.to_dict()["child_key"] for s in query.stream(**RPC) if is_minor_record(s.to_dict(), today)
    )
