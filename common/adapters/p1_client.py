"""Client of P1, the national e-Health platform: e-referrals in, vaccination records out,
patients' contact profiles (the phone number of their IKP account) on demand.

P1 knows us by our client certificate: every call is mutual TLS (``P1_CLIENT_CERT`` and
``P1_CLIENT_KEY``, PEM, from Secret Manager in production; ``P1_CA_CERT``, the CA that signs
P1's server certificate, else the system's trust store), to ``P1_BASE_URL`` over https.
``from_env`` refuses to build a client without them; only in emulator mode (LOCAL_STACK=1) may
a test point it at a plain-HTTP simulator with a bearer token (``P1_TOKEN``).

Errors follow ``common.adapters.http_errors``: a flaky P1 raises ``DependencyUnavailableError``,
a refusal a ``PeerRejectedError`` subclass (a failed TLS handshake is ``PeerAuthError``). No
retries in here: the caller's Cloud Task or Pub/Sub redelivery retries, and
``report_vaccination`` is safe to repeat because P1 dedupes on our ``vaccination_id`` (same id
and body: the same ack; same id, other body: PeerConflictError).
"""

from __future__ import annotations

import atexit
import os
import tempfile
from collections.abc import Mapping
from datetime import date, datetime
from typing import Literal, Self
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from common.adapters.http_errors import (
    PeerClient,
    PeerNotFoundError,
    parse_json,
    plain_session,
    require_env,
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


class P1Profile(BaseModel):
    """The contact data of a patient's IKP account, as P1 gives it (the phone was verified
    by IKP when the patient entered it there)."""

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    phone: str | None = Field(default=None, repr=False, pattern=r"^\+?[0-9]{9,15}$")
    phone_verified_at: datetime | None = None


class _ReferralPage(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    referrals: list[P1Referral]
    next_cursor: str
    has_more: bool = False


def _pem_file(value: str, what: str) -> str:
    """A path for requests/ssl: `value` is a path already, or PEM contents (as Secret Manager
    hands them to the function), written once to a private temporary file."""
    if not value.lstrip().startswith("-----BEGIN"):
        if not os.path.isfile(value):
            raise RuntimeError(f"{what}: no such file, and not PEM contents")
        return value
    handle, path = tempfile.mkstemp(prefix="p1-", suffix=".pem")  # mode 0600
    with os.fdopen(handle, "w", encoding="ascii") as out:
        out.write(value)
    atexit.register(lambda: os.path.exists(path) and os.remove(path))
    return path


class P1Client(PeerClient):
    API_PREFIX = "/p1/v1"
    URL_ENV = "P1_BASE_URL"
    TOKEN_ENV = "P1_TOKEN"  # noqa: S105 (the variable's name, not a secret)
    CERT_ENV = "P1_CLIENT_CERT"
    KEY_ENV = "P1_CLIENT_KEY"
    CA_ENV = "P1_CA_CERT"

    @classmethod
    def mutual_tls(
        cls,
        base_url: str,
        cert: str,
        key: str,
        ca: str | None = None,
        *,
        timeout: tuple[float, float] | None = None,
    ) -> Self:
        """A client that shows our certificate (PEM contents or file paths) and checks P1's
        against `ca` (else the system's trust store)."""
        if not base_url.startswith("https://"):
            raise RuntimeError("P1 over mutual TLS needs an https:// P1_BASE_URL")
        session = plain_session()
        # Exactly the trust configured here: REQUESTS_CA_BUNDLE and the like would otherwise
        # override `verify` (requests lets the environment win over a session's setting).
        session.trust_env = False
        session.cert = (_pem_file(cert, cls.CERT_ENV), _pem_file(key, cls.KEY_ENV))
        session.verify = _pem_file(ca, cls.CA_ENV) if ca else True
        options = {"timeout": timeout} if timeout else {}
        return cls(base_url, None, session=session, **options)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = os.environ if env is None else env
        base = require_env(env, cls.URL_ENV)
        cert, key = env.get(cls.CERT_ENV, "").strip(), env.get(cls.KEY_ENV, "").strip()
        if cert and key:
            return cls.mutual_tls(base, cert, key, env.get(cls.CA_ENV, "").strip() or None)
        from common.config import emulator_mode

        if emulator_mode(dict(env)) and env.get(cls.TOKEN_ENV, "").strip():
            # Tests only: a plain-HTTP simulator that takes a bearer token.
            return cls(base, env[cls.TOKEN_ENV].strip())
        raise RuntimeError(
            f"{cls.CERT_ENV} and {cls.KEY_ENV} must be set: P1 is reached over mutual TLS"
        )

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

    def patient_profile(self, pesel: str) -> P1Profile | None:
        """The contact data of the patient's IKP account; None when P1 knows no such patient.
        POST, so that the PESEL travels in the body, never in a URL."""
        try:
            response = send(
                self._session,
                PEER,
                "POST",
                f"{self._base}/patients:profile",
                json_body={"pesel": pesel},
                timeout=self._timeout,
            )
        except PeerNotFoundError:
            return None
        return parse_json(PEER, response, P1Profile)
