"""POST /v1/appointments/{appointment_id}/reschedule: move a dose atomically."""

import functions_framework

from common import wiring
from common.api_models import RescheduleRequest
from common.entry import (
    CHANNEL_OF_ROLE,
    actor_of,
    caller,
    idempotent_write,
    own_patient_key,
    require_method,
)
from common.http import endpoint, json_response, parse_json, path_param
from common.services.booking import RescheduleAppointment


@functions_framework.http
@endpoint
def reschedule_appointment(request):
    require_method(request, "POST")
    principal = caller(request)
    body = parse_json(request, RescheduleRequest)
    command = RescheduleAppointment(
        appointment_id=path_param(request, "/v1/appointments/"),
        new_slot_id=body.slot_id,
        new_second_slot_id=body.second_slot_id,
        actor=actor_of(principal, body.reason),
        channel=CHANNEL_OF_ROLE[principal.role],
        patient_key=own_patient_key(principal),
    )
    service = wiring.booking_service()
    result = idempotent_write(
        request,
        principal,
        "reschedule",
        body,
        lambda idem: service.reschedule(command, wiring.now(), idem),
    )
    return json_response(result.body, result.status)
