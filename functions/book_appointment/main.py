"""POST /v1/appointments: book a slot (and, for a two-dose product, the second dose too)."""

import functions_framework

from common import wiring
from common.api_models import BookRequest
from common.entry import (
    CHANNEL_OF_ROLE,
    actor_of,
    caller,
    idempotent_write,
    patient_pesel,
    queue_ticket,
    require_method,
    take_write_attempt,
)
from common.http import endpoint, json_response, parse_json
from common.services.booking import BookAppointment


@functions_framework.http
@endpoint
def book_appointment(request):
    require_method(request, "POST")
    principal = caller(request)
    take_write_attempt(principal)
    body = parse_json(request, BookRequest)
    command = BookAppointment(
        pesel=patient_pesel(principal, body.pesel, body.reason),
        slot_id=body.slot_id,
        second_slot_id=body.second_slot_id,
        channel=CHANNEL_OF_ROLE[principal.role],
        actor=actor_of(principal, body.reason),
        queue_ticket=queue_ticket(request),
    )
    service = wiring.booking_service()
    result = idempotent_write(
        request, principal, "book", body, lambda idem: service.book(command, wiring.now(), idem)
    )
    # Where to go (the point's name, address, position) and the SMS the patient gets.
    places = wiring.appointment_places()
    answer = places.add_places(result.body)
    if result.status == 201:
        answer["confirmation"] = places.confirmation(answer["appointments"], wiring.now(), "booked")
    return json_response(answer, result.status)
