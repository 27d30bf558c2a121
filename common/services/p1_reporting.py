"""Report each completed vaccination to P1, exactly once in effect.

The push subscription `p1-vaccination-reports` delivers every appointment event (the
emulator ignores filters, so the type is checked here) at least once, maybe twice at the
same time, maybe out of order. The effect is still one P1 record per vaccination because:

- the vaccination id (= the appointment id, or the walk-in's id) is P1's dedupe key: a repeat
  gets P1's stored record back (200), never a second record;
- `p1_reports/{vaccination_id}` remembers the outcome: once `reported`, a redelivery is
  acknowledged without calling P1 at all.

Failures. P1 down, slow or answering 5xx/429 (DependencyUnavailableError), or answering
something unreadable: the handler raises, the function answers 500, and Pub/Sub redelivers
with the subscription's backoff; after `max_delivery_attempts` Pub/Sub itself moves the
message to `p1-reports-dead-letter`. A 4xx (PeerRejectedError: our credentials, our data) will
not heal by retrying: the message is published to `p1-reports-dead-letter` at once (with the
reason), recorded as `rejected`, and acknowledged. Operators read the dead letters from the
pull subscription `p1-reports-dead-letter-inspect` and, once the cause is fixed, replay them
(`python -m emulator.replay_dead_letters`), which republishes with the attribute
`replay=true`: a replayed message is tried again even when the report was `rejected`.

Each Firestore step is a unit of work (common/services/unit_of_work.py), and P1 and the
dead-letter topic are called only between them, never inside an attempt (an attempt may run
more than once): first the claim (read the report: done already? else count the attempt and
read the patient), then the call to P1, then its outcome (`reported`, `rejected`, or the last
error).

Nothing stays in between. The claim marks the report `pending`, with the event (no PESEL)
and when it is due again (`retry_after`): a report whose deliveries all gave up (P1 down for
longer than the subscription's ten attempts, then dead-lettered) is reported by the scheduled
sweeper (common/services/sweeper.py, `resume`) through the same steps, still once in effect.

Nothing here logs or stores a PESEL: it is decrypted from `patients/{patient_key}.pesel_enc`
(common/services/patients.py) only to build the request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from google.cloud import firestore
from pydantic import ValidationError

from common import structured_log as log
from common.adapters.firestore_store import PATIENTS
from common.adapters.http_errors import PeerProtocolError, PeerRejectedError
from common.adapters.p1_client import P1Ack, P1VaccinationRecord
from common.adapters.pubsub_publisher import EventPublisher
from common.adapters.vault import FieldVault
from common.domain.calendar import WARSAW
from common.domain.errors import DependencyUnavailableError
from common.domain.events import VaccinationCompleted
from common.services.patients import pesel_of
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner

P1_REPORTS = "p1_reports"
P1_DEAD_LETTER_TOPIC = "p1-reports-dead-letter"
HANDLED_TYPE = VaccinationCompleted.event_type
# A pending report is due for the sweeper this long after its last attempt: the push
# subscription's own redeliveries (10-600 s apart, 10 of them) keep moving it on meanwhile.
RESUME_AFTER = timedelta(minutes=15)
# How long the outcome is kept (Firestore TTL on expires_at; docs/retention.md).
REPORT_KEEP = timedelta(days=180)


class VaccinationSink(Protocol):
    def report_vaccination(self, record: P1VaccinationRecord) -> P1Ack: ...


@dataclass(frozen=True)
class _Claim:
    """What the claim decided: done already (`outcome`), or the record to send (None when
    the patient is unknown to us)."""

    outcome: str | None = None
    record: P1VaccinationRecord | None = None


def _contended() -> Exception:
    return DependencyUnavailableError("the P1 report record keeps changing; retry later")


def _message(data: dict[str, Any] | None) -> tuple[bytes, dict[str, str]]:
    message = (data or {}).get("message") or {}
    attributes = {str(k): str(v) for k, v in (message.get("attributes") or {}).items()}
    try:
        raw = base64.b64decode(message.get("data", ""), validate=False)
    except (ValueError, TypeError):
        raw = b""
    return raw, attributes


class P1Reporter:
    def __init__(
        self,
        units: UnitOfWorkRunner,
        p1: VaccinationSink | Callable[[], VaccinationSink],
        publisher: EventPublisher,
        vault: FieldVault | None = None,
    ) -> None:
        self.units = units
        # A factory is welcome: the events this function ignores need no P1 configuration.
        self._p1 = p1
        self.publisher = publisher
        self.vault = vault  # opens the patient's pesel_enc

    @property
    def p1(self) -> VaccinationSink:
        if not hasattr(self._p1, "report_vaccination"):
            self._p1 = self._p1()  # type: ignore[operator]
        return self._p1  # type: ignore[return-value]

    def handle(self, data: dict[str, Any], now: datetime) -> str:
        """Handle one push delivery; returns the outcome, or raises to be redelivered."""
        raw, attributes = _message(data)
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self._dead_letter(raw, attributes, "malformed_message", None)
            return "malformed"
        event_type = attributes.get("event_type") or payload.get("event_type")
        if event_type != HANDLED_TYPE:
            return "ignored"
        fields = {k: v for k, v in payload.items() if k not in ("event_type", "schema_version")}
        try:
            event = VaccinationCompleted.model_validate(fields)
        except ValidationError:
            self._dead_letter(raw, attributes, "invalid_event", None)
            return "malformed"
        return self.report(event, raw, attributes, now)

    def report(
        self, event: VaccinationCompleted, raw: bytes, attributes: dict[str, str], now: datetime
    ) -> str:
        vaccination_id = event.appointment_id
        claim = self._claim(event, attributes.get("replay") == "true", now)
        if claim.outcome is not None:
            return claim.outcome
        if claim.record is None:
            return self._reject(vaccination_id, raw, attributes, "patient_unknown", None, now)
        try:
            ack = self.p1.report_vaccination(claim.record)
        except PeerRejectedError as err:
            return self._reject(vaccination_id, raw, attributes, err.code, err.status, now)
        except (DependencyUnavailableError, PeerProtocolError) as err:
            self._save(
                vaccination_id,
                {
                    "last_error": {"kind": type(err).__name__, "at": now},
                    "retry_after": now + RESUME_AFTER,
                },
            )
            log.warning("P1 report failed, to be redelivered", vaccination_id=vaccination_id)
            if isinstance(err, PeerProtocolError):
                raise DependencyUnavailableError("P1 answered something unreadable") from None
            raise
        self._save(
            vaccination_id,
            {
                "status": "reported",
                "p1_ack": ack.model_dump(mode="json"),
                "reported_at": now,
                "last_error": None,  # over: cleared (null), the same in every store
                "retry_after": None,
                "expires_at": now + REPORT_KEEP,
            },
        )
        log.info(
            "vaccination reported to P1",
            vaccination_id=vaccination_id,
            p1_record_id=ack.p1_record_id,
            duplicate=ack.duplicate,
        )
        return "reported"

    def resume(self, vaccination_id: str, now: datetime) -> str:
        """The sweeper's attempt at a report left `pending` (module docstring)."""
        found = self.units.reader().get(P1_REPORTS, vaccination_id)
        stored = found.data if found is not None else {}
        if stored.get("status") != "pending" or not isinstance(stored.get("event"), dict):
            return "not_pending"
        try:
            event = VaccinationCompleted.model_validate(stored["event"])
        except ValidationError:
            return "malformed"
        raw = json.dumps(event.envelope()).encode()
        attributes = {"event_type": event.event_type, "event_id": event.event_id, "swept": "true"}
        return self.report(event, raw, attributes, now)

    def _claim(self, event: VaccinationCompleted, replayed: bool, now: datetime) -> _Claim:
        """One unit of work: done already? Else count this attempt and read the patient."""
        vaccination_id = event.appointment_id

        def attempt(uow: UnitOfWork) -> _Claim:
            found = uow.get(P1_REPORTS, vaccination_id)
            known = found.data if found is not None else {}
            if known.get("status") == "reported":
                return _Claim(outcome="already_reported")
            if known.get("status") == "rejected" and not replayed:
                # In the dead letters already; a replay (replay=true) retries it.
                return _Claim(outcome="already_rejected")
            uow.set(
                P1_REPORTS,
                vaccination_id,
                {
                    "vaccination_id": vaccination_id,
                    "event_id": event.event_id,
                    "patient_key": event.patient_key,
                    "point_id": event.point_id,
                    "attempts": firestore.Increment(1),
                    "last_attempt_at": now,
                    # For the sweeper: the event itself (no PESEL in it) and when it is due.
                    "status": "pending",
                    "event": event.model_dump(mode="json"),
                    "retry_after": now + RESUME_AFTER,
                },
                merge=True,
            )
            return _Claim(record=self._record(uow, event, now))

        return self.units.run(attempt, gave_up=_contended)

    def _save(self, vaccination_id: str, fields: dict[str, Any]) -> None:
        """An outcome (or the last error) on the report, in its own unit of work."""

        def attempt(uow: UnitOfWork) -> None:
            uow.set(P1_REPORTS, vaccination_id, fields, merge=True)

        self.units.run(attempt, gave_up=_contended)

    def _record(
        self, uow: UnitOfWork, event: VaccinationCompleted, now: datetime
    ) -> P1VaccinationRecord | None:
        patient = uow.get(PATIENTS, event.patient_key)
        pesel = pesel_of(
            patient.data if patient is not None else None,
            event.patient_key,
            self.vault,
            now.astimezone(WARSAW).date(),
        )
        if pesel is None:
            return None
        return P1VaccinationRecord(
            vaccination_id=event.appointment_id,
            pesel=pesel.value,
            product=event.product,
            lot_number=event.lot_number,
            dose_number=event.dose_number,
            dose_kind=event.dose_kind,
            given_on=event.given_on,
            point_id=event.point_id,
        )

    def _reject(
        self,
        vaccination_id: str,
        raw: bytes,
        attributes: dict[str, str],
        code: str,
        status: int | None,
        now: datetime,
    ) -> str:
        # Dead-letter first: if recording fails after it, the redelivery dead-letters again
        # (a duplicate an operator may replay harmlessly), never nothing.
        self._dead_letter(raw, attributes, code, status)
        self._save(
            vaccination_id,
            {
                "status": "rejected",
                "error": {"code": code, "status": status},
                "rejected_at": now,
                "retry_after": None,
                "expires_at": now + REPORT_KEEP,
            },
        )
        log.error(
            "P1 refused a vaccination report: dead-lettered",
            vaccination_id=vaccination_id,
            code=code,
            status=status,
        )
        return "rejected"

    def _dead_letter(
        self, raw: bytes, attributes: dict[str, str], reason: str, status: int | None
    ) -> None:
        extra = {"dead_letter_reason": reason}
        if status is not None:
            extra["peer_status"] = str(status)
        self.publisher.publish(P1_DEAD_LETTER_TOPIC, raw, {**attributes, **extra})
