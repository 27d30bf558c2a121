"""What every HTTP entry point does before and after its one service call."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import flask
from pydantic import BaseModel

from common import wiring
from common.auth import Principal, verify_principal
from common.domain.appointments import Channel
from common.domain.calendar import WARSAW
from common.domain.errors import ForbiddenError, ValidationFailedError
from common.services.booking import Actor, BookAppointment
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
    """Who calls, from the one header that carries the caller's ID token (docs/identity.md).

    Behind API Gateway, Authorization carries the gateway's own Google-signed token (consumed
    by Cloud Run's IAM check: only the gateway may invoke a public function) and the caller's
    ID token, already checked at the edge, is in X-Forwarded-Authorization, which the gateway
    always sets itself (a client's own is overwritten). The dev gateway does the same. So when
    X-Forwarded-Authorization is present it is the only header read, even if empty or wrong;
    Authorization is read only when a function is called directly (tests, a local client).
    Either way the token is fully verified here: the header says which token, not who."""
    if "X-Forwarded-Authorization" in request.headers:
        header = request.headers.get("X-Forwarded-Authorization")
    else:
        header = request.headers.get("Authorization")
    return verify_principal(header, wiring.settings().project_id)


def quota_identity(principal: Principal) -> str:
    """Whose quota a request uses: the signed-in account (a keyed hash of its uid)."""
    return hashlib.sha256(f"quota\x00{principal.uid}".encode()).hexdigest()[:32]


def take_write_attempt(principal: Principal) -> None:
    """Count a booking, move, cancel or hold request in memory before anything is read: a
    script that retries at once on every refusal gets a 429 that costs nothing (docs/
    fair-opening.md, kind `write_attempt`)."""
    wiring.local_quotas().take("write_attempt", quota_identity(principal), wiring.now())


def queue_ticket(request: flask.Request) -> str | None:
    """The waiting room's ticket, when the caller holds one (X-Queue-Ticket)."""
    from common.domain.waiting_room import validate_ticket_text

    return validate_ticket_text(request.headers.get("X-Queue-Ticket"))


def actor_of(principal: Principal, reason: str | None = None) -> Actor:
    return Actor(
        uid=principal.uid,
        role=principal.role,
        point_id=principal.point_id,
        reason=reason,
        supervisor=principal.supervisor,
    )


def booking_command(
    request: flask.Request, principal: Principal
) -> tuple[BaseModel, BookAppointment]:
    """A booking request (POST /v1/appointments or /v1/holds: the same body, the same checks)
    as its body and the command that books or holds it. The write attempt is counted first."""
    from common.api_models import BookRequest
    from common.http import parse_json

    take_write_attempt(principal)
    body = parse_json(request, BookRequest)
    command = BookAppointment(
        pesel=patient_pesel(principal, body.pesel, body.reason),
        slot_id=body.slot_id,
        second_slot_id=body.second_slot_id,
        channel=CHANNEL_OF_ROLE[principal.role],
        actor=actor_of(principal, body.reason),
        queue_ticket=queue_ticket(request),
    )
    return body, command


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
