"""Push subscriber of appointment-events: keeps the integration log, once per event.

It is the open end for systems that integrate later (and the proof that events flow): each
event is stored under its `event_id` with create(), so a redelivery changes nothing.
"""

import functions_framework

from common import wiring
from common.services.integration_log import record_event


@functions_framework.cloud_event
def record_integration_event(cloud_event):
    record_event(wiring.units(), cloud_event.data, wiring.now())
