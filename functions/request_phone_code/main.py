"""POST /v1/me/phone: the calling patient gives a mobile number; a one-time code goes to it.

202 with the number masked and when the code expires. The number is stored only once the
code comes back (POST /v1/me/phone/verify). The code is texted after the request's commit and
again on every replay of the same Idempotency-Key (one SMS per code: the gateway dedupes), so
a gateway that was down when the code was made gets it sent by the client's retry.
"""

import functions_framework

from common import wiring
from common.entry import caller, idempotent_write, own_patient_key, require_method
from common.http import endpoint, json_response, parse_json
from common.services.contacts import PhoneCodeRequest


@functions_framework.http
@endpoint
def request_phone_code(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("patient")
    body = parse_json(request, PhoneCodeRequest)
    patient_key = own_patient_key(principal)
    service = wiring.contact_service()
    result = idempotent_write(
        request,
        principal,
        "request_phone_code",
        body,
        lambda idem: service.request_code(patient_key, body, wiring.now(), idem),
    )
    if result.status == 202:
        service.deliver_code(patient_key, wiring.now())
    return json_response(result.body, result.status)
