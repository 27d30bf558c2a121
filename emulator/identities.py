"""Dev identities: unsigned ID tokens that firebase-admin accepts in emulator mode.

With FIREBASE_AUTH_EMULATOR_HOST set, `firebase_admin.auth.verify_id_token` skips the
signature check, so the local stack can mint tokens for its demo users without any server.
Production never imports this module.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any


def _b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def mint_id_token(
    project_id: str,
    uid: str,
    *,
    role: str,
    pesel: str | None = None,
    point_id: str | None = None,
    lifetime_s: int = 24 * 3600,
    now: float | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """Return an unsigned Firebase ID token with our custom claims (role, pesel, point_id)."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "iss": f"https://securetoken.google.com/{project_id}",
        "aud": project_id,
        "auth_time": issued,
        "sub": uid,
        "user_id": uid,
        "iat": issued,
        "exp": issued + lifetime_s,
        "firebase": {"identities": {}, "sign_in_provider": "custom"},
        "role": role,
    }
    if pesel is not None:
        claims["pesel"] = pesel
    if point_id is not None:
        claims["point_id"] = point_id
    claims.update(extra_claims or {})
    return f"{_b64url({'alg': 'none', 'typ': 'JWT'})}.{_b64url(claims)}."
