"""GET /v1/admin/quotas: the quotas in force (the file's defaults or the admin's override)."""

import functions_framework

from common import wiring
from common.entry import caller, require_method
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def get_quotas(request):
    require_method(request, "GET")
    caller(request).require_role("admin")
    return json_response({"policy": wiring.quota_policy().policy().model_dump(mode="json")})
