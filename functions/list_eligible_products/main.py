"""The vaccines a patient may book on a date: GET /v1/me/eligible-products (the patient's own)
and POST /v1/patients/eligible-products (an agent's caller: the PESEL in the body, never in a
URL). A read: the rules in force judge each product as a booking would."""

import functions_framework

from common import wiring
from common.entry import CHANNEL_OF_ROLE, caller, require_method
from common.http import endpoint, json_response, parse_json, parse_query
from common.services.eligible_products import EligibleProductsQuery, EligibleProductsRequest


@functions_framework.http
@endpoint
def list_eligible_products(request):
    require_method(request, "GET", "POST")
    principal = caller(request)
    service = wiring.eligible_products_service()
    if request.method == "POST":
        principal.require_role("agent", "admin")
        body = parse_json(request, EligibleProductsRequest)
        pesel, day = body.pesel, body.date
    else:
        principal.require_role("patient")
        query = parse_query(request, EligibleProductsQuery)
        pesel, day = principal.pesel, query.date
    result = service.for_pesel(pesel, day, CHANNEL_OF_ROLE[principal.role], wiring.now())
    return json_response(result)
