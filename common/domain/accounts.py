"""Managed accounts (staff, agents, admins): who may be given which role, and the claims.

Patients are never managed accounts: their identity comes from the national login node
(docs/identity.md). A managed account's claims are exactly `role` and, for staff, `point_id`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from common.domain.errors import DomainError, ForbiddenError, ValidationFailedError

ManagedRole = Literal["agent", "staff", "admin"]
MANAGED_ROLES: tuple[ManagedRole, ...] = ("agent", "staff", "admin")
_POINT_ID = re.compile(r"^[a-z0-9-]{1,40}$")


class AccountExistsError(DomainError):
    """An account with this e-mail address exists already."""

    code = "account_exists"
    http_status = 409


class AccountNotFoundError(DomainError):
    """No such managed account."""

    code = "account_not_found"
    http_status = 404


@dataclass(frozen=True)
class AccountClaims:
    role: ManagedRole
    point_id: str | None = None

    def __post_init__(self) -> None:
        if self.role not in MANAGED_ROLES:
            raise ValidationFailedError(f"role must be one of {', '.join(MANAGED_ROLES)}")
        if self.role == "staff" and not (self.point_id and _POINT_ID.match(self.point_id)):
            raise ValidationFailedError("a staff account is bound to one point: give 'point_id'")
        if self.role != "staff" and self.point_id is not None:
            raise ValidationFailedError("only a staff account is bound to a point")

    def as_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {"role": self.role}
        if self.point_id is not None:
            claims["point_id"] = self.point_id
        return claims

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> AccountClaims | None:
        """The claims of an existing user, if it is a managed account (else None)."""
        role = claims.get("role")
        if role not in MANAGED_ROLES:
            return None
        point = claims.get("point_id")
        return cls(role=role, point_id=point if role == "staff" else None)


def check_change(actor_uid: str, target_uid: str, *, demote_or_disable: bool) -> None:
    """An admin never disables or demotes their own account: the last admin cannot lock
    everyone out, and a taken-over admin session cannot hide by removing itself."""
    if actor_uid == target_uid and demote_or_disable:
        raise ForbiddenError("an admin cannot disable or change the role of their own account")
