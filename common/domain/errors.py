"""Domain errors: one class per refusal reason, each with a stable API code and HTTP status.

The first docstring line of each subclass is its default, user-facing message, so the
message catalogue lives next to the code that raises it.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

# An 11-digit run is what a PESEL looks like; errors travel to logs and API bodies, so we
# scrub such runs defensively even though callers are told never to pass one. Our ids are
# 32 hex characters, and one in twenty holds 11 digits in a row: a hex id (20 or more hex
# characters, a letter among them) is kept whole, or a client would get "fdb2…[redacted]…".
_ELEVEN_DIGITS = re.compile(
    r"(?P<hex_id>(?<![0-9A-Za-z])(?=[0-9a-f]*[a-f])[0-9a-f]{20,}(?![0-9A-Za-z]))"
    r"|(?<!\d)\d{11}(?!\d)"
)
_REDACTED = "[redacted]"


def _keep_ids(match: re.Match[str]) -> str:
    return match.group("hex_id") or _REDACTED


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return _ELEVEN_DIGITS.sub(_keep_ids, value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(v) for v in value)
    return value


class DomainError(Exception):
    """The request was refused by a domain rule."""

    code: ClassVar[str] = "domain_error"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None):
        self.message: str = _redact(message) if message else self.default_message()
        self.details: dict[str, Any] = _redact(dict(details or {}))
        super().__init__(self.message)

    @classmethod
    def default_message(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else cls.code

    def to_dict(self) -> dict[str, Any]:
        """Shape used in API error bodies."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidPeselError(DomainError):
    """The PESEL number is invalid."""

    code = "invalid_pesel"
    http_status = 400


class UnknownProductError(DomainError):
    """Unknown vaccine product."""

    code = "unknown_product"
    http_status = 400


class ReferralMissingError(DomainError):
    """No active e-referral for vaccination was found."""

    code = "referral_missing"
    http_status = 403


class ReferralExpiredError(DomainError):
    """The e-referral is no longer valid on the chosen visit date."""

    code = "referral_expired"
    http_status = 403


class ReferralNotYetValidError(DomainError):
    """The e-referral is not yet valid on the chosen visit date."""

    code = "referral_not_yet_valid"
    http_status = 403


class ReferralUsedError(DomainError):
    """The e-referral has already been used."""

    code = "referral_used"
    http_status = 409


class CohortNotOpenError(DomainError):
    """Registration for your age group is not open yet."""

    code = "cohort_not_open"
    http_status = 403


class AgeNotAllowedError(DomainError):
    """This vaccine is not authorised for the patient's age on the visit date."""

    code = "age_not_allowed"
    http_status = 403


class DoseIntervalError(DomainError):
    """The visit date does not respect the required interval between doses."""

    code = "dose_interval_violated"
    http_status = 400


class BoosterNotAllowedError(DomainError):
    """A booster dose is not allowed with this product or at this time."""

    code = "booster_not_allowed"
    http_status = 403


class ProductNotOfferedError(DomainError):
    """This vaccine is not offered at the chosen vaccination point."""

    code = "product_not_offered"
    http_status = 400


class SlotUnavailableError(DomainError):
    """The chosen slot is no longer available."""

    code = "slot_unavailable"
    http_status = 409


class AlreadyBookedError(DomainError):
    """An appointment is already booked for this dose."""

    code = "already_booked"
    http_status = 409


class AppointmentNotFoundError(DomainError):
    """Appointment not found."""

    code = "appointment_not_found"
    http_status = 404


class InvalidStateTransitionError(DomainError):
    """The appointment cannot change to the requested state."""

    code = "invalid_state"
    http_status = 409


class ValidationFailedError(DomainError):
    """The request is invalid."""

    code = "invalid_request"
    http_status = 400


class IdempotencyKeyMismatchError(DomainError):
    """The idempotency key was already used with a different request."""

    code = "idempotency_key_mismatch"
    http_status = 422


class RequestInProgressError(DomainError):
    """A request with this idempotency key is still being processed."""

    code = "request_in_progress"
    http_status = 409


class UnauthenticatedError(DomainError):
    """Authentication is required."""

    code = "unauthenticated"
    http_status = 401


class ForbiddenError(DomainError):
    """You are not allowed to perform this action."""

    code = "forbidden"
    http_status = 403


class NotFoundError(DomainError):
    """Resource not found."""

    code = "not_found"
    http_status = 404


class DependencyUnavailableError(DomainError):
    """A required service is temporarily unavailable; please retry shortly."""

    code = "dependency_unavailable"
    http_status = 503
    retry_after_s: int = 5

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        retry_after_s: int | None = None,
    ):
        super().__init__(message, details=details)
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class OverloadedError(DependencyUnavailableError):
    """Too many requests at once for this right now; please retry shortly with the same key."""

    code = "overloaded"
    retry_after_s = 1


class PatientMismatchError(DomainError):
    """The PESEL given does not match the appointment's patient."""

    code = "patient_mismatch"
    http_status = 409


class SlotExistsError(DomainError):
    """This slot already exists in the point's calendar."""

    code = "slot_exists"
    http_status = 409


class SlotNotFoundError(DomainError):
    """No such slot in the point's calendar."""

    code = "slot_not_found"
    http_status = 404


class PointNotFoundError(DomainError):
    """No such vaccination point."""

    code = "point_not_found"
    http_status = 404


class VisitNotDueError(DomainError):
    """The visit cannot be recorded yet: its day (or start) has not come."""

    code = "visit_not_due"
    http_status = 409


class CheckInRequiredError(DomainError):
    """Check the patient in (the PESEL from their identity document) before recording the dose."""

    code = "check_in_required"
    http_status = 409


class CallbackNotFoundError(DomainError):
    """No such callback request."""

    code = "callback_not_found"
    http_status = 404


class CalendarBusyError(DomainError):
    """The point's calendar is being changed by someone else; try again."""

    code = "calendar_busy"
    http_status = 409


class SmsDialogBusyError(DomainError):
    """An earlier SMS of this conversation is still being handled; deliver this one later."""

    code = "sms_dialog_busy"
    http_status = 409


ALL_ERRORS: tuple[type[DomainError], ...] = tuple(DomainError.__subclasses__())
"""Every concrete error, e.g. for OpenAPI docs or a code-uniqueness check."""
