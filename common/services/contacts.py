"""A patient's phone number: where it comes from, how it is verified, who may set it.

Confirmations and reminders go to `patients/{patient_key}.phone`, and to nothing else. That
number comes, with its provenance (`phone_source`, `phone_verified_at`), from one of:

- **P1** (`p1`): the number of the patient's IKP account, verified by IKP. Asked of P1 through
  our P1 client (mutual TLS) the first time a notification or the SMS dialog needs a number
  and finds none on file; kept on file then. When P1 has none, that is remembered for a day
  (`phone_checked_at`) so that every event does not ask again.
- **the patient** (`patient`): `POST /v1/me/phone` sends a one-time code to the number given;
  `POST /v1/me/phone/verify` with that code stores it. The code is six digits derived by a
  keyed HMAC from a random nonce kept with the request (`phone_codes/{patient_key}`), so the
  code itself is stored nowhere, not even hashed, and the SMS can be sent again byte for byte
  under the same notification id. It expires after 10 minutes and allows 5 attempts; a
  patient asks for at most 5 codes an hour, and a number receives at most 3 codes an hour
  (common/services/phone_limits.py).
- **the hotline** (`hotline`): an agent sets the number a caller gives
  (`POST /v1/patients/phone`, with a reason), audited in the same commit.

A number set by the patient or an agent is kept over one from P1 (the person said so more
recently); a new one from either replaces the old. Phone numbers are never logged, never in
an event, never in a document id (keyed hashes), and shown back only masked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common import structured_log as log
from common.adapters.firestore_store import PATIENTS
from common.adapters.p1_client import P1Profile
from common.adapters.vault import FieldVault, VaultError
from common.domain import sms_texts
from common.domain.errors import DomainError, ForbiddenError, OverloadedError
from common.domain.phones import masked_phone, polish_mobile
from common.domain.visits import local_day
from common.services.actions import Subject
from common.services.idempotency import IdempotencyScope, StoredResponse
from common.services.notifications import SmsSender, short_hash
from common.services.patients import pesel_of
from common.services.phone_limits import PhoneLimits
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner

PHONE_CODES = "phone_codes"
CODE_TTL = timedelta(minutes=10)
CODE_ATTEMPTS = 5
# P1 had no number for the patient: ask again after this long, not on every event.
P1_RECHECK = timedelta(days=1)
SOURCES = ("p1", "patient", "hotline")


class PhoneCodeMissingError(DomainError):
    """There is no phone code waiting for you: ask for a new one."""

    code = "no_pending_code"
    http_status = 409


class PhoneCodeExhaustedError(DomainError):
    """Too many wrong codes: ask for a new one."""

    code = "too_many_attempts"
    http_status = 429


class PhoneLimitError(DomainError):
    """Too many codes for now: try again in an hour."""

    code = "rate_limited"
    http_status = 429


class ProfileSource(Protocol):
    def patient_profile(self, pesel: str) -> P1Profile | None: ...


def _phone(value: str) -> str:
    phone = polish_mobile(value)
    if phone is None:
        raise ValueError("a Polish mobile number: +48 and 9 digits")
    return phone


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class PhoneCodeRequest(_Body):
    phone: str = Field(max_length=20)

    @field_validator("phone")
    @classmethod
    def _mobile(cls, value: str) -> str:
        return _phone(value)


class PhoneCodeVerify(_Body):
    code: str = Field(pattern=r"^\d{6}$")


class SetPhoneRequest(_Body):
    pesel: str = Field(pattern=r"^\d{11}$")
    phone: str = Field(max_length=20)
    reason: str = Field(min_length=3, max_length=500)

    @field_validator("phone")
    @classmethod
    def _mobile(cls, value: str) -> str:
        return _phone(value)


def one_time_code(secret: bytes, purpose: str, nonce: str) -> str:
    """Six digits derived from a random nonce under a key of its own (domain-separated from
    PESEL_HASH_KEY): the code is never stored, and the same nonce gives the same text."""
    key = hmac.new(secret, b"one-time-codes", hashlib.sha256).digest()
    digest = hmac.new(key, f"{purpose}|{nonce}".encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"


def codes_match(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def phone_fields(phone: str, source: str, now: datetime, **extra: Any) -> dict[str, Any]:
    assert source in SOURCES
    return {
        "phone": phone,
        "phone_source": source,
        "phone_verified_at": now,
        "phone_updated_at": now,
        "phone_checked_at": None,
        **extra,
    }


def _busy() -> Exception:
    return OverloadedError("the patient register is busy right now; try again shortly")


class ContactService:
    def __init__(
        self,
        units: UnitOfWorkRunner,
        vault: FieldVault,
        secret: bytes,
        limits: PhoneLimits,
        sender: SmsSender | Callable[[], SmsSender] | None = None,
        profiles: Callable[[], ProfileSource | None] | None = None,
    ) -> None:
        self.units = units
        self.vault = vault
        self.secret = secret
        self.limits = limits
        self._sender = sender
        # A factory: P1 is configured only where a function may reach it (None: not here).
        self._profiles = profiles or (lambda: None)

    @property
    def sender(self) -> SmsSender:
        if self._sender is not None and not isinstance(self._sender, SmsSender):
            self._sender = self._sender()
        if self._sender is None:
            raise RuntimeError("no SMS gateway configured for one-time codes")
        return self._sender

    # -- the number on file, or P1's ---------------------------------------------------------
    def phone_of(self, patient_key: str, now: datetime, pesel: Any = None) -> str | None:
        """The patient's verified number (from P1 when none is on file yet); None if none.

        `pesel` (a Pesel) spares decrypting the stored one when the caller has it. P1 is asked
        outside any unit of work; a P1 that is down raises DependencyUnavailableError."""
        found = self.units.reader().get(PATIENTS, patient_key)
        data = found.data if found is not None else {}
        phone = polish_mobile(data.get("phone"))
        if phone is not None:
            return phone
        source = self._profiles()
        if source is None:
            return None
        checked = data.get("phone_checked_at")
        if isinstance(checked, datetime) and checked > now - P1_RECHECK:
            return None
        pesel = pesel or pesel_of(data, patient_key, self.vault, local_day(now))
        if pesel is None:
            return None
        profile = source.patient_profile(pesel.value)
        phone = polish_mobile(profile.phone) if profile is not None else None
        verified = profile.phone_verified_at if profile is not None else None
        return self._keep_p1(patient_key, phone, verified or now, now)

    def _keep_p1(
        self, patient_key: str, phone: str | None, verified_at: datetime, now: datetime
    ) -> str | None:
        def attempt(uow: UnitOfWork) -> str | None:
            found = uow.get(PATIENTS, patient_key)
            if found is None:
                # Not a patient of ours (no referral synced): nothing is kept about them, not
                # even a number (an SMS naming a stranger's PESEL must not make us store it).
                return phone
            current = polish_mobile(found.data.get("phone"))
            if current is not None:
                return current  # set meanwhile (the patient, an agent): theirs stands
            if phone is None:
                uow.update(PATIENTS, patient_key, {"phone_checked_at": now})
                return None
            fields = phone_fields(phone, "p1", now, phone_verified_at=verified_at)
            uow.update(PATIENTS, patient_key, fields, if_version=found.version)
            return phone

        found_phone = self.units.run(attempt, gave_up=_busy)
        log.info("phone looked up in P1", found=found_phone is not None)
        return found_phone

    # -- the patient gives a number: a code to it, then the code back ------------------------
    def request_code(
        self,
        patient_key: str,
        body: PhoneCodeRequest,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        phone = body.phone

        def attempt(uow: UnitOfWork) -> StoredResponse:
            by_patient = self.limits.take(
                uow, self.limits.patient_doc(patient_key), ["code_request"], now
            )
            to_phone = self.limits.take(uow, self.limits.phone_doc(phone), ["code"], now)
            if by_patient != "ok" or to_phone != "ok":
                raise PhoneLimitError()
            nonce = secrets.token_hex(16)
            uow.set(
                PHONE_CODES,
                patient_key,
                {
                    "patient_key": patient_key,
                    "phone_enc": self.vault.encrypt(phone, self._code_context(patient_key)),
                    "nonce": nonce,
                    "attempts": 0,
                    "created_at": now,
                    "expires_at": now + CODE_TTL,
                },
            )
            return uow.respond(
                StoredResponse(
                    202,
                    {
                        "phone": masked_phone(phone),
                        "code_expires_at": (now + CODE_TTL).isoformat(),
                    },
                )
            )

        # A refusal (PhoneLimitError) raises out of the attempt: nothing is committed, so a
        # refused request counts nothing either.
        return self.units.run(attempt, idem=idem, gave_up=_busy)

    def deliver_code(self, patient_key: str, now: datetime) -> str:
        """Text the pending code (again: the gateway sends one message per notification id).
        Called after `request_code` and after its replays, so a send that failed the first
        time is made by the client's retry with the same Idempotency-Key."""
        found = self.units.reader().get(PHONE_CODES, patient_key)
        pending = found.data if found is not None else None
        if not pending or pending["expires_at"] <= now:
            return "none"
        try:
            phone = self.vault.decrypt(pending["phone_enc"], self._code_context(patient_key))
        except VaultError:
            return "none"
        code = one_time_code(self.secret, f"phone|{patient_key}", pending["nonce"])
        minutes = int(CODE_TTL.total_seconds() // 60)
        return self.sender.send_once(
            f"phone-code-{short_hash(patient_key, pending['nonce'])}",
            phone,
            lambda: sms_texts.phone_code(code, minutes),
            {"kind": "phone.code", "patient_key": patient_key},
            now,
            keep_text=False,
        )

    def verify_code(
        self,
        patient_key: str,
        body: PhoneCodeVerify,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        def attempt(uow: UnitOfWork) -> StoredResponse:
            found = uow.get(PHONE_CODES, patient_key)
            pending = found.data if found is not None else None
            if found is None or not pending or pending["expires_at"] <= now:
                raise PhoneCodeMissingError()
            if int(pending.get("attempts", 0)) >= CODE_ATTEMPTS:
                raise PhoneCodeExhaustedError()
            expected = one_time_code(self.secret, f"phone|{patient_key}", pending["nonce"])
            if not codes_match(expected, body.code):
                left = CODE_ATTEMPTS - int(pending.get("attempts", 0)) - 1
                # The wrong guess is counted (committed with its answer): a retry with the same
                # key replays it, a new guess needs a new key and uses up an attempt.
                uow.update(
                    PHONE_CODES,
                    patient_key,
                    {"attempts": int(pending.get("attempts", 0)) + 1},
                    if_version=found.version,
                )
                return uow.respond(
                    StoredResponse(
                        422,
                        {
                            "error": {
                                "code": "wrong_code",
                                "message": "the code does not match",
                                "details": {"attempts_left": left},
                            }
                        },
                    )
                )
            try:
                phone = self.vault.decrypt(pending["phone_enc"], self._code_context(patient_key))
            except VaultError:
                raise PhoneCodeMissingError() from None
            uow.set(
                PATIENTS,
                patient_key,
                {"patient_key": patient_key, **phone_fields(phone, "patient", now)},
                merge=True,
            )
            uow.delete(PHONE_CODES, patient_key, if_version=found.version)
            return uow.respond(StoredResponse(200, self._view(phone, "patient", now)))

        return self.units.run(attempt, idem=idem, gave_up=_busy)

    # -- the hotline sets a caller's number --------------------------------------------------
    def set_by_agent(
        self,
        actor: Any,
        patient_key: str,
        phone: str,
        now: datetime,
        idem: IdempotencyScope | None = None,
    ) -> StoredResponse:
        if actor.role not in ("agent", "admin"):
            raise ForbiddenError(f"this operation is not open to the role '{actor.role}'")

        def attempt(uow: UnitOfWork) -> StoredResponse:
            fields = phone_fields(phone, "hotline", now, phone_set_by=actor.uid)
            uow.set(PATIENTS, patient_key, {"patient_key": patient_key, **fields}, merge=True)
            # Who, for whom, why: the reason travels on the actor; never the number itself.
            uow.audit(actor, "patient.phone_set", [Subject("", patient_key)], now)
            return uow.respond(StoredResponse(200, self._view(phone, "hotline", now)))

        return self.units.run(attempt, idem=idem, gave_up=_busy)

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _code_context(patient_key: str) -> str:
        return f"phone-code|{patient_key}"

    @staticmethod
    def _view(phone: str, source: str, now: datetime) -> dict[str, Any]:
        return {
            "phone": masked_phone(phone),
            "phone_source": source,
            "phone_verified_at": now.isoformat(),
        }
