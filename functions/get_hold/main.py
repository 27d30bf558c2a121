"""GET /v1/holds/{hold_id}: a hold, its seats and until when."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, own_patient_key, require_method
from common.http import endpoint, json_response, path_param


@functions_framework.http
@endpoint
def get_hold(request):
    require_method(request, "GET")
    principal = caller(request)
    principal.require_role("patient", "agent", "admin")
    hold_id = path_param(request, "/v1/holds/")
    actor = actor_of(principal, request.headers.get("X-Access-Reason"))
    view = wiring.hold_service().view(hold_id, actor, own_patient_key(principal))
    return json_response(view, headers={"Cache-Control": "no-store"})
