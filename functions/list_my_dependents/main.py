"""GET /v1/me/dependents: the calling patient's children under 18 and their appointments."""

import functions_framework

from common import wiring
from common.entry import caller, own_patient_key, require_method
from common.http import endpoint, json_response
from common.services.dependents import dependents_of


@functions_framework.http
@endpoint
def list_my_dependents(request):
    require_method(request, "GET")
    principal = caller(request)
    principal.require_role("patient")
    key = own_patient_key(principal)
    service = wiring.booking_service()
    result = dependents_of(wiring.firestore_client(), service, key, wiring.now())
    return json_response(wiring.appointment_places().add_places(result))
