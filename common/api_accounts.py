"""Request bodies of the admin accounts API (api/openapi.yaml: /v1/admin/accounts)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateAccountRequest(_Body):
    # A plain shape check: Identity Platform validates the address itself.
    email: str = Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    display_name: str = Field(min_length=1, max_length=80)
    role: str = Field(pattern="^(agent|staff|admin)$")
    point_id: str | None = Field(default=None, pattern="^[a-z0-9-]{1,40}$")


class UpdateAccountRequest(_Body):
    role: str | None = Field(default=None, pattern="^(agent|staff|admin)$")
    point_id: str | None = Field(default=None, pattern="^[a-z0-9-]{1,40}$")
    disabled: bool | None = None
