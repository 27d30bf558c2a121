"""Push subscriber of appointment-events: the patient's SMS (booked, moved, cancelled,
displaced) and the reminder task of the day before, once per event.

Other event types are acknowledged untouched (the emulator ignores subscription filters). An
unavailable SMS gateway or Cloud Tasks raises, so the push is answered 500 and Pub/Sub
redelivers with backoff, then dead-letters to notifications-dead-letter. The protocol that
keeps it to one SMS per event is in common/services/notifications.py.
"""

import functions_framework

from common import structured_log as log
from common import wiring


@functions_framework.cloud_event
def notify_patient(cloud_event):
    log.configure()
    wiring.notification_service().handle_push(cloud_event.data, wiring.now())
