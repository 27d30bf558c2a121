"""Scheduled (every minute): queue again the impact dry runs, and the re-plans, whose worker
went quiet.

A first task that could not be queued, or one whose retries gave up, leaves its job's lease
to run out; this finds such jobs and queues their next slice (common/services/impact.py,
common/services/replan.py).
"""

import functions_framework

from common import wiring
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def resume_impact_jobs(request):
    now = wiring.now()
    impact = wiring.impact_jobs().resume_stalled(now)
    return json_response({**impact, "replans": wiring.replan_jobs().resume_stalled(now)})
