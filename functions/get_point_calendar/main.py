"""GET /v1/points/{point_id}/calendar: every slot with capacity, free, booked, blocked."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, require_method
from common.http import endpoint, json_response, parse_query, path_param
from common.services.staff_calendar import CalendarQuery


@functions_framework.http
@endpoint
def get_point_calendar(request):
    require_method(request, "GET")
    principal = caller(request)
    principal.require_role("staff", "admin")
    query = parse_query(request, CalendarQuery)
    point_id = path_param(request, "/v1/points/")
    result = wiring.staff_calendar_service().calendar(
        actor_of(principal), point_id, query, wiring.now()
    )
    return json_response(result)
