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
    take_write_attempt,
)
from common.http import endpoint, json_response, parse_json, path_param
from common.services.booking import RescheduleAppointment


@functions_framework.http
@endpoint
def reschedule_appointment(request):
    require_method(request, "POST")
    principal = caller(request)
    take_write_attempt(principal)
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
    places = wiring.appointment_places()
    answer = places.add_places(result.body)
    if result.status == 200:
        answer["confirmation"] = places.confirmation(
            answer["appointments"], wiring.now(), "rescheduled"
        )
    return json_response(answer, result.status)
