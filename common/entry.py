"""What every HTTP entry point does before and after its one service call."""

from __future__ import annotations

from collections.abc import Callable

import flask
from pydantic import BaseModel

from common import wiring
from common.auth import Principal, verify_principal
from common.domain.appointments import Channel
from common.domain.calendar import WARSAW
from common.domain.errors import ForbiddenError, ValidationFailedError
from common.services.booking import Actor
from common.services.idempotency import (
    IdempotencyScope,
    StoredResponse,
    request_fingerprint,
    validate_key,
)

CHANNEL_OF_ROLE: dict[str, Channel] = {
    "patient": "portal",
    "agent": "hotline",
    "staff": "point",
    "admin": "point",
}


class MethodNotAllowedError(ValidationFailedError):
    """This method is not allowed on this path."""

    code = "method_not_allowed"
    http_status = 405


def require_method(request: flask.Request, *methods: str) -> None:
    allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())
    if request.method not in allowed:
        raise MethodNotAllowedError()


def caller(request: flask.Request) -> Principal:
    # Behind API Gateway, Authorization carries the gateway's own token to the function and the
    # caller's ID token moves to X-Forwarded-Authorization; locally the dev gateway passes it
    # unchanged. The function itself is not reachable without the gateway's identity.
    header = request.headers.get("X-Forwarded-Authorization") or request.headers.get(
        "Authorization"
    )
    return verify_principal(header, wiring.settings().project_id)


def actor_of(principal: Principal, reason: str | None = None) -> Actor:
    return Actor(uid=principal.uid, role=principal.role, point_id=principal.point_id, reason=reason)


def patient_pesel(principal: Principal, requested: str | None, reason: str | None) -> str:
    """Whose booking this is: a patient's own; a named patient for agents and staff."""
    if principal.role == "patient":
        assert principal.pesel is not None
        if requested is not None and requested != principal.pesel:
            if not _is_guardian_of(principal.pesel, requested):
                raise ForbiddenError("a patient may book only for themself or their child under 18")
            return requested
        return principal.pesel
    if requested is None:
        raise ValidationFailedError("name the patient: 'pesel' is required for this role")
    if principal.role == "agent" and not reason:
        raise ValidationFailedError("an agent acting for a patient must give a 'reason'")
    return requested


def _is_guardian_of(own_pesel: str, child_pesel: str) -> bool:
    from common.domain.errors import InvalidPeselError
    from common.services.guardians import may_act_for

    service = wiring.booking_service()
    now = wiring.now()
    try:
        child_key = service.patient_key(child_pesel, now)
    except InvalidPeselError:
        return False
    today = now.astimezone(WARSAW).date()
    own_key = service.patient_key(own_pesel, now)
    return may_act_for(wiring.firestore_client(), own_key, child_key, today)


def own_patient_key(principal: Principal) -> str | None:
    if principal.role != "patient" or principal.pesel is None:
        return None
    return wiring.booking_service().patient_key(principal.pesel, wiring.now())


def idempotent_write(
    request: flask.Request,
    principal: Principal,
    operation: str,
    body: BaseModel,
    action: Callable[[IdempotencyScope], StoredResponse],
) -> StoredResponse:
    key = validate_key(request.headers.get("Idempotency-Key"))
    fingerprint = request_fingerprint(operation, {"path": request.path, **body.model_dump()})
    return wiring.idempotency().run(
        caller_uid=principal.uid, key=key, fingerprint=fingerprint, now=wiring.now(), action=action
    )
