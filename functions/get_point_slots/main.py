"""GET /v1/points/{point_id}/slots: one point's calendar of free slots (one document read)."""

import functions_framework

from common import wiring
from common.entry import caller, require_method
from common.http import endpoint, json_response, parse_query, path_param
from common.services.search import PointSlotsQuery


@functions_framework.http
@endpoint
def get_point_slots(request):
    require_method(request, "GET")
    caller(request)
    query = parse_query(request, PointSlotsQuery)
    point_id = path_param(request, "/v1/points/")
    return json_response(wiring.search_service().point_slots(point_id, query, wiring.now()))
