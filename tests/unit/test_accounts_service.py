"""AccountsService with a fake Identity Platform and the in-memory unit of work.

An admin creates, re-roles and disables staff, agent and admin accounts; every change sets the
claims in Identity Platform and commits its audit entry with the account's registry document;
refusals touch neither; an admin cannot disable or demote themself.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from common.adapters.firestore_store import AUDIT_LOG
from common.adapters.identity_platform import AccountRecord
from common.domain.accounts import AccountClaims, AccountExistsError, AccountNotFoundError
from common.domain.errors import DependencyUnavailableError, ForbiddenError, ValidationFailedError
from common.services.accounts import ACCOUNTS, AccountsService, CreateAccount, UpdateAccount
from common.services.booking import Actor
from common.services.idempotency import IdempotencyScope
from tests.support.fake_store import FakeUnitsOfWork

NOW = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
ADMIN = Actor(uid="admin-1", role="admin")


class FakeIdentity:
    """Identity Platform's users as the adapter sees them."""

    def __init__(self) -> None:
        self.users: dict[str, AccountRecord] = {}
        self.revoked: list[str] = []
        self.calls = 0
        self._ids = itertools.count(1)

    def create_user(self, email: str, display_name: str, password: str | None = None):
        self.calls += 1
        if any(u.email == email for u in self.users.values()):
            raise AccountExistsError()
        record = AccountRecord(f"uid{next(self._ids)}", email, display_name, False, {})
        self.users[record.uid] = record
        return record

    def get_user(self, uid: str) -> AccountRecord:
        if uid not in self.users:
            raise AccountNotFoundError()
        return self.users[uid]

    def find_by_email(self, email: str) -> AccountRecord | None:
        return next((u for u in self.users.values() if u.email == email), None)

    def set_claims(self, uid: str, claims: dict[str, Any]) -> None:
        self.calls += 1
        self.users[uid] = replace(self.get_user(uid), claims=dict(claims))

    def set_disabled(self, uid: str, disabled: bool) -> None:
        self.calls += 1
        self.users[uid] = replace(self.get_user(uid), disabled=disabled)

    def revoke_sessions(self, uid: str) -> None:
        self.revoked.append(uid)


@pytest.fixture
def world() -> tuple[AccountsService, FakeIdentity, FakeUnitsOfWork]:
    identity, units = FakeIdentity(), FakeUnitsOfWork()
    return AccountsService(units, identity), identity, units


def _audits(units: FakeUnitsOfWork) -> list[dict[str, Any]]:
    return list(units.store.collection(AUDIT_LOG).values())


def test_an_admin_creates_a_staff_account_bound_to_a_point(world) -> None:
    service, identity, units = world
    command = CreateAccount("Ola@Example.org ", "Ola", AccountClaims("staff", "pt-00001"))
    result = service.create(command, ADMIN, NOW, None)
    assert result.status == 201
    account = result.body["account"]
    assert account["role"] == "staff" and account["point_id"] == "pt-00001"
    user = identity.users[account["uid"]]
    assert user.email == "ola@example.org"
    assert user.claims == {"role": "staff", "point_id": "pt-00001"}
    assert units.store.data(ACCOUNTS, user.uid)["changed_by"] == "admin-1"
    [audit] = _audits(units)
    assert audit["action"] == "account.created" and audit["actor_uid"] == "admin-1"
    assert audit["details"]["account_uid"] == user.uid


def test_claims_are_checked_before_anything_is_written(world) -> None:
    _service, identity, units = world
    with pytest.raises(ValidationFailedError):
        AccountClaims("staff")  # staff without a point
    with pytest.raises(ValidationFailedError):
        AccountClaims("agent", "pt-00001")  # only staff are bound to a point
    with pytest.raises(ValidationFailedError):
        AccountClaims("patient")  # type: ignore[arg-type]  # patients are never managed
    assert identity.calls == 0 and units.store.commits == 0


def test_an_existing_address_is_refused_but_a_retry_of_the_same_request_completes(world) -> None:
    service, identity, units = world
    command = CreateAccount("a@example.org", "A", AccountClaims("agent"))
    service.create(command, ADMIN, NOW, None)
    with pytest.raises(AccountExistsError):
        service.create(command, ADMIN, NOW, None)
    # The same request retried (same Idempotency-Key) after its audit commit failed.
    units.store.fail_next_commits = 10
    retried = CreateAccount("b@example.org", "B", AccountClaims("agent"))
    idem = IdempotencyScope("key-1", "fp-1", NOW)
    with pytest.raises((DependencyUnavailableError, gexc.ServiceUnavailable)):
        service.create(retried, ADMIN, NOW, idem)
    assert len(_audits(units)) == 1  # the change is in Identity Platform, not yet audited
    units.store.fail_next_commits = 0
    assert service.create(retried, ADMIN, NOW, idem).status == 201
    assert len(_audits(units)) == 2 and len(identity.users) == 2


def test_re_roling_and_disabling_revoke_sessions_and_are_audited(world) -> None:
    service, identity, units = world
    uid = service.create(
        CreateAccount("s@example.org", "S", AccountClaims("staff", "pt-1")), ADMIN, NOW, None
    ).body["account"]["uid"]
    moved = service.update(UpdateAccount(uid, point_id="pt-2"), ADMIN, NOW, None)
    assert moved.body["account"]["point_id"] == "pt-2"
    assert identity.users[uid].claims == {"role": "staff", "point_id": "pt-2"}
    agent = service.update(UpdateAccount(uid, role="agent"), ADMIN, NOW, None)
    assert identity.users[uid].claims == {"role": "agent"}  # the point goes with the role
    assert agent.body["account"]["point_id"] is None
    service.update(UpdateAccount(uid, disabled=True), ADMIN, NOW, None)
    assert identity.users[uid].disabled and identity.revoked == [uid, uid, uid]
    assert units.store.data(ACCOUNTS, uid)["disabled"] is True
    actions = sorted(a["action"] for a in _audits(units))
    assert actions == ["account.created"] + ["account.updated"] * 3
    last = max(_audits(units), key=lambda a: a["details"].get("disabled", False))
    assert last["details"]["previous_role"] == "agent"


def test_an_admin_cannot_disable_or_demote_themself(world) -> None:
    service, identity, units = world
    uid = service.create(
        CreateAccount("boss@example.org", "Boss", AccountClaims("admin")), ADMIN, NOW, None
    ).body["account"]["uid"]
    me = Actor(uid=uid, role="admin")
    before = (dict(identity.users), units.store.commits)
    for change in (UpdateAccount(uid, disabled=True), UpdateAccount(uid, role="agent")):
        with pytest.raises(ForbiddenError):
            service.update(change, me, NOW, None)
    assert (dict(identity.users), units.store.commits) == before


def test_patients_and_unknown_users_are_not_managed_here(world) -> None:
    service, identity, _ = world
    identity.users["p1"] = AccountRecord("p1", None, None, False, {"role": "patient"})
    for uid in ("p1", "nobody"):
        with pytest.raises(AccountNotFoundError):
            service.update(UpdateAccount(uid, role="admin"), ADMIN, NOW, None)
    assert identity.users["p1"].claims == {"role": "patient"}
