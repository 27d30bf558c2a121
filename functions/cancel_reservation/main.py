"""POST /v1/points/{point_id}/reservations/{reservation_id}/cancel: open the kept seats to
all now (the point's staff, admins; audited)."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json, path_param
from common.services.reservations import CancelReservationRequest


@functions_framework.http
@endpoint
def cancel_reservation(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("staff", "admin")
    body = parse_json(request, CancelReservationRequest)
    point_id = path_param(request, "/v1/points/")
    reservation_id = path_param(request, f"/v1/points/{point_id}/reservations/")
    service = wiring.reservation_service()
    result = idempotent_write(
        request,
        principal,
        "cancel_reservation",
        body,
        lambda idem: service.cancel(
            actor_of(principal), point_id, reservation_id, body, wiring.now(), idem
        ),
    )
    return json_response(result.body, result.status)
