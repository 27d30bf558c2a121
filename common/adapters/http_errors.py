"""The HTTP boundary to external peers (P1, SDS, SMS gateway): one request, one verdict.

Every outcome of a call maps to exactly one of:
- a parsed 2xx body;
- ``DependencyUnavailableError`` (503 to our callers) for what is worth retrying later:
  connection errors, timeouts, 5xx and 429, with ``retry_after_s`` from Retry-After;
- a ``PeerRejectedError`` subclass for a 4xx: retrying the same request will not help;
- ``PeerProtocolError`` when the peer answers something we cannot understand.

There are no retries here: a Cloud Task or a Pub/Sub redelivery retries the whole use case,
with its idempotency key, and stacking a second retry loop inside would multiply attempts and
hold the function instance for the whole backoff.

Messages and details carry the peer's name, the status and the peer's error code, never a
request body: bodies carry PESELs and phone numbers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn, Self, TypeVar

import requests
from pydantic import BaseModel, ValidationError

from common import clock
from common.domain.errors import DependencyUnavailableError

DEFAULT_TIMEOUT: tuple[float, float] = (2.0, 5.0)  # (connect, read) seconds
_MAX_RETRY_AFTER_S = 3600
# Nine or more digits could be a PESEL or a phone number: never let one into a message.
_LONG_DIGITS = re.compile(r"\+?\d{9,}")
_MAX_MESSAGE = 300


def _scrub(text: str) -> str:
    return _LONG_DIGITS.sub("[redacted]", text)[:_MAX_MESSAGE]


class PeerError(Exception):
    """An external system's answer that is not a usable result and not worth retrying."""

    def __init__(self, peer: str, status: int | None, code: str, message: str) -> None:
        self.peer = peer
        self.status = status
        self.code = code
        self.message = _scrub(message)
        super().__init__(f"{peer}: {self.message} (status {status}, code {code})")


class PeerRejectedError(PeerError):
    """The peer refused our request (4xx); the request itself must change."""


class PeerAuthError(PeerRejectedError):
    """The peer refused our credentials (401/403): a configuration problem, not data."""


class PeerNotFoundError(PeerRejectedError):
    """The peer does not know the resource we asked for (404)."""


class PeerConflictError(PeerRejectedError):
    """The peer holds a different record under the same id (409): an idempotency clash."""


class PeerProtocolError(PeerError):
    """The peer answered with something we cannot parse (redirect, not JSON, wrong shape)."""


_REJECTIONS: dict[int, type[PeerRejectedError]] = {
    401: PeerAuthError,
    403: PeerAuthError,
    404: PeerNotFoundError,
    409: PeerConflictError,
}


def parse_retry_after(value: str | None, now: datetime | None = None) -> int | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), clamped to an hour."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(int(value), _MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = int((when - (now or clock.now())).total_seconds())
    return max(0, min(seconds, _MAX_RETRY_AFTER_S))


def _error_fields(response: requests.Response) -> tuple[str, str]:
    """The peer's ``{"error": {"code", "message"}}``, or generic words when it has none."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or "error"), str(error.get("message") or "")
    return "error", response.reason or ""


def _unavailable(
    peer: str, reason: str, retry_after_s: int | None = None, **details: Any
) -> NoReturn:
    raise DependencyUnavailableError(
        f"{peer} is unavailable ({reason}); retry later.",
        details={"peer": peer, "reason": reason, **details},
        retry_after_s=retry_after_s,
    )


def check_status(peer: str, response: requests.Response) -> None:
    """Raise the error that ``response``'s status means; return for 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        _unavailable(peer, f"http_{status}", retry_after, status=status)
    code, message = _error_fields(response)
    if 400 <= status < 500:
        raise _REJECTIONS.get(status, PeerRejectedError)(peer, status, code, message)
    # 1xx/3xx: we never follow redirects (a redirected POST silently turns into a GET).
    raise PeerProtocolError(peer, status, "unexpected_status", f"unexpected HTTP {status}")


def send(
    session: requests.Session,
    peer: str,
    method: str,
    url: str,
    *,
    json_body: Mapping[str, Any] | None = None,
    params: Mapping[str, str] | None = None,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
) -> requests.Response:
    """One HTTP exchange; returns a 2xx response or raises the mapped error."""
    try:
        response = session.request(
            method, url, json=json_body, params=params, timeout=timeout, allow_redirects=False
        )
    except requests.Timeout:
        _unavailable(peer, "timeout")
    except requests.exceptions.SSLError:
        # The TLS handshake failed: the peer refused our certificate, or we refused its. A
        # configuration problem (certificates, CA), not a flaky network: retrying will not help.
        raise PeerAuthError(peer, None, "tls_handshake_failed", "TLS handshake failed") from None
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        # The exception text holds host names at most (never bodies); the class is enough.
        _unavailable(peer, "connection", error=type(exc).__name__)
    check_status(peer, response)
    return response


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_json(peer: str, response: requests.Response, model: type[ModelT]) -> ModelT:
    """Validate a 2xx body into ``model``; a bad shape is a PeerProtocolError."""
    try:
        return model.model_validate(response.json())
    except ValueError as exc:
        # ValidationError is a ValueError; its text may quote field values, so drop it.
        kind = "invalid_shape" if isinstance(exc, ValidationError) else "invalid_json"
        raise PeerProtocolError(
            peer, response.status_code, kind, f"{peer} answered with a body we cannot read"
        ) from None


def plain_session() -> requests.Session:
    session = requests.Session()
    session.headers["Accept"] = "application/json"
    return session


def bearer_session(token: str) -> requests.Session:
    session = plain_session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def require_env(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise RuntimeError(f"environment variable {name} is not set")
    return value


class PeerClient:
    """What every client of a peer system shares: base URL, bearer token, session, timeouts.

    Subclasses name their API prefix and the environment variables that configure them.
    """

    API_PREFIX: str = ""
    URL_ENV: str = ""
    TOKEN_ENV: str = ""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self._base = base_url.rstrip("/") + self.API_PREFIX
        # No token: the peer knows us by other means (P1: our client certificate, mutual TLS).
        self._session = session or (bearer_session(token) if token else plain_session())
        if session is not None and token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = os.environ if env is None else env
        return cls(require_env(env, cls.URL_ENV), require_env(env, cls.TOKEN_ENV))

    def close(self) -> None:
        self._session.close()
