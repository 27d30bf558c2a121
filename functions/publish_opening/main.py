"""PUT /v1/openings/{opening_id}: an admin announces a cohort opening (audited)."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json, path_param
from common.services.waiting_room import OpeningRequest


@functions_framework.http
@endpoint
def publish_opening(request):
    require_method(request, "PUT")
    principal = caller(request)
    principal.require_role("admin")
    body = parse_json(request, OpeningRequest)
    opening_id = path_param(request, "/v1/openings/")
    room = wiring.waiting_room()
    result = idempotent_write(
        request,
        principal,
        "publish_opening",
        body,
        lambda idem: room.publish(actor_of(principal), opening_id, body, wiring.now(), idem),
    )
    return json_response(result.body, result.status)
