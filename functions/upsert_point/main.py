"""PUT /v1/points/{point_id}: an admin creates or updates a point; the directory follows."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json, path_param
from common.services.points_admin import PointRequest


@functions_framework.http
@endpoint
def upsert_point(request):
    require_method(request, "PUT")
    principal = caller(request)
    principal.require_role("admin")
    body = parse_json(request, PointRequest)
    point_id = path_param(request, "/v1/points/")
    service = wiring.points_admin_service()
    result = idempotent_write(
        request,
        principal,
        "upsert_point",
        body,
        lambda idem: service.upsert(actor_of(principal), point_id, body, wiring.now(), idem),
    )
    return json_response(result.body, result.status)
