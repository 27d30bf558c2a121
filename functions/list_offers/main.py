"""GET /v1/offers: a patient's open re-plan offers (the portal); `?list=hotline` for agents
and admins: the hotline's call list (cases escalated, offers nobody could be told of)."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, own_patient_key, require_method
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def list_offers(request):
    require_method(request, "GET")
    principal = caller(request)
    principal.require_role("patient", "agent", "admin")
    hotline = request.args.get("list") == "hotline"
    view = wiring.replan_service().listing(actor_of(principal), own_patient_key(principal), hotline)
    return json_response(view, headers={"Cache-Control": "no-store"})
