"""Identity Platform's user admin API (firebase-admin `auth`), for managed accounts only.

Staff, agents and admins are Identity Platform users whose custom claims (`role`, and
`point_id` for staff) are set here, by the accounts service, never by the users themselves.
Patients are not managed here: they come from the national login node (docs/identity.md).
Locally firebase-admin talks to the Auth emulator (FIREBASE_AUTH_EMULATOR_HOST, emulator
mode only: common/config.py); deployed, to Identity Platform with the function's own service
account (a custom role with the firebaseauth.users.* permissions it needs, nothing more).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import firebase_admin
from firebase_admin import auth as firebase_auth
from firebase_admin import exceptions as firebase_errors

from common.adapters.firebase_app import firebase_app
from common.domain.accounts import AccountExistsError, AccountNotFoundError
from common.domain.errors import DependencyUnavailableError


@dataclass(frozen=True)
class AccountRecord:
    uid: str
    email: str | None
    display_name: str | None
    disabled: bool
    claims: dict[str, Any] = field(default_factory=dict)


def _app(project_id: str) -> firebase_admin.App:
    return firebase_app(f"identity-admin-{project_id}", project_id)


class IdentityPlatformAdmin:
    """The accounts service's adapter: create, read, change claims, disable, revoke."""

    def __init__(self, project_id: str) -> None:
        self._app = _app(project_id)

    def create_user(
        self, email: str, display_name: str, password: str | None = None
    ) -> AccountRecord:
        try:
            user = firebase_auth.create_user(
                email=email,
                display_name=display_name,
                password=password,
                email_verified=False,
                app=self._app,
            )
        except firebase_auth.EmailAlreadyExistsError:
            raise AccountExistsError() from None
        except firebase_errors.FirebaseError as err:
            raise _unavailable(err) from err
        return _record(user)

    def get_user(self, uid: str) -> AccountRecord:
        try:
            return _record(firebase_auth.get_user(uid, app=self._app))
        except firebase_auth.UserNotFoundError:
            raise AccountNotFoundError() from None
        except firebase_errors.FirebaseError as err:
            raise _unavailable(err) from err

    def find_by_email(self, email: str) -> AccountRecord | None:
        try:
            return _record(firebase_auth.get_user_by_email(email, app=self._app))
        except firebase_auth.UserNotFoundError:
            return None
        except firebase_errors.FirebaseError as err:
            raise _unavailable(err) from err

    def set_claims(self, uid: str, claims: dict[str, Any]) -> None:
        self._call(firebase_auth.set_custom_user_claims, uid, claims)

    def set_disabled(self, uid: str, disabled: bool) -> None:
        self._call(firebase_auth.update_user, uid, disabled=disabled)

    def revoke_sessions(self, uid: str) -> None:
        """Refresh tokens stop working: the user signs in again and gets the new claims."""
        self._call(firebase_auth.revoke_refresh_tokens, uid)

    def _call(self, operation: Any, uid: str, *args: Any, **kwargs: Any) -> None:
        try:
            operation(uid, *args, app=self._app, **kwargs)
        except firebase_auth.UserNotFoundError:
            raise AccountNotFoundError() from None
        except firebase_errors.FirebaseError as err:
            raise _unavailable(err) from err


def _record(user: firebase_auth.UserRecord) -> AccountRecord:
    return AccountRecord(
        uid=user.uid,
        email=user.email,
        display_name=user.display_name,
        disabled=bool(user.disabled),
        claims=dict(user.custom_claims or {}),
    )


def _unavailable(err: firebase_errors.FirebaseError) -> DependencyUnavailableError:
    return DependencyUnavailableError(f"Identity Platform: {err.code}")
