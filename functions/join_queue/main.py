"""POST /v1/openings/{opening_id}/queue: take a place in an opening's waiting room.

A patient joins for themself; an agent joins the caller at the moment of the call (the PESEL
in the body, with a reason). Joining again keeps the same place (a new ticket, never a second
place), so no Idempotency-Key is needed.
"""

import functions_framework

from common import wiring
from common.api_models import QueueJoinRequest
from common.entry import CHANNEL_OF_ROLE, actor_of, caller, patient_pesel, require_method
from common.http import endpoint, json_response, parse_json, path_param


@functions_framework.http
@endpoint
def join_queue(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("patient", "agent")
    body = parse_json(request, QueueJoinRequest)
    opening_id = path_param(request, "/v1/openings/")
    now = wiring.now()
    pesel = patient_pesel(principal, body.pesel, body.reason)
    result = wiring.queue_access().join(
        actor_of(principal, body.reason), opening_id, pesel, CHANNEL_OF_ROLE[principal.role], now
    )
    return json_response(result)
