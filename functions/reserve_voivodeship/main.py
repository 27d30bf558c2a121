"""POST /v1/admin/reservations: the same reservation at every point of a voivodeship, in one
request (admins; audited). One commit per point; a retry with the same Idempotency-Key after
a failure completes the rest and never reserves a point twice."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json
from common.services.reservations import VoivodeshipReservationRequest


@functions_framework.http
@endpoint
def reserve_voivodeship(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("admin")
    body = parse_json(request, VoivodeshipReservationRequest)
    service = wiring.reservation_service()
    result = idempotent_write(
        request,
        principal,
        "reserve_voivodeship",
        body,
        lambda idem: service.create_for_voivodeship(actor_of(principal), body, wiring.now(), idem),
    )
    return json_response(result.body, result.status)
