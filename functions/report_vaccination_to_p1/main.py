"""Push subscriber of appointment-events: each vaccination.completed reported to P1 once.

Other event types are acknowledged untouched (the emulator ignores subscription filters).
An exception answers 500, so Pub/Sub redelivers with backoff, then dead-letters; see
common/services/p1_reporting.py for what is retried and what is dead-lettered at once.
"""

import functions_framework

from common import wiring


@functions_framework.cloud_event
def report_vaccination_to_p1(cloud_event):
    wiring.p1_reporter().handle(cloud_event.data, wiring.now())
