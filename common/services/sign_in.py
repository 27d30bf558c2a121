"""The identity blocking function's decisions (Identity Platform beforeCreate / beforeSignIn).

- A patient signs in through the national login node (the OIDC provider LOGIN_NODE_PROVIDER_ID):
  the node's ID token, forwarded by Identity Platform, is verified here against the node's
  keys, must assert a valid PESEL at a substantial or high level of assurance, and is used
  once (its id is recorded in `used_assertions`: a replayed assertion is refused). The answer
  gives this session's ID tokens `role=patient` and `pesel` as *session* claims: the PESEL is
  never stored on the Identity Platform user, which keeps only the node's opaque subject.
- Staff, agents and admins sign in with a password (and, deployed, a second factor): only an
  account the admin API made (a managed role in its claims) gets through; nobody signs up.
- Anything else (another provider, a self sign-up) is refused.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Protocol

from common.domain.accounts import AccountClaims
from common.domain.calendar import WARSAW
from common.domain.errors import DependencyUnavailableError
from common.domain.identity import SignInRefusedError, patient_claims, patient_from_claims
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner

USED_ASSERTIONS = "used_assertions"
PASSWORD_METHOD = "password"  # noqa: S105 (a sign-in method, not a secret)


class AssertionVerifier(Protocol):
    issuer: str

    def verify(self, id_token: Any, now: datetime) -> dict[str, Any]: ...


class SignInService:
    def __init__(self, units: UnitOfWorkRunner, verifier: AssertionVerifier, provider_id: str):
        self.units = units
        self.verifier = verifier
        self.provider_id = provider_id

    def decide(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        """The blocking function's answer to one verified event (Identity Platform's shape)."""
        event_type = event.get("event_type")
        method = event.get("sign_in_method")
        if method == self.provider_id:
            claims = self.verifier.verify(event.get("oauth_id_token"), now)
            assertion = patient_from_claims(claims, now.astimezone(WARSAW).date())
            if event_type == "beforeCreate":
                return {}  # the user is created with the node's subject only; claims follow
            self._use_once(assertion.assertion_id, assertion.expires_at, now)
            return {
                "userRecord": {
                    "updateMask": "sessionClaims",
                    "sessionClaims": patient_claims(assertion),
                }
            }
        if method == PASSWORD_METHOD:
            if event_type == "beforeCreate":
                raise SignInRefusedError("accounts are created by an administrator, not signed up")
            record = event.get("user_record") or {}
            if AccountClaims.from_claims(record.get("custom_claims") or {}) is None:
                raise SignInRefusedError("this account has no role: ask an administrator")
            return {}
        raise SignInRefusedError("this sign-in method is not accepted")

    def _use_once(self, assertion_id: str, expires_at: int, now: datetime) -> None:
        key = hashlib.sha256(f"{self.verifier.issuer}\x00{assertion_id}".encode()).hexdigest()
        marker = {
            "used_at": now,
            # Kept until the assertion could no longer be accepted anyway (Firestore TTL).
            "expires_at": datetime.fromtimestamp(expires_at + 3600, UTC),
        }

        def attempt(uow: UnitOfWork) -> None:
            uow.create(USED_ASSERTIONS, key, marker)

        def replayed(_: UnitOfWork) -> None:
            raise SignInRefusedError("this login-node assertion was used already")

        self.units.run(attempt, gave_up=DependencyUnavailableError, on_conflict=replayed)
