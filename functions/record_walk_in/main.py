"""POST /v1/points/{point_id}/walk-ins: a vaccination without a slot (or a leftover dose)."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json, path_param
from common.services.visits import WalkInRequest


@functions_framework.http
@endpoint
def record_walk_in(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("staff", "admin")
    body = parse_json(request, WalkInRequest)
    point_id = path_param(request, "/v1/points/")
    service = wiring.visit_service()
    result = idempotent_write(
        request,
        principal,
        "record_walk_in",
        body,
        lambda idem: service.walk_in(
            actor_of(principal, body.reason), point_id, body, wiring.now(), idem
        ),
    )
    return json_response(result.body, result.status)
