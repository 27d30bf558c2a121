"""Scheduled (every minute): fold booking deltas into the points' availability, every second.

The run covers its minute (FOLD_FOR_S), folding about once a second, so that search's free
seats trail the bookings by a few seconds while no point's document is written more than once
a round (common/services/availability.py). Two runs that overlap fold each delta once.
"""

import os

import functions_framework

from common import wiring
from common.http import endpoint, json_response

FOLD_FOR_S = float(os.environ.get("FOLD_FOR_S", "55"))


@functions_framework.http
@endpoint
def fold_availability(request):
    result = wiring.availability_folder().run_for(FOLD_FOR_S)
    return json_response({"deltas": result.deltas, "points": result.points})
