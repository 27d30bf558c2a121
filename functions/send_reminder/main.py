"""Cloud Tasks target: the SMS reminder the day before a visit (queue `notifications`).

Not public: in production Cloud Run admits only the task's OIDC identity. The appointment is
read again, so a task that outlived a cancellation or a move sends nothing; see
common/services/reminders.py. A 503 makes Cloud Tasks retry with the queue's backoff.
"""

from datetime import datetime

import functions_framework
from pydantic import BaseModel, ConfigDict, Field

from common import wiring
from common.entry import require_method
from common.http import endpoint, json_response, parse_json


class ReminderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    appointment_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    starts_at: datetime


@functions_framework.http
@endpoint
def send_reminder(request):
    require_method(request, "POST")
    body = parse_json(request, ReminderRequest)
    outcome = wiring.reminder_service().send(body.appointment_id, body.starts_at, wiring.now())
    return json_response({"outcome": outcome})
