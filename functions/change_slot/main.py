"""PATCH /v1/points/{point_id}/slots/{slot_id}: change capacity, block or unblock (staff).

A decrease never drops a patient silently: the visits that lose their seat are cancelled in
the same commit, each with an `appointment.displaced` event, and listed in the response.
"""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json, path_param
from common.services.staff_calendar import ChangeSlotRequest


@functions_framework.http
@endpoint
def change_slot(request):
    require_method(request, "PATCH")
    principal = caller(request)
    principal.require_role("staff", "admin")
    body = parse_json(request, ChangeSlotRequest)
    point_id = path_param(request, "/v1/points/")
    slot_id = path_param(request, f"/v1/points/{point_id}/slots/")
    service = wiring.staff_calendar_service()
    result = idempotent_write(
        request,
        principal,
        "change_slot",
        body,
        lambda idem: service.change_slot(
            actor_of(principal), point_id, slot_id, body, wiring.now(), idem
        ),
    )
    return json_response(result.body, result.status)
