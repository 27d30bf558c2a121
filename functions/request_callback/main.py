"""POST /v1/callbacks: leave a patient and a phone number for a call back."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json
from common.services.callbacks import CallbackRequest


@functions_framework.http
@endpoint
def request_callback(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("patient", "agent", "admin")
    body = parse_json(request, CallbackRequest)
    service = wiring.callback_service()
    result = idempotent_write(
        request,
        principal,
        "request_callback",
        body,
        lambda idem: service.request(
            actor_of(principal, body.note), principal.pesel, body, wiring.now(), idem
        ),
    )
    return json_response(result.body, result.status)
