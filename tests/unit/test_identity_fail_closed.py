"""Fail closed: ID tokens as a deployed function sees them (no emulator), with no network.

Google's signing certificates are served by a local HTTP server (firebase-admin is pointed at
it), so a token signed with the served key is accepted, and one whose signature does not match
is refused for that reason alone. An unsigned token is refused before any certificate is
fetched. And the variable that makes firebase-admin skip signatures, leaked into a deployment
(FIREBASE_AUTH_EMULATOR_HOST without LOCAL_STACK=1), opens nothing: those tokens are refused.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google.auth
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from firebase_admin import _token_gen
from google.auth.credentials import AnonymousCredentials

from common.auth import verify_principal
from common.domain.errors import ForbiddenError, UnauthenticatedError

PESEL = "44051401359"
KID = "test-key-1"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


SERVED_KEY, OTHER_KEY = _key(), _key()


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A deployed function's environment: no emulator variable, Google's certs served locally."""
    for name in ("LOCAL_STACK", "FIREBASE_AUTH_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    body = json.dumps({KID: _certificate(SERVED_KEY)}).encode()

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Certs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # A deployed function has its service account (ADC); verifying needs no call with it.
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), None))
    # firebase-admin reads the certificates' URL when a project's verifier is first built.
    monkeypatch.setattr(
        _token_gen, "ID_TOKEN_CERT_URI", f"http://127.0.0.1:{server.server_address[1]}/certs"
    )
    try:
        yield f"prod-{uuid.uuid4().hex[:10]}"  # a fresh project: a fresh verifier
    finally:
        server.shutdown()


def _claims(project: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "sub": "u-1",
        "auth_time": now,
        "iat": now,
        "exp": now + 600,
        "firebase": {"sign_in_provider": "oidc.login-gov-pl", "identities": {}},
        **extra,
    }


def _signed(key: rsa.RSAPrivateKey, claims: dict[str, Any]) -> str:
    return "Bearer " + jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"Bearer {part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_a_token_signed_with_googles_key_is_accepted(deployed: str) -> None:
    principal = verify_principal(
        _signed(SERVED_KEY, _claims(deployed, role="patient", pesel=PESEL)), deployed
    )
    assert principal.role == "patient" and principal.pesel == PESEL


def test_an_unsigned_token_is_refused(deployed: str) -> None:
    with pytest.raises(UnauthenticatedError):
        verify_principal(_unsigned(_claims(deployed, role="patient", pesel=PESEL)), deployed)


def test_a_token_with_a_bad_signature_is_refused(deployed: str) -> None:
    forged = _signed(OTHER_KEY, _claims(deployed, role="admin"))
    with pytest.raises(UnauthenticatedError):
        verify_principal(forged, deployed)
    # The same token with its signature altered by one byte.
    good = _signed(SERVED_KEY, _claims(deployed, role="patient", pesel=PESEL))
    head, payload, signature = good.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(UnauthenticatedError):
        verify_principal(f"{head}.{payload}.{flipped}", deployed)


def test_an_emulator_host_leaked_into_a_deployment_opens_nothing(
    deployed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # firebase-admin alone would accept this unsigned token: the variable is enough for it.
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    with pytest.raises(UnauthenticatedError):
        verify_principal(_unsigned(_claims(deployed, role="admin")), deployed)
    with pytest.raises(UnauthenticatedError):
        verify_principal(_signed(SERVED_KEY, _claims(deployed, role="admin")), deployed)


def test_managed_accounts_must_sign_in_with_a_second_factor(deployed: str) -> None:
    staff = _claims(deployed, role="staff", point_id="pt-00001")
    staff["firebase"] = {"sign_in_provider": "password", "identities": {}}
    with pytest.raises(ForbiddenError, match="second factor"):
        verify_principal(_signed(SERVED_KEY, staff), deployed)
    staff["firebase"]["sign_in_second_factor"] = "totp"
    assert verify_principal(_signed(SERVED_KEY, staff), deployed).point_id == "pt-00001"
