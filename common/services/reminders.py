"""The reminder the day before a visit: a named Cloud Task, and the function it calls.

Scheduling: when an appointment is booked (or moved), `notify_patient` creates a task on the
queue `notifications`, due at 18:00 Europe/Warsaw the day before the visit (at once when that
moment has passed but the visit has not), that POSTs {appointment_id, starts_at} to
`send_reminder`. The task name is a hash of the appointment id and the visit's start, so a
redelivered event asks for the same name and Cloud Tasks answers ALREADY_EXISTS (success).
When the appointment is cancelled or moved, the task of the old start is deleted by name
(NOT_FOUND is success: never created, already run, or deleted before).

Safety net: `send_reminder` re-reads the appointment and sends only if it is still booked at
that start, so a missed delete (an event lost to the dead-letter topic, a task name reused)
never sends a wrong reminder; and it sends through the notification protocol under
`reminder-{hash(appointment, start)}`, so a task run twice sends one SMS.

A name is refused for about an hour after its task was deleted or run. If an appointment is
moved away and back within that hour, the original name is taken by a tombstone: the task is
then created under a second name that includes the event id (still deterministic per event).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.protobuf import timestamp_pb2

from common import structured_log as log
from common.adapters.firestore_store import APPOINTMENTS, POINTS
from common.domain import sms_texts
from common.domain.appointments import Appointment, AppointmentStatus
from common.domain.calendar import WARSAW
from common.domain.errors import DependencyUnavailableError
from common.services.notifications import NotificationService, SmsSender, short_hash
from common.services.unit_of_work import UnitOfWorkRunner

NOTIFICATIONS_QUEUE = "notifications"
REMINDER_HOUR = time(18, 0)
TASKS_TIMEOUT_S = 10.0
_TASKS_FAULTS = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.RetryError,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.Unknown,
)


def remind_at(starts_at: datetime, now: datetime) -> datetime | None:
    """18:00 Warsaw time the day before the visit, or now if that passed; None if too late."""
    if starts_at <= now:
        return None
    day_before = starts_at.astimezone(WARSAW).date() - timedelta(days=1)
    at = datetime.combine(day_before, REMINDER_HOUR, tzinfo=WARSAW)
    return max(at, now)


def reminder_key(appointment_id: str, starts_at: datetime) -> str:
    return short_hash(appointment_id, starts_at.astimezone(UTC).isoformat())


def task_id(appointment_id: str, starts_at: datetime) -> str:
    return f"reminder-{reminder_key(appointment_id, starts_at)}"


class ReminderScheduler:
    def __init__(
        self,
        client: tasks_v2.CloudTasksClient,
        project_id: str,
        location: str,
        target_url: str,
        invoker_service_account: str | None = None,
    ) -> None:
        self.client = client
        self.queue = client.queue_path(project_id, location, NOTIFICATIONS_QUEUE)
        self.target = target_url
        self.invoker = invoker_service_account

    def task_name(self, appointment_id: str, starts_at: datetime) -> str:
        return f"{self.queue}/tasks/{task_id(appointment_id, starts_at)}"

    def _task(self, name: str, appointment_id: str, starts_at: datetime, due: datetime, now):
        body = {
            "appointment_id": appointment_id,
            "starts_at": starts_at.astimezone(UTC).isoformat(),
        }
        request: dict[str, Any] = {
            "url": self.target,
            "http_method": tasks_v2.HttpMethod.POST,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(body).encode(),
        }
        if self.invoker:
            # Production: Cloud Run checks this OIDC identity holds run.invoker on the function.
            request["oidc_token"] = {"service_account_email": self.invoker, "audience": self.target}
        task: dict[str, Any] = {"name": name, "http_request": request}
        if due > now:
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(due.astimezone(UTC).replace(tzinfo=None))
            task["schedule_time"] = stamp
        return task

    def schedule(
        self, appointment_id: str, starts_at: datetime, now: datetime, event_id: str
    ) -> str:
        due = remind_at(starts_at, now)
        if due is None:
            return "past"
        name = self.task_name(appointment_id, starts_at)
        try:
            self.client.create_task(
                parent=self.queue,
                task=self._task(name, appointment_id, starts_at, due, now),
                timeout=TASKS_TIMEOUT_S,
            )
            return "created"
        except gexc.AlreadyExists:
            pass
        except _TASKS_FAULTS as err:
            raise DependencyUnavailableError("Cloud Tasks is unavailable") from err
        try:
            self.client.get_task(name=name, timeout=TASKS_TIMEOUT_S)
            return "exists"  # the same event again: one task
        except gexc.NotFound:
            pass  # a tombstone of a deleted or finished task holds the name
        except _TASKS_FAULTS as err:
            raise DependencyUnavailableError("Cloud Tasks is unavailable") from err
        fallback = f"{name}-{short_hash(event_id)[:12]}"
        try:
            self.client.create_task(
                parent=self.queue,
                task=self._task(fallback, appointment_id, starts_at, due, now),
                timeout=TASKS_TIMEOUT_S,
            )
        except gexc.AlreadyExists:
            pass
        except _TASKS_FAULTS as err:
            raise DependencyUnavailableError("Cloud Tasks is unavailable") from err
        return "created_fallback"

    def cancel(self, appointment_id: str, starts_at: datetime) -> bool:
        """Delete the reminder of that start; False when there was none."""
        try:
            self.client.delete_task(
                name=self.task_name(appointment_id, starts_at), timeout=TASKS_TIMEOUT_S
            )
            return True
        except gexc.NotFound:
            return False
        except _TASKS_FAULTS as err:
            raise DependencyUnavailableError("Cloud Tasks is unavailable") from err


class ReminderService:
    """What `send_reminder` does when its task fires."""

    def __init__(
        self, units: UnitOfWorkRunner, notifications: NotificationService, sender: SmsSender
    ) -> None:
        # Reads only; the reminder's record is written by the sender's units of work.
        self.units = units
        self.notifications = notifications
        self.sender = sender

    def send(self, appointment_id: str, starts_at: datetime, now: datetime) -> str:
        reader = self.units.reader()
        found = reader.get(APPOINTMENTS, appointment_id)
        appointment = Appointment.model_validate(found.data) if found is not None else None
        if (
            appointment is None
            or appointment.status is not AppointmentStatus.BOOKED
            or appointment.starts_at != starts_at
        ):
            # Cancelled or moved and the task was not deleted: nothing to remind of. Not
            # recorded under the reminder id: the visit may come back to this start.
            log.info("reminder no longer applies", appointment_id=appointment_id)
            return "stale"
        if starts_at <= now:
            return "past"
        phone = self.notifications.phone_of(appointment.patient_key, now)
        notification_id = f"reminder-{reminder_key(appointment_id, starts_at)}"
        meta = {
            "kind": "reminder",
            "appointment_id": appointment_id,
            "patient_key": appointment.patient_key,
            "starts_at": starts_at,  # the sweeper sends no reminder for a visit begun or moved
        }
        if phone is None:
            self.sender.skip(notification_id, "no_phone", meta, now)
            return "skipped:no_phone"
        point_doc = reader.get(POINTS, appointment.point_id)
        point = point_doc.data if point_doc is not None else None
        product = self.notifications.product_name(appointment.product, now)
        return self.sender.send_once(
            notification_id,
            phone,
            lambda: sms_texts.reminder(product, starts_at, point),
            meta,
            now,
        )
