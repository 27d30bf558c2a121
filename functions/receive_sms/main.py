"""The SMS gateway's webhook: one incoming SMS of the booking dialog (PESEL and postcode, a
code, TAK, NIE, STOP). Public through the API Gateway (`POST /v1/sms/inbound`, no ID token:
the SMS provider calls it), so the provider's signature is what lets a call in.

The signature is mandatory: X-Sms-Signature must be the HMAC-SHA256 of the raw body under
SMS_WEBHOOK_SECRET. A call without it, with a wrong one, or reaching a function that has no
secret configured, is refused with 401 before anything is parsed or written. Delivery is at
least once; common/services/sms_dialog.py dedupes by message id and guards the dialog's state.
409 (busy) and 503 make the gateway deliver again later.
"""

import functions_framework

from common import wiring
from common.adapters.sms_client import SIGNATURE_HEADER, SmsInbound, verify_signature
from common.domain.errors import UnauthenticatedError
from common.entry import require_method
from common.http import endpoint, json_response, parse_json


@functions_framework.http
@endpoint
def receive_sms(request):
    require_method(request, "POST")
    secret = wiring.settings().sms_webhook_secret
    raw = request.get_data(cache=True)
    # No secret, no entry: an unconfigured webhook refuses everyone (fail closed).
    if not secret or not verify_signature(raw, request.headers.get(SIGNATURE_HEADER), secret):
        raise UnauthenticatedError("the webhook signature is missing or wrong")
    inbound = parse_json(request, SmsInbound)
    outcome = wiring.sms_dialog_service().receive(inbound, wiring.now())
    return json_response({"outcome": outcome})
