"""POST /v1/waitlist: be told when a seat appears within a distance, for some products, on some
days. A patient joins themself (or their child under 18); an agent joins a caller (`pesel`
and `reason`). A freed seat is held for the earliest-joined person it fits and offered by SMS
and in the portal (common/services/waitlist.py)."""

import functions_framework

from common import wiring
from common.entry import (
    CHANNEL_OF_ROLE,
    actor_of,
    caller,
    idempotent_write,
    patient_pesel,
    require_method,
    take_write_attempt,
)
from common.http import endpoint, json_response, parse_json
from common.services.waitlist import JoinWaitlist


@functions_framework.http
@endpoint
def join_waitlist(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("patient", "agent", "admin")
    take_write_attempt(principal)
    body = parse_json(request, JoinWaitlist)
    pesel = patient_pesel(principal, body.pesel, body.reason)
    service = wiring.waitlist_service()
    actor = actor_of(principal, body.reason)
    channel = CHANNEL_OF_ROLE[principal.role]
    result = idempotent_write(
        request,
        principal,
        "join_waitlist",
        body,
        lambda idem: service.join(actor, pesel, body, channel, wiring.now(), idem),
    )
    return json_response(result.body, result.status)
