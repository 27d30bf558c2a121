"""GET /v1/points/{point_id}/visits?date=: the day's visits, patients shown masked."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, require_method
from common.http import endpoint, json_response, parse_query, path_param
from common.services.visits import VisitsQuery


@functions_framework.http
@endpoint
def list_point_visits(request):
    require_method(request, "GET")
    principal = caller(request)
    principal.require_role("staff", "admin")
    query = parse_query(request, VisitsQuery)
    point_id = path_param(request, "/v1/points/")
    result = wiring.visit_service().day_list(
        actor_of(principal), point_id, query.date, wiring.now()
    )
    return json_response(result)
