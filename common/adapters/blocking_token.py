"""The JWT Identity Platform sends a blocking function (beforeCreate / beforeSignIn).

Deployed: RS256, signed with Google's securetoken keys (the ID tokens' own certificates),
issuer https://securetoken.google.com/<project>, audience the function's URL as registered in
Identity Platform's config (BLOCKING_FUNCTION_URL; Terraform registers and passes the same
deterministic URL). The function is invokable by allUsers (Identity Platform calls it without
credentials), so this token is what authenticates the caller.

Locally the Auth emulator sends the same payload unsigned (`alg: none`): accepted only in
emulator mode (LOCAL_STACK=1 with the Auth emulator), as firebase-admin accepts its ID tokens.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import google.auth.exceptions
import google.auth.jwt
import jwt
import requests

from common.domain.errors import DependencyUnavailableError, UnauthenticatedError

CERTS_URL = (
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
)
EVENTS = ("beforeCreate", "beforeSignIn")
_CERTS_TTL_S = 3600
_certs: dict[str, Any] = {}
_certs_lock = threading.Lock()


def _google_certs(certs_url: str) -> dict[str, str]:
    with _certs_lock:
        cached = _certs.get(certs_url)
        if cached and cached[0] > time.monotonic():
            return cached[1]
    try:
        response = requests.get(certs_url, timeout=5)
        response.raise_for_status()
        certs = response.json()
    except (requests.RequestException, ValueError) as err:
        raise DependencyUnavailableError("Google's signing certificates are unreachable") from err
    with _certs_lock:
        _certs[certs_url] = (time.monotonic() + _CERTS_TTL_S, certs)
    return certs


def verify_blocking_token(
    token: Any,
    project_id: str,
    audience: str | None,
    *,
    emulator: bool,
    now: float,
    certs_url: str = CERTS_URL,
) -> dict[str, Any]:
    if not isinstance(token, str) or token.count(".") != 2:
        raise UnauthenticatedError("no blocking-function JWT")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise UnauthenticatedError("the blocking-function JWT is malformed") from None
    if emulator and header.get("alg") == "none":
        claims = jwt.decode(token, options={"verify_signature": False})
    else:
        if audience is None:
            raise UnauthenticatedError("BLOCKING_FUNCTION_URL is not set: nothing is accepted")
        if header.get("alg") != "RS256" or not header.get("kid"):
            raise UnauthenticatedError("the blocking-function JWT is not signed by Google")
        try:
            claims = google.auth.jwt.decode(
                token, certs=_google_certs(certs_url), audience=audience, clock_skew_in_seconds=30
            )
        except (ValueError, google.auth.exceptions.GoogleAuthError):
            raise UnauthenticatedError("the blocking-function JWT is not valid") from None
    if claims.get("iss") != f"https://securetoken.google.com/{project_id}":
        raise UnauthenticatedError("the blocking-function JWT is not from this project")
    if audience is not None and claims.get("aud") != audience:
        raise UnauthenticatedError("the blocking-function JWT is meant for another function")
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or expires <= now:
        raise UnauthenticatedError("the blocking-function JWT has expired")
    if claims.get("event_type") not in EVENTS or not isinstance(claims.get("user_record"), dict):
        raise UnauthenticatedError("the blocking-function JWT carries no known event")
    return claims
