"""GET /v1/waitlist: the patient's own place on the waitlist (how many joined before them and
still wait) and the seat held for them, if any (book it: POST /v1/holds/{hold_id}/book)."""

import functions_framework

from common import wiring
from common.entry import caller, own_patient_key, require_method
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def get_waitlist(request):
    require_method(request, "GET")
    principal = caller(request)
    principal.require_role("patient")
    view = wiring.waitlist_service().view(own_patient_key(principal))
    return json_response(view, headers={"Cache-Control": "no-store"})
