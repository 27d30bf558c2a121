"""POST /v1/admin/impact: what a change would do to the live bookings, before it is made.

Admins only, audited. The change is given as the real one is (a rules version not yet in
force, a slot's PATCH or DELETE, the deliveries SDS would send); the answer (202) is the job,
queued. It changes nothing: progress at GET /v1/admin/impact/{job_id}, the list at
.../cases (common/services/impact.py, docs/replanning.md).
"""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json
from common.services.impact import CreateImpactJob


@functions_framework.http
@endpoint
def create_impact_job(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("admin")
    body = parse_json(request, CreateImpactJob)
    jobs = wiring.impact_jobs()
    result = idempotent_write(
        request,
        principal,
        "create_impact_job",
        body,
        lambda idem: jobs.create(actor_of(principal), body, wiring.now(), idem),
    )
    return json_response(result.body, result.status)
