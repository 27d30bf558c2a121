"""POST /v1/patients/lookup: a hotline agent finds one patient by full PESEL (audited).

POST, so that the PESEL travels in the body and never in a URL; a read, so no
Idempotency-Key: the only write is the audit entry of the look-up itself.
"""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, require_method
from common.http import endpoint, json_response, parse_json
from common.services.hotline import LookupRequest


@functions_framework.http
@endpoint
def lookup_patient(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("agent", "admin")
    body = parse_json(request, LookupRequest)
    result = wiring.hotline_service().lookup(actor_of(principal, body.reason), body, wiring.now())
    return json_response(wiring.appointment_places().add_places(result))
