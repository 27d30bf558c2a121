"""POST /v1/points/{point_id}/reservations: keep a share of the point's seats (or of some
days' seats) for a group until a given time (the point's staff, admins; audited).

Booking and search respect it at once in this instance and within 15 s everywhere; after
`until` the seats are anyone's (common/services/reservations.py).
"""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json, path_param
from common.services.reservations import ReservationRequest


@functions_framework.http
@endpoint
def create_reservation(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("staff", "admin")
    body = parse_json(request, ReservationRequest)
    point_id = path_param(request, "/v1/points/")
    service = wiring.reservation_service()
    result = idempotent_write(
        request,
        principal,
        "create_reservation",
        body,
        lambda idem: service.create(actor_of(principal), point_id, body, wiring.now(), idem),
    )
    return json_response(result.body, result.status)
