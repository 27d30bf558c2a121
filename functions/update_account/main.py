"""PATCH /v1/admin/accounts/{uid}: an admin disables, enables or re-roles an account."""

import functions_framework

from common import wiring
from common.api_accounts import UpdateAccountRequest
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json, path_param
from common.services.accounts import UpdateAccount


@functions_framework.http
@endpoint
def update_account(request):
    require_method(request, "PATCH")
    principal = caller(request)
    principal.require_role("admin")
    body = parse_json(request, UpdateAccountRequest)
    uid = path_param(request, "/v1/admin/accounts/")
    command = UpdateAccount(uid, body.role, body.point_id, body.disabled)
    service = wiring.accounts_service()
    result = idempotent_write(
        request,
        principal,
        "update_account",
        body,
        lambda idem: service.update(command, actor_of(principal), wiring.now(), idem),
    )
    return json_response(result.body, result.status)
