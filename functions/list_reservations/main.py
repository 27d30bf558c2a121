"""GET /v1/points/{point_id}/reservations: the point's reservations, newest first, each with
its state (active, expired, cancelled) (the point's staff, admins)."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, require_method
from common.http import endpoint, json_response, path_param


@functions_framework.http
@endpoint
def list_reservations(request):
    require_method(request, "GET")
    principal = caller(request)
    principal.require_role("staff", "admin")
    point_id = path_param(request, "/v1/points/")
    service = wiring.reservation_service()
    return json_response(service.listing(actor_of(principal), point_id, wiring.now()))
