"""POST /v1/appointments/{appointment_id}/complete: the dose was given (product, lot)."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json, path_param
from common.services.visits import CompleteRequest


@functions_framework.http
@endpoint
def complete_visit(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("staff", "admin")
    body = parse_json(request, CompleteRequest)
    appointment_id = path_param(request, "/v1/appointments/")
    service = wiring.visit_service()
    result = idempotent_write(
        request,
        principal,
        "complete_visit",
        body,
        lambda idem: service.complete(
            actor_of(principal), appointment_id, body, wiring.now(), idem
        ),
    )
    return json_response(wiring.appointment_places().add_places(result.body), result.status)
