"""POST /v1/points/{point_id}/slots: add one slot to the point's calendar (staff)."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json, path_param
from common.services.staff_calendar import AddSlotRequest


@functions_framework.http
@endpoint
def add_slot(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("staff", "admin")
    body = parse_json(request, AddSlotRequest)
    point_id = path_param(request, "/v1/points/")
    service = wiring.staff_calendar_service()
    result = idempotent_write(
        request,
        principal,
        "add_slot",
        body,
        lambda idem: service.add_slot(actor_of(principal), point_id, body, wiring.now(), idem),
    )
    return json_response(result.body, result.status)
