"""Who is calling: Firebase / Identity Platform ID tokens verified with firebase-admin.

With FIREBASE_AUTH_EMULATOR_HOST set, firebase-admin accepts unsigned tokens and, as measured
here, does not even reject an expired one, so the expiry is checked here as well; and that
variable is honoured only in emulator mode (LOCAL_STACK=1, common/config.py): anywhere else a
token is refused before firebase-admin sees it. Outside emulator mode a staff, agent or admin
token must also show a second factor (Identity Platform MFA). docs/identity.md: who issues
these tokens and why each check is here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Literal

import firebase_admin
from firebase_admin import auth as firebase_auth

from common import clock
from common.adapters.firebase_app import firebase_app
from common.config import emulator_mode
from common.domain.errors import DependencyUnavailableError, ForbiddenError, UnauthenticatedError
from common.domain.pesel import is_valid_pesel

Role = Literal["patient", "agent", "staff", "admin"]
ROLES: tuple[Role, ...] = ("patient", "agent", "staff", "admin")


@dataclass(frozen=True)
class Principal:
    uid: str
    role: Role
    # The raw PESEL stays inside this object: repr=False keeps it out of any log line.
    pesel: str | None = field(default=None, repr=False)
    point_id: str | None = None
    # A hotline supervisor: an agent whose patient look-ups have no quota (claim `supervisor`).
    supervisor: bool = False

    def require_role(self, *roles: Role) -> None:
        if self.role not in roles:
            raise ForbiddenError(f"this operation is not open to the role '{self.role}'")


def _firebase_app(project_id: str) -> firebase_admin.App:
    return firebase_app(project_id, project_id)


def bearer_token(authorization_header: str | None) -> str:
    if not authorization_header:
        raise UnauthenticatedError("missing Authorization: Bearer <ID token>")
    scheme, _, token = authorization_header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthenticatedError("the Authorization header must be 'Bearer <ID token>'")
    return token.strip()


def verify_principal(
    authorization_header: str | None, project_id: str, now: float | None = None
) -> Principal:
    token = bearer_token(authorization_header)
    local = emulator_mode()
    if os.environ.get("FIREBASE_AUTH_EMULATOR_HOST") and not local:
        # firebase-admin would skip the signature check: never outside emulator mode.
        raise UnauthenticatedError("ID tokens cannot be verified here (emulator host set)")
    # Outside the try: a fault in our own set-up must never be blamed on the caller's token.
    app = _firebase_app(project_id)
    try:
        claims = firebase_auth.verify_id_token(token, app=app)
    except firebase_auth.CertificateFetchError as err:
        # Google's signing certificates could not be fetched: retry, do not blame the token.
        raise DependencyUnavailableError() from err
    except (ValueError, firebase_auth.InvalidIdTokenError) as err:
        raise UnauthenticatedError("the ID token is not valid") from err
    current = time.time() if now is None else now
    expires = claims.get("exp")
    if isinstance(expires, bool) or not isinstance(expires, int | float) or expires <= current:
        raise UnauthenticatedError("the ID token has expired or carries no valid expiry")
    role = claims.get("role")
    if role not in ROLES:
        raise ForbiddenError("the ID token carries no known role")
    pesel = claims.get("pesel")
    point_id = claims.get("point_id")
    today = clock.today_warsaw()
    if role == "patient" and not (isinstance(pesel, str) and is_valid_pesel(pesel, today)):
        # The token itself is at fault, not the request: the caller must sign in again.
        raise UnauthenticatedError("a patient token must carry the patient's valid PESEL")
    if role == "staff" and not isinstance(point_id, str):
        raise ForbiddenError("a staff token must name its vaccination point")
    if role != "patient" and not local and not _second_factor(claims):
        # Managed accounts sign in with a password and a second factor (docs/identity.md);
        # without it the token may only be used to enrol one, not to call the API.
        raise ForbiddenError("this account must sign in with its second factor (MFA)")
    return Principal(
        uid=str(claims["uid"]),
        role=role,
        pesel=pesel if role == "patient" else None,
        point_id=point_id if role == "staff" else None,
        supervisor=role == "agent" and claims.get("supervisor") is True,
    )


def _second_factor(claims: dict) -> bool:
    firebase = claims.get("firebase")
    return isinstance(firebase, dict) and bool(firebase.get("sign_in_second_factor"))
