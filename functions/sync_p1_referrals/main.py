"""Scheduled (every 5 minutes): pull new and changed e-referrals from P1 by its cursor."""

import functions_framework

from common import wiring
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def sync_p1_referrals(request):
    # P1 down or slow: DependencyUnavailableError -> 503; Cloud Scheduler retries, and the
    # cursor in Firestore says where to resume (nothing half-written: one commit per page).
    return json_response(wiring.p1_referral_sync().run(wiring.now()))
