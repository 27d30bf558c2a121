"""Scheduled (every minute): finish what the retries left in an intermediate state.

Notifications still `sending` and P1 reports still `pending` past their due time
(`retry_after`) are driven again through their own exactly-once protocol
(common/services/sweeper.py): a dead-lettered event's SMS is sent once, a P1 report made once.
"""

import functions_framework

from common import wiring
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def sweep_stuck_work(request):
    return json_response(wiring.stuck_work_sweeper().run(wiring.now()))
