"""GET /v1/points/{point_id}/slots: one point's calendar of free slots (one document read)."""

import functions_framework

from common import wiring
from common.entry import caller, require_method
from common.http import endpoint, json_response, parse_query, path_param
from common.services.reservations import birth_date_of
from common.services.search import PointSlotsQuery


@functions_framework.http
@endpoint
def get_point_slots(request):
    require_method(request, "GET")
    principal = caller(request)
    query = parse_query(request, PointSlotsQuery)
    point_id = path_param(request, "/v1/points/")
    now = wiring.now()
    # A patient sees the seats reserved for their own group (common/services/reservations.py).
    found = wiring.search_service().point_slots(point_id, query, now, birth_date_of(principal, now))
    return json_response(found)
