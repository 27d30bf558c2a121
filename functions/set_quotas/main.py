"""PUT /v1/admin/quotas: change the quotas without a deploy (admin, audited)."""

import functions_framework

from common import wiring
from common.domain.quotas import QuotaPolicy
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json


@functions_framework.http
@endpoint
def set_quotas(request):
    require_method(request, "PUT")
    principal = caller(request)
    principal.require_role("admin")
    body = parse_json(request, QuotaPolicy)
    admin = wiring.quota_admin()
    result = idempotent_write(
        request,
        principal,
        "set_quotas",
        body,
        lambda idem: admin.set_policy(actor_of(principal), body, wiring.now(), idem),
    )
    return json_response(result.body, result.status)
