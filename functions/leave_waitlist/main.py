"""POST /v1/waitlist/leave: off the waitlist (a seat held for them is given back at once). A
patient leaves themself; an agent takes a caller off (`pesel` and `reason`)."""

import functions_framework
from pydantic import BaseModel, ConfigDict, Field

from common import wiring
from common.entry import actor_of, caller, idempotent_write, patient_pesel, require_method
from common.http import endpoint, json_response, parse_json


class LeaveWaitlist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pesel: str | None = Field(default=None, min_length=11, max_length=11)
    reason: str | None = Field(default=None, min_length=3, max_length=500)


@functions_framework.http
@endpoint
def leave_waitlist(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("patient", "agent", "admin")
    body = parse_json(request, LeaveWaitlist)
    pesel = patient_pesel(principal, body.pesel, body.reason)
    key = wiring.booking_service().patient_key(pesel, wiring.now())
    service = wiring.waitlist_service()
    actor = actor_of(principal, body.reason)
    result = idempotent_write(
        request,
        principal,
        "leave_waitlist",
        body,
        lambda idem: service.leave(actor, key, wiring.now(), idem),
    )
    return json_response(result.body, result.status)
