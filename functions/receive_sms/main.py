"""The SMS gateway's webhook: one incoming SMS of the booking dialog (PESEL and postcode,
TAK, NIE, STOP). Not under /v1: the gateway calls it, not patients.

With SMS_WEBHOOK_SECRET set, the body must carry the gateway's X-Sms-Signature (HMAC-SHA256).
Delivery is at least once; common/services/sms_dialog.py dedupes by message id and guards
the dialog's state. 409 (busy) and 503 make the gateway deliver again later.
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
    if secret and not verify_signature(raw, request.headers.get(SIGNATURE_HEADER), secret):
        raise UnauthenticatedError("the webhook signature is missing or wrong")
    inbound = parse_json(request, SmsInbound)
    outcome = wiring.sms_dialog_service().receive(inbound, wiring.now())
    return json_response({"outcome": outcome})
