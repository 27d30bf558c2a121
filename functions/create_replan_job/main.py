"""POST /v1/admin/replans: move, with each patient's consent, the bookings a change affects.

Admins only, audited. The body names a finished impact dry run (POST /v1/admin/impact): its
cases are what is re-planned, nothing else. The answer (202) is the job, queued; its progress
at GET /v1/admin/replans/{job_id} (common/services/replan.py, docs/replanning.md).
"""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json
from common.services.replan import CreateReplanJob


@functions_framework.http
@endpoint
def create_replan_job(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("admin")
    body = parse_json(request, CreateReplanJob)
    jobs = wiring.replan_jobs()
    result = idempotent_write(
        request,
        principal,
        "create_replan_job",
        body,
        lambda idem: jobs.create(actor_of(principal), body, wiring.now(), idem),
    )
    return json_response(result.body, result.status)
