"""GET /v1/admin/expected-wait: per county and cohort, the expected days to a first-dose
visit for someone who books now, and its basis (admins; common/services/expected_wait.py)."""

import functions_framework

from common import wiring
from common.entry import caller, require_method
from common.http import endpoint, json_response, parse_query
from common.services.expected_wait import ExpectedWaitQuery


@functions_framework.http
@endpoint
def get_expected_wait(request):
    require_method(request, "GET")
    caller(request).require_role("admin")
    query = parse_query(request, ExpectedWaitQuery)
    return json_response(wiring.expected_wait_service().table(query, wiring.now()))
