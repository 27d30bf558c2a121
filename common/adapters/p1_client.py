"""Client of P1, the national e-Health platform: e-referrals in, vaccination records out.

Configured by ``P1_BASE_URL`` and ``P1_TOKEN`` (a bearer token). Errors follow
``common.adapters.http_errors``: a flaky P1 raises ``DependencyUnavailableError``, a refusal a
``PeerRejectedError`` subclass. No retries in here: the caller's Cloud Task or Pub/Sub
redelivery retries, and ``report_vaccination`` is safe to repeat because P1 dedupes on our
``vaccination_id`` (same id and body: the same ack; same id, other body: PeerConflictError).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from common.adapters.http_errors import (
    PeerClient,
    parse_json,
    send,
)
from common.domain.eligibility import DoseKind, Referral

PEER = "P1"


class P1Referral(BaseModel):
    """An e-referral as P1 sends it; ``sequence`` orders changes for the cursor."""

    # hide_input_in_errors + repr=False: a PESEL never reaches a log through this model.
    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    referral_id: str = Field(min_length=1)
    pesel: str = Field(repr=False, pattern=r"^\d{11}$")
    kind: DoseKind
    valid_from: date
    valid_to: date
    status: Literal["active", "used", "cancelled"]
    booster_number: int = Field(default=0, ge=0)
    issued_at: datetime
    sequence: int = Field(ge=1)

    def to_referral(self) -> Referral:
        """The domain's view (without the PESEL, which the caller keys separately)."""
        return Referral(
            referral_id=self.referral_id,
            kind=self.kind,
            valid_from=self.valid_from,
            valid_to=self.valid_to,
            status=self.status,
            booster_number=self.booster_number,
        )


class P1VaccinationRecord(BaseModel):
    """A completed vaccination as we report it; ``vaccination_id`` is P1's dedupe key."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    vaccination_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    pesel: str = Field(repr=False, pattern=r"^\d{11}$")
    product: str = Field(min_length=1)
    lot_number: str = Field(min_length=1, max_length=64)
    dose_number: int = Field(ge=1)
    dose_kind: DoseKind
    given_on: date
    point_id: str = Field(min_length=1)


class P1Ack(BaseModel):
    """P1's receipt for a reported vaccination."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    vaccination_id: str
    p1_record_id: str
    referral_id: str | None = None
    received_at: datetime
    # True when P1 already had this vaccination_id (our retry after a lost answer).
    duplicate: bool = False


class _ReferralPage(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    referrals: list[P1Referral]
    next_cursor: str
    has_more: bool = False


class P1Client(PeerClient):
    API_PREFIX = "/p1/v1"
    URL_ENV = "P1_BASE_URL"
    TOKEN_ENV = "P1_TOKEN"  # noqa: S105 (the variable's name, not a secret)

    def referrals_since(self, cursor: str | None, limit: int = 100) -> tuple[list[P1Referral], str]:
        """New and changed referrals after ``cursor`` (None or "" = from the start), oldest
        change first, and the cursor to store for the next call. Store it only after the page
        is processed: a crash then re-reads the page, which callers must treat idempotently.
        An empty list means caught up (the cursor comes back unchanged)."""
        response = send(
            self._session,
            PEER,
            "GET",
            f"{self._base}/referrals",
            params={"since": cursor or "", "limit": str(limit)},
            timeout=self._timeout,
        )
        page = parse_json(PEER, response, _ReferralPage)
        return page.referrals, page.next_cursor

    def report_vaccination(self, record: P1VaccinationRecord) -> P1Ack:
        response = send(
            self._session,
            PEER,
            "POST",
            f"{self._base}/vaccinations",
            json_body=record.model_dump(mode="json"),
            timeout=self._timeout,
        )
        ack = parse_json(PEER, response, P1Ack)
        # 201 = first time, 200 = P1 replayed its stored record for a repeated id.
        return ack.model_copy(update={"duplicate": response.status_code == 200})

    def get_vaccination(self, vaccination_id: str) -> P1Ack:
        """P1's receipt for one of our vaccination ids (PeerNotFoundError if it has none)."""
        response = send(
            self._session,
            PEER,
            "GET",
            f"{self._base}/vaccinations/{quote(vaccination_id, safe='')}",
            timeout=self._timeout,
        )
        return parse_json(PEER, response, P1Ack)
