"""Scheduled (every minute): settle the waitlist's answered offers, then hold the free seats
for the people waiting, in the order they joined (common/services/waitlist.py)."""

import functions_framework

from common import wiring
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def match_waitlist(request):
    return json_response(wiring.waitlist_service().match(wiring.now()))
