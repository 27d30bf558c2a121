"""POST /v1/appointments/{appointment_id}/cancel: free the seat (and the linked dose's)."""

import functions_framework

from common import wiring
from common.api_models import CancelRequest
from common.entry import (
    CHANNEL_OF_ROLE,
    actor_of,
    caller,
    idempotent_write,
    own_patient_key,
    require_method,
    take_write_attempt,
)
from common.http import endpoint, json_response, parse_json, path_param
from common.services.booking import CancelAppointment


@functions_framework.http
@endpoint
def cancel_appointment(request):
    require_method(request, "POST")
    principal = caller(request)
    take_write_attempt(principal)
    body = parse_json(request, CancelRequest)
    command = CancelAppointment(
        appointment_id=path_param(request, "/v1/appointments/"),
        actor=actor_of(principal, body.reason),
        channel=CHANNEL_OF_ROLE[principal.role],
        patient_key=own_patient_key(principal),
        reason=body.reason,
    )
    service = wiring.booking_service()
    result = idempotent_write(
        request, principal, "cancel", body, lambda idem: service.cancel(command, wiring.now(), idem)
    )
    return json_response(wiring.appointment_places().add_places(result.body), result.status)
