"""POST /v1/holds: hold a series (dose 1 and its dose 2) for a few minutes, like FHIR $hold.

The same checks as a booking; the seats are taken for everyone else until `expires_at`, and
POST /v1/holds/{hold_id}/book within that time cannot fail for want of a seat.
"""

import functions_framework

from common import wiring
from common.entry import booking_command, caller, idempotent_write, require_method
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def hold_series(request):
    require_method(request, "POST")
    principal = caller(request)
    body, command = booking_command(request, principal)
    holds = wiring.hold_service()
    result = idempotent_write(
        request, principal, "hold", body, lambda idem: holds.hold(command, wiring.now(), idem)
    )
    return json_response(result.body, result.status)
