"""GET /v1/admin/impact/{job_id}/cases: the affected bookings as CSV, keyed by appointment id.

Admins only, audited (who downloaded which list). Streamed a few chunk documents at a time;
`X-Impact-Rows` says how many lines follow the header. No PESEL, no birth date, no patient id.
"""

import flask
import functions_framework

from common import wiring
from common.entry import actor_of, caller, require_method
from common.http import endpoint, path_param


@functions_framework.http
@endpoint
def list_impact_cases(request):
    require_method(request, "GET")
    principal = caller(request)
    principal.require_role("admin")
    job_id = path_param(request, "/v1/admin/impact/")
    listing = wiring.impact_jobs().listing(actor_of(principal), job_id, wiring.now())
    return flask.Response(listing.lines, mimetype="text/csv", headers=listing.headers)
