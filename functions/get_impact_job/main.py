"""GET /v1/admin/impact/{job_id}: an impact dry run's progress and counts (admins)."""

import functions_framework

from common import wiring
from common.entry import caller, require_method
from common.http import endpoint, json_response, path_param


@functions_framework.http
@endpoint
def get_impact_job(request):
    require_method(request, "GET")
    caller(request).require_role("admin")
    job_id = path_param(request, "/v1/admin/impact/")
    view = wiring.impact_jobs().view(job_id)
    return json_response({"job": view}, headers={"Cache-Control": "no-store"})
