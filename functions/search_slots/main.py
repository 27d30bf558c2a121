"""GET /v1/slots: the nearest points with free slots for a product and a date range."""

import functions_framework

from common import wiring
from common.entry import caller, require_method
from common.http import endpoint, json_response, parse_query
from common.services.search import SearchQuery


@functions_framework.http
@endpoint
def search_slots(request):
    require_method(request, "GET")
    caller(request)
    query = parse_query(request, SearchQuery)
    result = wiring.search_service().search(query, wiring.now())
    return json_response(result, headers={"Cache-Control": "private, max-age=5"})
