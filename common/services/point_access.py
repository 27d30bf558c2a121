"""Who may act on a vaccination point: its own staff, or an admin. Nobody else."""

from __future__ import annotations

from typing import Any, Protocol

from google.cloud import firestore

from common.adapters.firestore_store import POINTS, RPC
from common.domain.calendar import is_point_id
from common.domain.errors import ForbiddenError, PointNotFoundError


class _Actor(Protocol):
    role: str
    point_id: str | None


class _Reader(Protocol):
    def get(self, collection: str, doc_id: str) -> Any: ...


def authorize_point(actor: _Actor, point_id: str) -> None:
    """Refuse before reading anything, so a refusal tells nothing about the point."""
    if actor.role == "admin":
        return
    if actor.role == "staff" and actor.point_id == point_id:
        return
    if actor.role == "staff":
        raise ForbiddenError("point staff may act only on their own point")
    raise ForbiddenError(f"this operation is not open to the role '{actor.role}'")


def read_point(reader: _Reader, point_id: str) -> dict[str, Any]:
    """The point's document, read through a unit of work (so a retried attempt reads it again)."""
    if not is_point_id(point_id):
        raise PointNotFoundError()
    found = reader.get(POINTS, point_id)
    if found is None:
        raise PointNotFoundError()
    return found.data


def load_point(client: firestore.Client, point_id: str) -> dict[str, Any]:
    """The same, straight from a client (services not yet on the unit of work)."""
    if not is_point_id(point_id):
        raise PointNotFoundError()
    snapshot = client.collection(POINTS).document(point_id).get(**RPC)
    if not snapshot.exists:
        raise PointNotFoundError()
    return snapshot.to_dict()
