"""POST /v1/openings/{opening_id}/rate: admit faster or slower from now on (admin, audited)."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json, path_param
from common.services.waiting_room import RateRequest


@functions_framework.http
@endpoint
def set_opening_rate(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("admin")
    body = parse_json(request, RateRequest)
    opening_id = path_param(request, "/v1/openings/")
    room = wiring.waiting_room()
    result = idempotent_write(
        request,
        principal,
        "set_opening_rate",
        body,
        lambda idem: room.set_rate(actor_of(principal), opening_id, body, wiring.now(), idem),
    )
    return json_response(result.body, result.status)
