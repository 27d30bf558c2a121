"""Verifying the national login node's ID tokens: signature (its JWKS), issuer, audience, time.

Production: the node (through its OIDC bridge, docs/identity.md) at LOGIN_NODE_ISSUER, its
keys at LOGIN_NODE_JWKS_URL, our client id LOGIN_NODE_CLIENT_ID. Locally the login-node
simulator (emulator/login_node) signs with an RS256 key generated at its start and publishes
it the same way, so this code verifies both alike. Identity Platform verifies the token too
before the blocking function sees it; this second check keeps the blocking function honest on
its own, and is the only one where the Auth emulator (which verifies nothing) stands in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jwt

from common.domain.errors import DependencyUnavailableError
from common.domain.identity import SignInRefusedError

LEEWAY_S = 30
# A login-node ID token older than this is refused: it was meant for a sign-in happening now.
MAX_AGE_S = 300


class LoginNodeVerifier:
    def __init__(self, issuer: str | None, client_id: str | None, jwks_url: str | None) -> None:
        if not (issuer and client_id and jwks_url):
            raise RuntimeError(
                "LOGIN_NODE_ISSUER, LOGIN_NODE_CLIENT_ID and LOGIN_NODE_JWKS_URL must be set"
            )
        self.issuer = issuer
        self.client_id = client_id
        self._keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=5)

    def verify(self, id_token: Any, now: datetime) -> dict[str, Any]:
        if not isinstance(id_token, str) or not id_token:
            raise SignInRefusedError("no login-node ID token was forwarded")
        try:
            key = self._keys.get_signing_key_from_jwt(id_token)
            claims = jwt.decode(
                id_token,
                key.key,
                algorithms=["RS256"],
                audience=self.client_id,
                issuer=self.issuer,
                # Times are checked below against the process clock (common/clock.py).
                options={"require": ["iss", "aud", "sub", "exp", "iat"], "verify_exp": False,
                         "verify_iat": False, "verify_nbf": False},
            )  # fmt: skip
        except jwt.PyJWKClientConnectionError as err:
            raise DependencyUnavailableError("the login node's keys are unreachable") from err
        except jwt.PyJWTError as err:
            raise SignInRefusedError(f"the login node's ID token is not valid ({err})") from None
        at = now.timestamp()
        if not isinstance(claims.get("exp"), int) or claims["exp"] + LEEWAY_S <= at:
            raise SignInRefusedError("the login node's ID token has expired")
        if not isinstance(claims.get("iat"), int) or not (
            at - MAX_AGE_S - LEEWAY_S <= claims["iat"] <= at + LEEWAY_S
        ):
            raise SignInRefusedError("the login node's ID token was not issued just now")
        return claims
