"""Identity Platform's blocking function (beforeCreate and beforeSignIn), docs/identity.md.

Identity Platform POSTs {"data": {"jwt": ...}}; the JWT (verified here: it is the only
credential of this unauthenticated endpoint) describes the sign-in. The answer is
{"userRecord": {...}} (here: a patient's session claims) or {}, and a refusal is
{"error": {"status": "PERMISSION_DENIED", "message": ...}} with its HTTP status, which
Identity Platform hands to the client and which stops the sign-in.
"""

import time

import functions_framework

from common import structured_log as log
from common import wiring
from common.adapters.blocking_token import verify_blocking_token
from common.domain.errors import DependencyUnavailableError, DomainError, UnauthenticatedError
from common.http import json_response

_STATUS = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 503: "UNAVAILABLE"}


@functions_framework.http
def authorize_sign_in(request):
    log.configure()
    try:
        if request.method != "POST":
            raise UnauthenticatedError("POST only")
        data = (request.get_json(silent=True) or {}).get("data") or {}
        settings = wiring.settings()
        now = wiring.now()
        event = verify_blocking_token(
            data.get("jwt") if isinstance(data, dict) else None,
            settings.project_id,
            settings.blocking_function_url,
            emulator=settings.is_local,
            # The JWT's lifetime is its issuer's (Identity Platform, or the Auth emulator, on
            # the wall clock), not the business clock a test may shift (CLOCK_AT): deployed the
            # two are one, since Settings refuses a shifted clock outside emulator mode.
            now=time.time(),
        )
        return json_response(wiring.sign_in_service().decide(event, now))
    except DomainError as err:
        status = err.http_status if err.http_status in _STATUS else 403
        if isinstance(err, DependencyUnavailableError):
            status = 503
        log.warning("sign-in refused", code=err.code, status=status)
        return json_response({"error": {"status": _STATUS[status], "message": err.message}}, status)
