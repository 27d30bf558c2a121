"""POST /v1/patients/phone: a hotline agent sets the mobile number a caller gives (audited).

The PESEL and the number travel in the body; the reason is required and goes to the audit
entry committed with the change. The answer shows the number masked.
"""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json
from common.services.contacts import SetPhoneRequest


@functions_framework.http
@endpoint
def set_patient_phone(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("agent", "admin")
    body = parse_json(request, SetPhoneRequest)
    now = wiring.now()
    patient_key = wiring.booking_service().patient_key(body.pesel, now)
    service = wiring.contact_service()
    result = idempotent_write(
        request,
        principal,
        "set_patient_phone",
        body,
        lambda idem: service.set_by_agent(
            actor_of(principal, body.reason), patient_key, body.phone, now, idem
        ),
    )
    return json_response(result.body, result.status)
