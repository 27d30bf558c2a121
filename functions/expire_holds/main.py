"""Scheduled (every minute): end the holds past their time, giving their seats back; and the
re-plan offers past their time (silence is a NIE: the next alternative is offered)."""

import functions_framework

from common import wiring
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def expire_holds(request):
    now = wiring.now()
    holds = wiring.hold_service().expire(now)
    offers = wiring.replan_service().expire(now)
    return json_response({**holds, "offers": offers})
