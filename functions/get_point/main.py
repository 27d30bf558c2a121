"""GET /v1/points/{point_id}: a vaccination point's public details (name, address, products)."""

import functions_framework

from common import wiring
from common.entry import caller, require_method
from common.http import endpoint, json_response, path_param


@functions_framework.http
@endpoint
def get_point(request):
    require_method(request, "GET")
    caller(request)
    point_id = path_param(request, "/v1/points/")
    return json_response(wiring.points_admin_service().get(point_id))
