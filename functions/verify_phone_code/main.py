"""POST /v1/me/phone/verify: the code texted to the number comes back; the number is kept.

200: the calling patient's confirmations and reminders go to that number from now on
(`phone_source: patient`). 422 `wrong_code` (with the attempts left), 409 `no_pending_code`,
429 `too_many_attempts` (five wrong codes: ask for a new one).
"""

import functions_framework

from common import wiring
from common.entry import caller, idempotent_write, own_patient_key, require_method
from common.http import endpoint, json_response, parse_json
from common.services.contacts import PhoneCodeVerify


@functions_framework.http
@endpoint
def verify_phone_code(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("patient")
    body = parse_json(request, PhoneCodeVerify)
    patient_key = own_patient_key(principal)
    service = wiring.contact_service()
    result = idempotent_write(
        request,
        principal,
        "verify_phone_code",
        body,
        lambda idem: service.verify_code(patient_key, body, wiring.now(), idem),
    )
    return json_response(result.body, result.status)
