"""Request bodies of the public API (the schemas of api/openapi.yaml, as pydantic models)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

_SLOT_ID = r"^[a-z0-9-]{1,40}_\d{8}_\d{4}_[a-z][a-z0-9_]{0,39}$"


class _Body(BaseModel):
    # Unknown fields are refused: a typo must not be silently ignored in a health record.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class BookRequest(_Body):
    slot_id: str = Field(pattern=_SLOT_ID)
    second_slot_id: str | None = Field(default=None, pattern=_SLOT_ID)
    # For agents and staff booking for a caller; a patient books for themself.
    pesel: str | None = Field(default=None, min_length=11, max_length=11)
    reason: str | None = Field(default=None, min_length=3, max_length=500)


class CancelRequest(_Body):
    reason: str | None = Field(default=None, min_length=3, max_length=500)


class RescheduleRequest(_Body):
    slot_id: str = Field(pattern=_SLOT_ID)
    second_slot_id: str | None = Field(default=None, pattern=_SLOT_ID)
    reason: str | None = Field(default=None, min_length=3, max_length=500)


class QueueJoinRequest(_Body):
    # For an agent joining the caller; a patient joins for themself.
    pesel: str | None = Field(default=None, min_length=11, max_length=11)
    reason: str | None = Field(default=None, min_length=3, max_length=500)
