"""Scheduled (every minute): publish outbox events that the fast path left behind."""

import functions_framework

from common import wiring
from common.http import endpoint, json_response
from common.services import outbox


@functions_framework.http
@endpoint
def relay_outbox(request):
    result = outbox.sweep(wiring.firestore_client(), wiring.publisher(), wiring.now())
    return json_response(result)
