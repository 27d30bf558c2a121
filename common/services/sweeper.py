"""The sweeper: nothing stays in an intermediate state past its deadline.

Push subscriptions and Cloud Tasks retry, then give up: an event whose SMS could not be sent
through ten deliveries (the gateway down for longer than that) is dead-lettered, and an
outage of Firestore in the middle can even leave the record without its last error. What
the retries left behind keeps its intermediate state and a due time:

- `notifications/{id}` left `sending`, due 5 minutes after its claim or last failed attempt:
  `SmsSender.resume` sends the stored text to the stored (encrypted) number under the same
  client_message_id;
- `p1_reports/{vaccination_id}` left `pending`, due 15 minutes after its claim or last failed
  attempt: `P1Reporter.resume` reports the stored event (P1 dedupes by vaccination id).

`sweep_stuck_work` (Cloud Scheduler, every minute) asks for each kind `status == X and
retry_after <= now` (a composite index: status, retry_after), oldest first, a bounded page per
run, and drives each through the same exactly-once protocol its first attempt used: a record
that the push delivery finishes meanwhile is found done and left alone; one the gateway had
sent but whose answer was lost is sent again under the same client_message_id and the gateway
answers with the first message's id. So the outage of the incident (gateway down, Firestore
frozen, push retries exhausted) still ends in exactly one SMS per event.

A failed sweep moves `retry_after` on, doubling from 5 minutes to an hour (`sweeps`). Some
things are better never sent than sent late: a confirmation or a reminder of a visit that was
cancelled or moved meanwhile is `skipped: superseded`, a reminder of a visit already begun
`skipped: too_late`, and anything still unsent a day after it was claimed is given up
(`failed: expired`) and logged at ERROR, which the error-log alert reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from common import structured_log as log
from common.adapters.firestore_store import APPOINTMENTS, NOTIFICATIONS
from common.domain.appointments import Appointment, AppointmentStatus
from common.domain.errors import DependencyUnavailableError
from common.services.notifications import SmsSender
from common.services.p1_reporting import P1_REPORTS, P1Reporter
from common.services.unit_of_work import ONCE, UnitOfWork, UnitOfWorkRunner

PAGE = 100
GIVE_UP_AFTER = timedelta(hours=24)
FIRST_BACKOFF = timedelta(minutes=5)
MAX_BACKOFF = timedelta(hours=1)
# Kinds whose message is about a visit that must still be booked (at that time) to be sent.
ABOUT_A_BOOKED_VISIT = frozenset({"appointment.booked", "appointment.rescheduled", "reminder"})


def _contended() -> Exception:
    return DependencyUnavailableError("the record keeps changing; the next sweep takes it")


@dataclass
class SweepSummary:
    notifications: dict[str, int] = field(default_factory=dict)
    p1_reports: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, outcome: str) -> None:
        table = getattr(self, kind)
        table[outcome] = table.get(outcome, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"notifications": self.notifications, "p1_reports": self.p1_reports}


def backoff(sweeps: int) -> timedelta:
    return min(FIRST_BACKOFF * 2**sweeps, MAX_BACKOFF)


class StuckWorkSweeper:
    def __init__(
        self,
        units: UnitOfWorkRunner,
        sender: SmsSender,
        reporter: P1Reporter | None,
        phone_of: Any = None,  # (patient_key, now) -> str | None: records without a recipient
        page: int = PAGE,
    ) -> None:
        self.units = units
        self.sender = sender
        self.reporter = reporter
        self.phone_of = phone_of
        self.page = page

    def run(self, now: datetime) -> dict[str, Any]:
        summary = SweepSummary()
        reader = self.units.reader()
        for found in reader.query(
            NOTIFICATIONS,
            ("status", "==", "sending"),
            ("retry_after", "<=", now),
            order_by="retry_after",
            limit=self.page,
        ):
            summary.count("notifications", self._notification(found.id, found.data, now))
        if self.reporter is not None:
            for found in reader.query(
                P1_REPORTS,
                ("status", "==", "pending"),
                ("retry_after", "<=", now),
                order_by="retry_after",
                limit=self.page,
            ):
                summary.count("p1_reports", self._report(found.id, found.data, now))
        result = summary.as_dict()
        log.info("swept stuck work", **result)
        return result

    # -- notifications ---------------------------------------------------------------------
    def _notification(self, notification_id: str, record: dict[str, Any], now: datetime) -> str:
        created = record.get("created_at")
        if isinstance(created, datetime) and now - created > GIVE_UP_AFTER:
            log.error("notification never sent: given up", notification=notification_id)
            return self._finish(notification_id, {"status": "failed", "error": "expired"}, now)
        stale = self._no_longer_true(record, now)
        if stale is not None:
            return self._finish(notification_id, {"status": "skipped", "reason": stale}, now)
        if "text" not in record:
            # Only a one-time code keeps no text; it is long expired by now (10 minutes).
            return self._finish(notification_id, {"status": "skipped", "reason": "expired"}, now)
        phone = self.sender.recipient(record, notification_id)
        if phone is None and self.phone_of is not None and record.get("patient_key"):
            phone = self.phone_of(record["patient_key"], now)
        if phone is None:
            return self._finish(notification_id, {"status": "skipped", "reason": "no_phone"}, now)
        sweeps = int(record.get("sweeps", 0))
        try:
            return self.sender.resume(
                notification_id,
                phone,
                str(record["text"]),
                now,
                {"sweeps": sweeps + 1, "retry_after": now + backoff(sweeps)},
            )
        except DependencyUnavailableError:
            return "still_failing"  # recorded by the sender (best effort); the next sweep
        except Exception as err:  # noqa: BLE001 (one bad record must not stop the sweep)
            log.warning("sweep of a notification failed", fault=type(err).__name__)
            return "error"

    def _no_longer_true(self, record: dict[str, Any], now: datetime) -> str | None:
        """Why a pending message about a visit should not go out any more, if so."""
        if record.get("kind") not in ABOUT_A_BOOKED_VISIT or not record.get("appointment_id"):
            return None
        found = self.units.reader().get(APPOINTMENTS, record["appointment_id"])
        if found is None:
            return "superseded"
        appointment = Appointment.model_validate(found.data)
        if appointment.status is not AppointmentStatus.BOOKED:
            return "superseded"
        if record.get("kind") == "reminder":
            starts_at = record.get("starts_at")
            if isinstance(starts_at, datetime) and appointment.starts_at != starts_at:
                return "superseded"
            if appointment.starts_at <= now:
                return "too_late"
        return None

    def _finish(self, notification_id: str, fields: dict[str, Any], now: datetime) -> str:
        """Close a record the sweep will not send, if it is still `sending`."""

        def attempt(uow: UnitOfWork) -> str:
            found = uow.get(NOTIFICATIONS, notification_id)
            if found is None or found.data.get("status") != "sending":
                return "done_meanwhile"
            closed = {**fields, "updated_at": now, "retry_after": None, "to_enc": None}
            uow.update(NOTIFICATIONS, notification_id, closed, if_version=found.version)
            return str(fields.get("reason") or fields.get("error"))

        try:
            return self.units.run(attempt, gave_up=_contended, policy=ONCE)
        except Exception as err:  # noqa: BLE001 (the next sweep tries again)
            log.warning("sweep could not close a notification", fault=type(err).__name__)
            return "error"

    # -- P1 reports ------------------------------------------------------------------------
    def _report(self, vaccination_id: str, record: dict[str, Any], now: datetime) -> str:
        assert self.reporter is not None
        try:
            return self.reporter.resume(vaccination_id, now)
        except DependencyUnavailableError:
            return "still_failing"
        except Exception as err:  # noqa: BLE001 (one bad record must not stop the sweep)
            log.warning("sweep of a P1 report failed", fault=type(err).__name__)
            return "error"
