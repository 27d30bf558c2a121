"""POST /v1/holds/{hold_id}/book: confirm a hold into the booking (FHIR $book)."""

import functions_framework

from common import wiring
from common.api_models import CancelRequest
from common.entry import (
    actor_of,
    caller,
    idempotent_write,
    own_patient_key,
    require_method,
    take_write_attempt,
)
from common.http import endpoint, json_response, parse_json, path_param


@functions_framework.http
@endpoint
def book_hold(request):
    require_method(request, "POST")
    principal = caller(request)
    take_write_attempt(principal)
    principal.require_role("patient", "agent", "admin")
    body = parse_json(request, CancelRequest)
    hold_id = path_param(request, "/v1/holds/")
    holds = wiring.hold_service()
    actor = actor_of(principal, body.reason)
    result = idempotent_write(
        request,
        principal,
        "book_hold",
        body,
        lambda idem: holds.book(hold_id, actor, own_patient_key(principal), wiring.now(), idem),
    )
    return json_response(result.body, result.status)
