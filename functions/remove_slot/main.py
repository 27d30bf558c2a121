"""DELETE /v1/points/{point_id}/slots/{slot_id}: remove a slot; its visits are displaced."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, path_param
from common.services.staff_calendar import RemoveSlotRequest


@functions_framework.http
@endpoint
def remove_slot(request):
    require_method(request, "DELETE")
    principal = caller(request)
    principal.require_role("staff", "admin")
    point_id = path_param(request, "/v1/points/")
    slot_id = path_param(request, f"/v1/points/{point_id}/slots/")
    service = wiring.staff_calendar_service()
    result = idempotent_write(
        request,
        principal,
        "remove_slot",
        RemoveSlotRequest(),
        lambda idem: service.remove_slot(
            actor_of(principal), point_id, slot_id, wiring.now(), idem
        ),
    )
    return json_response(result.body, result.status)
