"""Managed accounts: an admin creates, disables and re-roles staff, agent and admin accounts.

Identity Platform holds the accounts and their claims (`role`, `point_id`); this service is
the only writer of those claims (the admin API: functions/create_account, update_account).
Every change is audited: the audit entry and the account's registry document
(`accounts/{uid}`: role, point, disabled, who changed it last) are committed through the one
unit of work, after Identity Platform took the change. If that commit fails the request fails
(503) and is retried with the same Idempotency-Key: every step is idempotent (the same claims
set again, the account found by its e-mail), so the retry completes the audit.

A changed role or a disabled account also revokes the account's refresh tokens: it cannot
renew its ID token and must sign in again (an ID token already issued lives out its hour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from common import structured_log as log
from common.adapters.identity_platform import AccountRecord
from common.domain.accounts import (
    AccountClaims,
    AccountExistsError,
    AccountNotFoundError,
    check_change,
)
from common.domain.errors import DependencyUnavailableError
from common.services.booking import Actor
from common.services.idempotency import IdempotencyScope, StoredResponse
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner

ACCOUNTS = "accounts"


class IdentityAdmin(Protocol):
    def create_user(
        self, email: str, display_name: str, password: str | None = None
    ) -> AccountRecord: ...

    def get_user(self, uid: str) -> AccountRecord: ...

    def find_by_email(self, email: str) -> AccountRecord | None: ...

    def set_claims(self, uid: str, claims: dict[str, Any]) -> None: ...

    def set_disabled(self, uid: str, disabled: bool) -> None: ...

    def revoke_sessions(self, uid: str) -> None: ...


@dataclass(frozen=True)
class CreateAccount:
    email: str
    display_name: str
    claims: AccountClaims
    # Local demo accounts only (emulator/seed): production hands out a set-up link instead.
    password: str | None = None


@dataclass(frozen=True)
class UpdateAccount:
    uid: str
    role: str | None = None
    point_id: str | None = None
    disabled: bool | None = None


def account_view(record: AccountRecord, claims: AccountClaims | None) -> dict[str, Any]:
    return {
        "uid": record.uid,
        "email": record.email,
        "display_name": record.display_name,
        "role": claims.role if claims else None,
        "point_id": claims.point_id if claims else None,
        "disabled": record.disabled,
    }


class AccountsService:
    def __init__(self, units: UnitOfWorkRunner, identity: IdentityAdmin) -> None:
        self.units = units
        self.identity = identity

    def create(
        self, command: CreateAccount, actor: Actor, now: datetime, idem: IdempotencyScope | None
    ) -> StoredResponse:
        email = command.email.strip().lower()
        existing = self.identity.find_by_email(email)
        if existing is not None:
            # A retry of this very request (same key) finds the account it made: complete it.
            # Anyone else's account with this address is not taken over.
            if AccountClaims.from_claims(existing.claims) != command.claims or idem is None:
                raise AccountExistsError()
            record = existing
        else:
            log.info("account change requested", action="account.created", actor=actor.uid)
            record = self.identity.create_user(email, command.display_name, command.password)
        self.identity.set_claims(record.uid, command.claims.as_claims())
        # No password travels here: the person sets one through Identity Platform's password
        # e-mail from the sign-in page, then enrols a second factor (docs/identity.md).
        body: dict[str, Any] = {"account": account_view(record, command.claims)}
        return self._audit(record, command.claims, actor, "account.created", now, idem, 201, body)

    def update(
        self, command: UpdateAccount, actor: Actor, now: datetime, idem: IdempotencyScope | None
    ) -> StoredResponse:
        record = self.identity.get_user(command.uid)
        current = AccountClaims.from_claims(record.claims)
        if current is None:
            raise AccountNotFoundError()  # a patient, or an account not managed here
        role = command.role or current.role
        if command.role is not None and command.role != "staff" and command.point_id is None:
            point = None
        else:
            point = command.point_id if command.point_id is not None else current.point_id
        wanted = AccountClaims(role=role, point_id=point if role == "staff" else None)  # type: ignore[arg-type]
        disabled = record.disabled if command.disabled is None else command.disabled
        check_change(
            actor.uid,
            record.uid,
            demote_or_disable=(disabled and not record.disabled) or wanted.role != current.role,
        )
        log.info("account change requested", action="account.updated", actor=actor.uid)
        if wanted != current:
            self.identity.set_claims(record.uid, wanted.as_claims())
        if disabled != record.disabled:
            self.identity.set_disabled(record.uid, disabled)
        if wanted != current or disabled:
            self.identity.revoke_sessions(record.uid)
        changed = AccountRecord(
            record.uid, record.email, record.display_name, disabled, wanted.as_claims()
        )
        body = {"account": account_view(changed, wanted)}
        details = {"previous_role": current.role, "previous_point_id": current.point_id}
        return self._audit(
            changed, wanted, actor, "account.updated", now, idem, 200, body, **details
        )

    def _audit(
        self,
        record: AccountRecord,
        claims: AccountClaims,
        actor: Actor,
        action: str,
        now: datetime,
        idem: IdempotencyScope | None,
        status: int,
        body: dict[str, Any],
        **details: Any,
    ) -> StoredResponse:
        registry = {
            "uid": record.uid,
            "email": record.email,
            "role": claims.role,
            "point_id": claims.point_id,
            "disabled": record.disabled,
            "changed_by": actor.uid,
            "changed_at": now,
        }
        audited = {"account_uid": record.uid, "role": claims.role, "point_id": claims.point_id}

        def attempt(uow: UnitOfWork) -> StoredResponse:
            uow.set(ACCOUNTS, record.uid, registry)
            uow.audit(actor, action, [], now, **audited, disabled=record.disabled, **details)
            return uow.respond(StoredResponse(status, body))

        return self.units.run(attempt, gave_up=DependencyUnavailableError, idem=idem)
