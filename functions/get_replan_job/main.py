"""GET /v1/admin/replans/{job_id}: a re-plan's progress (admins): cases done, and offers
offered, accepted, declined, expired, escalated (counted from the offers themselves)."""

import functions_framework

from common import wiring
from common.entry import caller, require_method
from common.http import endpoint, json_response, path_param


@functions_framework.http
@endpoint
def get_replan_job(request):
    require_method(request, "GET")
    caller(request).require_role("admin")
    job_id = path_param(request, "/v1/admin/replans/")
    view = wiring.replan_jobs().view(job_id)
    return json_response({"job": view}, headers={"Cache-Control": "no-store"})
