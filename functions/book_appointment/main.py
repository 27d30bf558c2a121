"""POST /v1/appointments: book a slot (and, for a two-dose product, the second dose too)."""

import functions_framework

from common import wiring
from common.entry import booking_command, caller, idempotent_write, require_method
from common.http import endpoint, json_response


@functions_framework.http
@endpoint
def book_appointment(request):
    require_method(request, "POST")
    principal = caller(request)
    body, command = booking_command(request, principal)
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
