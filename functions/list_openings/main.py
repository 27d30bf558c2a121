"""GET /v1/openings: the cohort openings announced and under way, with their phase."""

import functions_framework

from common import wiring
from common.entry import caller, require_method
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def list_openings(request):
    require_method(request, "GET")
    caller(request)
    return json_response(wiring.waiting_room().listing(wiring.now()))
