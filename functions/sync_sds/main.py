"""Scheduled (every 5 minutes): SDS deliveries in (supply caps capacity), booked demand out."""

import functions_framework

from common import wiring
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def sync_sds(request):
    # SDS down: 503 and Cloud Scheduler retries; each page of deliveries is one commit with
    # its cursor, and supply left unreconciled stays marked `dirty` for the next run.
    return json_response(wiring.sds_sync().run(wiring.now()))
