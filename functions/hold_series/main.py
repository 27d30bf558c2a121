"""POST /v1/holds: hold a series (dose 1 and its dose 2) for a few minutes, like FHIR $hold.

The same checks as a booking; the seats are taken for everyone else until `expires_at`, and
POST /v1/holds/{hold_id}/book within that time cannot fail for want of a seat.
"""

import functions_framework

from common import wiring
from common.api_models import BookRequest
from common.entry import (
    CHANNEL_OF_ROLE,
    actor_of,
    caller,
    idempotent_write,
    patient_pesel,
    queue_ticket,
    require_method,
    take_write_attempt,
)
from common.http import endpoint, json_response, parse_json
from common.services.booking import BookAppointment


@functions_framework.http
@endpoint
def hold_series(request):
    require_method(request, "POST")
    principal = caller(request)
    take_write_attempt(principal)
    body = parse_json(request, BookRequest)
    command = BookAppointment(
        pesel=patient_pesel(principal, body.pesel, body.reason),
        slot_id=body.slot_id,
        second_slot_id=body.second_slot_id,
        channel=CHANNEL_OF_ROLE[principal.role],
        actor=actor_of(principal, body.reason),
        queue_ticket=queue_ticket(request),
    )
    holds = wiring.hold_service()
    result = idempotent_write(
        request, principal, "hold", body, lambda idem: holds.hold(command, wiring.now(), idem)
    )
    return json_response(result.body, result.status)
