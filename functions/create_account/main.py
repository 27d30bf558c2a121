"""POST /v1/admin/accounts: an admin creates a staff, agent or admin account (audited)."""

import functions_framework

from common import wiring
from common.api_accounts import CreateAccountRequest
from common.domain.accounts import AccountClaims
from common.entry import actor_of, caller, idempotent_write, require_method
from common.http import endpoint, json_response, parse_json
from common.services.accounts import CreateAccount


@functions_framework.http
@endpoint
def create_account(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("admin")
    body = parse_json(request, CreateAccountRequest)
    command = CreateAccount(body.email, body.display_name, AccountClaims(body.role, body.point_id))
    service = wiring.accounts_service()
    result = idempotent_write(
        request,
        principal,
        "create_account",
        body,
        lambda idem: service.create(command, actor_of(principal), wiring.now(), idem),
    )
    return json_response(result.body, result.status)
