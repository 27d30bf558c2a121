"""GET /v1/me/appointments: the calling patient's appointments, past and future."""

import functions_framework

from common import wiring
from common.entry import caller, own_patient_key, require_method
from common.http import endpoint, json_response
from common.services.booking import response_for


@functions_framework.http
@endpoint
def list_my_appointments(request):
    require_method(request, "GET")
    principal = caller(request)
    principal.require_role("patient")
    appointments = wiring.booking_service().appointments_of(own_patient_key(principal))
    return json_response(wiring.appointment_places().add_places(response_for(appointments)))
