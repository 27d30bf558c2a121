"""GET /v1/appointments/{appointment_id}: one appointment, if the caller may see it."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, own_patient_key, require_method
from common.http import endpoint, json_response, path_param


@functions_framework.http
@endpoint
def get_appointment(request):
    require_method(request, "GET")
    principal = caller(request)
    appointment = wiring.booking_service().get_for(
        path_param(request, "/v1/appointments/"),
        actor_of(principal, request.headers.get("X-Access-Reason")),
        own_patient_key(principal),
        wiring.now(),
    )
    return json_response(
        wiring.appointment_places().add_places({"appointment": appointment.to_api()})["appointment"]
    )
