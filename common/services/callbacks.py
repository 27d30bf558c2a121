"""The hotline's callback list: who to phone back when no slot fitted.

The phone number lives only in the callback document's fields: its id is random, and it never
goes into a log line or an event. The PESEL is not kept at all: the document names the patient
by their keyed id and shows a masked PESEL (birth date only); the agent who books types the
full number again. Agents see the phone (they must call). A callback expires (Firestore TTL on
`expires_at`) 90 days after it was left if nobody closed it, 30 days after it was closed.

Leaving and closing a callback are units of work (common/services/unit_of_work.py): the
callback, its audit entry and the stored answer of the request's Idempotency-Key are one
commit. Closing reads the callback with its version and updates it only if unchanged; if
another agent closed it meanwhile, the attempt runs again and finds it done.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.adapters.firestore_store import CALLBACKS
from common.domain.errors import (
    CallbackNotFoundError,
    ForbiddenError,
    InvalidStateTransitionError,
    OverloadedError,
    ValidationFailedError,
)
from common.domain.pesel import parse_pesel, pesel_key
from common.domain.rulebook import RuleBook
from common.domain.visits import local_day
from common.services.actions import Subject
from common.services.idempotency import IdempotencyScope, StoredResponse
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner

MAX_LISTED = 200
OPEN_KEEP = timedelta(days=90)
DONE_KEEP = timedelta(days=30)
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
    def __init__(
        self, units: UnitOfWorkRunner, rule_book: RuleBook, secret: bytes, quotas: Any = None
    ) -> None:
        self.units = units
        self.rule_book = rule_book
        self.secret = secret
        self.quotas = quotas

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
        if self.quotas is not None:  # callback requests per patient (quotas.yaml)
            self.quotas.enforce(self.units, self.units.reader(), actor, "callback", key, now)

        def attempt(uow: UnitOfWork) -> StoredResponse:
            callback_id = uuid.uuid4().hex
            document = {
                "callback_id": callback_id,
                "status": "open",
                "masked_pesel": pesel.masked,  # never the whole PESEL: the agent retypes it
                "patient_key": key,
                "phone": body.phone,
                "preferred_postcode": body.preferred_postcode,
                "product": body.product,
                "note": body.note,
                "created_at": now,
                "created_by_role": actor.role,
                "created_by_uid": actor.uid,
                "expires_at": now + OPEN_KEEP,
            }
            uow.create(CALLBACKS, callback_id, document)
            uow.audit(actor, "callback.request", [Subject("", key)], now, callback=callback_id)
            if self.quotas is not None:
                self.quotas.count(uow, "callback", key, now)
            return uow.respond(StoredResponse(201, {"callback": self._view(document)}))

        return self.units.run(
            attempt,
            idem=idem,
            gave_up=lambda: OverloadedError("the callback list is busy; try again shortly"),
        )

    def list(self, actor: Any, query: CallbackQuery) -> dict[str, Any]:
        if actor.role not in ("agent", "admin"):
            raise ForbiddenError(f"this operation is not open to the role '{actor.role}'")
        found = self.units.reader().query(CALLBACKS, ("status", "==", query.status))
        items = sorted((d.data for d in found), key=lambda d: d["created_at"])
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

        def attempt(uow: UnitOfWork) -> StoredResponse:
            found = uow.get(CALLBACKS, callback_id)
            if found is None or found.version is None:
                raise CallbackNotFoundError()
            data = found.data
            if data["status"] != "open":
                raise InvalidStateTransitionError("the callback is already done")
            changes = {
                "status": "done",
                "outcome": body.outcome,
                "outcome_note": body.note,
                "done_at": now,
                "done_by_uid": actor.uid,
                "expires_at": now + DONE_KEEP,
            }
            uow.update(CALLBACKS, callback_id, changes, if_version=found.version)
            uow.audit(
                actor,
                "callback.done",
                [Subject("", data["patient_key"])],
                now,
                callback=callback_id,
                outcome=body.outcome,
            )
            return uow.respond(StoredResponse(200, {"callback": self._view(data | changes)}))

        return self.units.run(
            attempt,
            idem=idem,
            gave_up=lambda: InvalidStateTransitionError("the callback changed meanwhile"),
        )

    @staticmethod
    def _view(data: dict[str, Any]) -> dict[str, Any]:
        masked = data.get("masked_pesel")
        legacy = str(data.get("pesel") or "")  # a callback left before PESELs were masked
        if not masked and len(legacy) == 11:
            masked = legacy[:6] + "*" * 5
        created = data.get("created_at")
        done = data.get("done_at")
        return {
            "callback_id": data["callback_id"],
            "status": data["status"],
            "masked_pesel": masked or None,
            "phone": data["phone"],
            "preferred_postcode": data.get("preferred_postcode"),
            "product": data.get("product"),
            "note": data.get("note"),
            "created_at": created.isoformat() if isinstance(created, datetime) else None,
            "outcome": data.get("outcome"),
            "done_at": done.isoformat() if isinstance(done, datetime) else None,
        }
