"""GET /v1/openings/{opening_id}/queue: where a ticket stands (X-Queue-Ticket)."""

import functions_framework

from common import wiring
from common.entry import caller, own_patient_key, queue_ticket, require_method
from common.http import endpoint, json_response, path_param


@functions_framework.http
@endpoint
def get_queue_position(request):
    require_method(request, "GET")
    principal = caller(request)
    principal.require_role("patient", "agent")
    opening_id = path_param(request, "/v1/openings/")
    result = wiring.queue_access().position(
        principal.role, own_patient_key(principal), opening_id, queue_ticket(request), wiring.now()
    )
    return json_response(result, headers={"Cache-Control": "no-store"})
