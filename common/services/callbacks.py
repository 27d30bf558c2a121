"""The hotline's callback list: who to phone back when no slot fitted.

The PESEL and the phone number live only in the callback document's fields: its id is
random, and neither ever goes into a log line or an event. Agents see the phone (they must
call) and a masked PESEL; the full number is typed again by the agent who books.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Literal

from google.api_core import exceptions as gexc
from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.adapters.firestore_store import CALLBACKS, RPC, get_with_version
from common.domain.errors import (
    CallbackNotFoundError,
    ForbiddenError,
    InvalidStateTransitionError,
    ValidationFailedError,
)
from common.domain.pesel import parse_pesel, pesel_key
from common.domain.rulebook import RuleBook
from common.domain.visits import local_day
from common.services.actions import Subject, audit_action
from common.services.idempotency import IdempotencyScope, StoredResponse

MAX_LISTED = 200
_PHONE = re.compile(r"^\+48 ?\d{3} ?\d{3} ?\d{3}$")
_ID = re.compile(r"^[a-f0-9]{32}$")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class CallbackRequest(_Body):
    pesel: str | None = Field(default=None, pattern=r"^\d{11}$")
    phone: str = Field(max_length=16)
    preferred_postcode: str | None = Field(default=None, pattern=r"^\d{2}-\d{3}$")
    product: str | None = Field(default=None, min_length=1, max_length=40)
    note: str | None = Field(default=None, max_length=500)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        if not _PHONE.match(value):
            raise ValueError("a Polish phone number: +48 and 9 digits")
        return value.replace(" ", "")


class CallbackQuery(_Body):
    status: Literal["open", "done"] = "open"


class CloseCallbackRequest(_Body):
    outcome: Literal["booked", "no_answer", "declined", "not_eligible", "other"]
    note: str | None = Field(default=None, max_length=500)


class CallbackService:
    def __init__(self, client: firestore.Client, rule_book: RuleBook, secret: bytes) -> None:
        self.db = client
        self.rule_book = rule_book
        self.secret = secret

    def request(
        self,
        actor: Any,
        own_pesel: str | None,
        body: CallbackRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        if actor.role == "patient":
            if body.pesel is not None and body.pesel != own_pesel:
                raise ForbiddenError("a patient asks for a callback only for themself")
            raw = own_pesel
        elif actor.role in ("agent", "admin"):
            if body.pesel is None:
                raise ValidationFailedError("name the patient: 'pesel' is required")
            raw = body.pesel
        else:
            raise ForbiddenError(f"this operation is not open to the role '{actor.role}'")
        assert raw is not None
        pesel = parse_pesel(raw, local_day(now))
        if body.product is not None:
            self.rule_book.rules_at(now).catalogue.get(body.product)
        key = pesel_key(pesel, self.secret)
        callback_id = uuid.uuid4().hex
        document = {
            "callback_id": callback_id,
            "status": "open",
            "pesel": pesel.value,
            "patient_key": key,
            "phone": body.phone,
            "preferred_postcode": body.preferred_postcode,
            "product": body.product,
            "note": body.note,
            "created_at": now,
            "created_by_role": actor.role,
            "created_by_uid": actor.uid,
        }
        response = StoredResponse(201, {"callback": self._view(document)})
        batch = self.db.batch()
        batch.create(self.db.collection(CALLBACKS).document(callback_id), document)
        audit_action(
            batch, self.db, actor, "callback.request", [Subject("", key)], now, callback=callback_id
        )
        if idem is not None:
            idem.complete(batch, response)
        batch.commit(**RPC)
        return response

    def list(self, actor: Any, query: CallbackQuery) -> dict[str, Any]:
        if actor.role not in ("agent", "admin"):
            raise ForbiddenError(f"this operation is not open to the role '{actor.role}'")
        found = (
            self.db.collection(CALLBACKS)
            .where(filter=firestore.FieldFilter("status", "==", query.status))
            .stream(**RPC)
        )
        items = sorted((s.to_dict() for s in found), key=lambda d: d["created_at"])
        return {"callbacks": [self._view(d) for d in items[:MAX_LISTED]]}

    def close(
        self,
        actor: Any,
        callback_id: str,
        body: CloseCallbackRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        if actor.role not in ("agent", "admin"):
            raise ForbiddenError(f"this operation is not open to the role '{actor.role}'")
        if not _ID.match(callback_id or ""):
            raise CallbackNotFoundError()
        ref = self.db.collection(CALLBACKS).document(callback_id)
        data, version = get_with_version(ref)
        if data is None or version is None:
            raise CallbackNotFoundError()
        if data["status"] != "open":
            raise InvalidStateTransitionError("the callback is already done")
        changes = {
            "status": "done",
            "outcome": body.outcome,
            "outcome_note": body.note,
            "done_at": now,
            "done_by_uid": actor.uid,
        }
        response = StoredResponse(200, {"callback": self._view(data | changes)})
        batch = self.db.batch()
        batch.update(ref, changes, option=self.db.write_option(last_update_time=version))
        audit_action(
            batch,
            self.db,
            actor,
            "callback.done",
            [Subject("", data["patient_key"])],
            now,
            callback=callback_id,
            outcome=body.outcome,
        )
        if idem is not None:
            idem.complete(batch, response)
        try:
            batch.commit(**RPC)
        except (gexc.FailedPrecondition, gexc.NotFound):
            raise InvalidStateTransitionError("the callback changed meanwhile") from None
        return response

    @staticmethod
    def _view(data: dict[str, Any]) -> dict[str, Any]:
        pesel = str(data.get("pesel") or "")
        created = data.get("created_at")
        done = data.get("done_at")
        return {
            "callback_id": data["callback_id"],
            "status": data["status"],
            "masked_pesel": pesel[:6] + "*" * 5 if len(pesel) == 11 else None,
            "phone": data["phone"],
            "preferred_postcode": data.get("preferred_postcode"),
            "product": data.get("product"),
            "note": data.get("note"),
            "created_at": created.isoformat() if isinstance(created, datetime) else None,
            "outcome": data.get("outcome"),
            "done_at": done.isoformat() if isinstance(done, datetime) else None,
        }
