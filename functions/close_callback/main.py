"""POST /v1/callbacks/{callback_id}/done: the call was made; record its outcome."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json, path_param
from common.services.callbacks import CloseCallbackRequest


@functions_framework.http
@endpoint
def close_callback(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("agent", "admin")
    body = parse_json(request, CloseCallbackRequest)
    callback_id = path_param(request, "/v1/callbacks/")
    service = wiring.callback_service()
    result = idempotent_write(
        request,
        principal,
        "close_callback",
        body,
        lambda idem: service.close(
            actor_of(principal, body.outcome), callback_id, body, wiring.now(), idem
        ),
    )
    return json_response(result.body, result.status)
