"""HTTP dispatch for the Cloud Tasks emulator: backoff, fake tokens, the sender and its thread.

Everything here is independent of gRPC. The task store (see ``server.py``) decides *what* is due;
this module decides *how* an attempt is sent and runs the background loop that drives it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

import requests
from google.cloud import tasks_v2

from common.clock import epoch_seconds

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

# Production defaults applied when a queue is created without a RetryConfig.
DEFAULT_MAX_ATTEMPTS = 100
DEFAULT_MIN_BACKOFF_S = 0.1
DEFAULT_MAX_BACKOFF_S = 3600.0
DEFAULT_MAX_DOUBLINGS = 16

OIDC_ISSUER = "https://accounts.google.com"
TOKEN_LIFETIME_S = 3600
# Upper bound on simultaneously running HTTP attempts across all queues; production allows far
# more, but an emulator on a laptop should not spawn thousands of threads.
MAX_GLOBAL_IN_FLIGHT = 256
# Waking up at least this often keeps the loop robust against wall-clock jumps.
MAX_IDLE_WAIT_S = 1.0


def _seconds(value: timedelta | None) -> float:
    return value.total_seconds() if value else 0.0


def next_backoff(retry_config: tasks_v2.RetryConfig, attempt: int) -> float:
    """Seconds to wait before the next attempt after ``attempt`` failed attempts (1-based).

    Mirrors the documented RetryConfig semantics: start at ``min_backoff``, double
    ``max_doublings`` times, then grow linearly by the last doubled step, capped at ``max_backoff``.
    E.g. min 10 s, max 300 s, doublings 3 gives 10, 20, 40, 80, 160, 240, 300, 300, ...
    Unset fields fall back to the production defaults.
    """
    min_backoff = _seconds(retry_config.min_backoff) or DEFAULT_MIN_BACKOFF_S
    max_backoff = _seconds(retry_config.max_backoff) or DEFAULT_MAX_BACKOFF_S
    # proto3 cannot tell 0 from unset; production reads it as unset, so we do too.
    doublings = max(retry_config.max_doublings, 0) or DEFAULT_MAX_DOUBLINGS
    retry_index = max(attempt, 1) - 1
    if retry_index <= doublings:
        delay = min_backoff * 2**retry_index
    else:
        step = min_backoff * 2**doublings
        delay = step + (retry_index - doublings) * step
    return min(delay, max(max_backoff, min_backoff))


def retries_exhausted(
    retry_config: tasks_v2.RetryConfig, attempts: int, first_attempt_at: float, now: float
) -> bool:
    """True when no further attempt may be made (both limits reached, as production documents)."""
    max_attempts = retry_config.max_attempts
    max_duration = _seconds(retry_config.max_retry_duration)
    if max_attempts == -1 and max_duration <= 0:
        return False  # unlimited in both dimensions
    attempts_reached = max_attempts == -1 or attempts >= max_attempts
    duration_reached = max_duration <= 0 or now - first_attempt_at >= max_duration
    return attempts_reached and duration_reached


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _subject_for(email: str) -> str:
    # Production puts the service account's numeric unique id in ``sub``; derive a stable one.
    return str(int.from_bytes(hashlib.sha256(email.encode()).digest()[:8], "big"))


def mint_oidc_token(service_account_email: str, audience: str, now: float | None = None) -> str:
    """An unsigned (alg "none") JWT shaped like a Google-issued OIDC identity token.

    Our local auth layer accepts these; nothing outside the emulator must ever trust them.
    """
    issued_at = int(time.time() if now is None else now)
    header = {"alg": "none", "typ": "JWT"}
    payload = {
        "iss": OIDC_ISSUER,
        "aud": audience,
        "azp": _subject_for(service_account_email),
        "sub": _subject_for(service_account_email),
        "email": service_account_email,
        "email_verified": True,
        "iat": issued_at,
        "exp": issued_at + TOKEN_LIFETIME_S,
    }
    encoded = [
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
    ]
    return f"{encoded[0]}.{encoded[1]}."


def fake_oauth_token(service_account_email: str) -> str:
    """An opaque bearer that names the service account, standing in for a Google access token."""
    return f"emulator-oauth.{_b64url(service_account_email.encode())}"


@dataclass(frozen=True)
class DispatchRequest:
    """One HTTP attempt, fully resolved (headers included) while the store lock was held."""

    queue_name: str
    task_name: str
    attempt: int  # 1-based, for logging
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    deadline_s: float


@dataclass(frozen=True)
class DispatchResult:
    status_code: int | None  # None when the target never answered
    error: str | None = None  # "deadline_exceeded" or a connection error description
    response_time: float = field(default_factory=time.time)

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def send(request: DispatchRequest, clock: Clock = epoch_seconds) -> DispatchResult:
    """Send one attempt. Never raises: every failure becomes a non-success result."""
    try:
        response = requests.request(
            request.method,
            request.url,
            headers=request.headers,
            data=request.body or None,
            timeout=request.deadline_s,
            # Only 2xx counts as success, so a redirect is a failed attempt, as in production.
            allow_redirects=False,
        )
        response.close()
        result = DispatchResult(status_code=response.status_code, response_time=clock())
    except requests.Timeout:
        result = DispatchResult(status_code=None, error="deadline_exceeded", response_time=clock())
    except requests.RequestException as exc:
        result = DispatchResult(
            status_code=None, error=f"unreachable: {type(exc).__name__}", response_time=clock()
        )
    _log_attempt(request, result)
    return result


def _log_attempt(request: DispatchRequest, result: DispatchResult) -> None:
    # Bodies (and headers, which may carry tokens) are deliberately never logged.
    status = result.status_code if result.status_code is not None else result.error
    level = logging.INFO if result.succeeded else logging.WARNING
    logger.log(
        level,
        "dispatch queue=%s task=%s attempt=%d status=%s",
        request.queue_name.rsplit("/", 1)[-1],
        request.task_name.rsplit("/", 1)[-1],
        request.attempt,
        status,
    )


class DispatchSource(Protocol):
    """What the dispatcher loop needs from the task store."""

    condition: threading.Condition

    def claim_due(self, now: float, capacity: int) -> tuple[list[DispatchRequest], float]:
        """Mark due tasks as in flight; return their requests and the next wake-up time.

        Called with ``condition`` held.
        """
        ...

    def complete(self, request: DispatchRequest, result: DispatchResult) -> None:
        """Record the outcome of an attempt (acquires ``condition`` itself)."""
        ...


class Dispatcher:
    """Background loop: claims due tasks from the store and sends each on its own daemon thread.

    Daemon threads (rather than an executor) so a hung target can never block process exit.
    """

    def __init__(
        self,
        source: DispatchSource,
        clock: Clock = epoch_seconds,
        sender: Callable[[DispatchRequest], DispatchResult] | None = None,
    ) -> None:
        self._source = source
        self._clock = clock
        self._sender = sender or (lambda request: send(request, clock))
        self._stopping = False
        self._in_flight = 0
        self._counter_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name="cloudtasks-dispatcher", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._source.condition:
            self._stopping = True
            self._source.condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        condition = self._source.condition
        with condition:
            while not self._stopping:
                now = self._clock()
                with self._counter_lock:
                    capacity = MAX_GLOBAL_IN_FLIGHT - self._in_flight
                try:
                    requests_due, wake_at = self._source.claim_due(now, capacity)
                except Exception:  # keep dispatching other tasks even if one state is broken
                    logger.exception("claiming due tasks failed")
                    requests_due, wake_at = [], now + MAX_IDLE_WAIT_S
                for request in requests_due:
                    self._launch(request)
                if not requests_due:
                    condition.wait(timeout=min(max(wake_at - now, 0.0), MAX_IDLE_WAIT_S))

    def _launch(self, request: DispatchRequest) -> None:
        with self._counter_lock:
            self._in_flight += 1
        thread = threading.Thread(
            target=self._attempt, args=(request,), name="cloudtasks-attempt", daemon=True
        )
        thread.start()

    def _attempt(self, request: DispatchRequest) -> None:
        try:
            result = self._sender(request)
            self._source.complete(request, result)
        except Exception:  # a bug in bookkeeping must not kill the attempt thread silently
            logger.exception("dispatch bookkeeping failed for task %s", request.task_name)
        finally:
            with self._counter_lock:
                self._in_flight -= 1
            with self._source.condition:
                self._source.condition.notify_all()
