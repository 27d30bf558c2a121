"""Scheduled (every five minutes): each county's bookings of the last day and its waitlist,
one small document per county, for the expected wait (common/services/expected_wait.py)."""

import functions_framework

from common import wiring
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def measure_booking_rates(request):
    return json_response(wiring.booking_rate_meter().measure(wiring.now()))
