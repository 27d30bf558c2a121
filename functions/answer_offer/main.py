"""POST /v1/offers/{offer_id}: TAK or NIE to a re-plan offer, `{"answer": "accept"}` or
`{"answer": "decline"}`. The patient answers their own; an agent answers for a caller (with a
`reason`, audited). Accepting moves the series in one commit; declining releases the seats and
the next alternative is offered (common/services/replan.py)."""

import functions_framework

from common import wiring
from common.entry import actor_of, caller, idempotent_write, own_patient_key, require_method
from common.http import endpoint, json_response, parse_json, path_param
from common.services.replan import AnswerOffer


@functions_framework.http
@endpoint
def answer_offer(request):
    require_method(request, "POST")
    principal = caller(request)
    principal.require_role("patient", "agent", "admin")
    body = parse_json(request, AnswerOffer)
    offer_id = path_param(request, "/v1/offers/")
    service = wiring.replan_service()
    actor = actor_of(principal, body.reason)
    result = idempotent_write(
        request,
        principal,
        "answer_offer",
        body,
        lambda idem: service.answer(
            offer_id, body, actor, own_patient_key(principal), wiring.now(), idem
        ),
    )
    return json_response(result.body, result.status)
