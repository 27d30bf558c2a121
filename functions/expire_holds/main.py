"""Scheduled (every minute): end the holds past their time, giving their seats back."""

import functions_framework

from common import wiring
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def expire_holds(request):
    return json_response(wiring.hold_service().expire(wiring.now()))
