"""GET /v1/slots: the nearest points with free slots for a product and a date range."""

import functions_framework

from common import wiring
from common.entry import caller, quota_identity, require_method
from common.http import endpoint, json_response, parse_query
from common.services.reservations import birth_date_of
from common.services.search import SearchQuery


@functions_framework.http
@endpoint
def search_slots(request):
    require_method(request, "GET")
    principal = caller(request)
    now = wiring.now()
    # Per person, per instance, in memory: a search stays a search, not a write.
    wiring.local_quotas().take("search", quota_identity(principal), now)
    query = parse_query(request, SearchQuery)
    # A patient sees the seats reserved for their own group (common/services/reservations.py).
    result = wiring.search_service().search(query, now, birth_date_of(principal, now))
    return json_response(result, headers={"Cache-Control": "private, max-age=5"})
