"""GET /v1/callbacks?status=open: the hotline's call-back list (phone shown, PESEL masked)."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, require_method
from common.http import endpoint, json_response, parse_query
from common.services.callbacks import CallbackQuery


@functions_framework.http
@endpoint
def list_callbacks(request):
    require_method(request, "GET")
    principal = caller(request)
    principal.require_role("agent", "admin")
    query = parse_query(request, CallbackQuery)
    return json_response(wiring.callback_service().list(actor_of(principal), query))
