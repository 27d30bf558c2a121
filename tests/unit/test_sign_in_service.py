"""The identity blocking function's decisions and the JWT that carries them (no emulator).

Patients: the login node's verified assertion becomes session claims (role, PESEL), once;
a replayed, low-assurance or PESEL-less assertion is refused. Managed accounts: only a
password account with a managed role signs in; nobody signs up. Identity Platform's JWT is
accepted unsigned only in emulator mode, and deployed only with Google's signature and this
function's URL as audience.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest

from common.adapters.blocking_token import verify_blocking_token
from common.domain.errors import UnauthenticatedError
from common.domain.identity import SignInRefusedError
from common.services.sign_in import USED_ASSERTIONS, SignInService
from tests.support.fake_store import FakeUnitsOfWork
from tests.unit.test_identity_fail_closed import KID, OTHER_KEY, SERVED_KEY, _certificate

NOW = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
PROVIDER = "oidc.login-gov-pl"
PESEL = "44051401359"
HIGH = "http://eidas.europa.eu/LoA/high"


class FakeVerifier:
    issuer = "https://login-node.test"

    def verify(self, id_token: Any, now: datetime) -> dict[str, Any]:
        if not isinstance(id_token, dict):
            raise SignInRefusedError("not verified")
        return id_token


def _patient(**claims: Any) -> dict[str, Any]:
    token = {"sub": "s-1", "pesel": PESEL, "acr": HIGH, "jti": "a-1", "exp": 1796180000}
    token.update(claims)
    return {"event_type": "beforeSignIn", "sign_in_method": PROVIDER, "oauth_id_token": token}


@pytest.fixture
def service() -> SignInService:
    return SignInService(FakeUnitsOfWork(), FakeVerifier(), PROVIDER)


def test_a_patient_gets_role_and_pesel_as_session_claims_once(service: SignInService) -> None:
    created = service.decide({**_patient(), "event_type": "beforeCreate"}, NOW)
    assert created == {}  # nothing of the person is stored on the Identity Platform user
    answer = service.decide(_patient(), NOW)
    assert answer == {
        "userRecord": {
            "updateMask": "sessionClaims",
            "sessionClaims": {"role": "patient", "pesel": PESEL},
        }
    }
    with pytest.raises(SignInRefusedError, match="used already"):
        service.decide(_patient(), NOW)  # the same assertion replayed
    assert len(service.units.store.collection(USED_ASSERTIONS)) == 1
    assert service.decide(_patient(jti="a-2"), NOW)["userRecord"]  # a new sign-in


@pytest.mark.parametrize(
    "claims",
    [
        {"acr": "http://eidas.europa.eu/LoA/low"},
        {"acr": None},
        {"pesel": "44051401358"},
        {"pesel": None},
        {"sub": ""},
        {"jti": None},
    ],
)
def test_weak_or_incomplete_assertions_are_refused(service: SignInService, claims) -> None:
    with pytest.raises(SignInRefusedError):
        service.decide(_patient(**claims), NOW)
    assert service.units.store.collection(USED_ASSERTIONS) == {}


def test_only_managed_password_accounts_sign_in_and_nobody_signs_up(
    service: SignInService,
) -> None:
    staff = {"custom_claims": {"role": "staff", "point_id": "pt-1"}}
    password = {"event_type": "beforeSignIn", "sign_in_method": "password"}
    assert service.decide({**password, "user_record": staff}, NOW) == {}
    with pytest.raises(SignInRefusedError, match="no role"):
        service.decide({**password, "user_record": {"custom_claims": {}}}, NOW)
    with pytest.raises(SignInRefusedError, match="no role"):
        service.decide({**password, "user_record": {"custom_claims": {"role": "patient"}}}, NOW)
    with pytest.raises(SignInRefusedError, match="administrator"):
        service.decide({**password, "event_type": "beforeCreate", "user_record": {}}, NOW)
    for method in ("google.com", "phone", "anonymous", None):
        with pytest.raises(SignInRefusedError):
            service.decide({"event_type": "beforeSignIn", "sign_in_method": method}, NOW)


# -- the JWT Identity Platform sends -----------------------------------------------------------
URL = "https://authorize-sign-in-123.europe-central2.run.app"


def _event(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "https://securetoken.google.com/prod",
        "aud": URL,
        "iat": now,
        "exp": now + 300,
        "sub": "u-1",
        "event_type": "beforeSignIn",
        "user_record": {"uid": "u-1"},
        **extra,
    }


@pytest.fixture
def certs_url() -> Any:
    body = json.dumps({KID: _certificate(SERVED_KEY)}).encode()

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Certs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/certs-{time.monotonic_ns()}"
    server.shutdown()


def _verify(token: str, certs_url: str, *, emulator: bool = False) -> dict[str, Any]:
    return verify_blocking_token(
        token, "prod", URL, emulator=emulator, now=time.time(), certs_url=certs_url
    )


def test_googles_signature_and_this_functions_url_are_required(certs_url: str) -> None:
    good = jwt.encode(_event(), SERVED_KEY, algorithm="RS256", headers={"kid": KID})
    assert _verify(good, certs_url)["event_type"] == "beforeSignIn"
    forged = jwt.encode(_event(), OTHER_KEY, algorithm="RS256", headers={"kid": KID})
    unsigned = jwt.encode(_event(), None, algorithm="none")
    elsewhere = jwt.encode(
        _event(aud="https://other.run.app"), SERVED_KEY, algorithm="RS256", headers={"kid": KID}
    )
    other_project = jwt.encode(
        _event(iss="https://securetoken.google.com/x"),
        SERVED_KEY,
        algorithm="RS256",
        headers={"kid": KID},
    )
    for token in (forged, unsigned, elsewhere, other_project, "garbage", None):
        with pytest.raises(UnauthenticatedError):
            _verify(token, certs_url)  # type: ignore[arg-type]


def test_the_auth_emulators_unsigned_jwt_is_accepted_in_emulator_mode_only(certs_url) -> None:
    unsigned = jwt.encode(_event(), None, algorithm="none")
    assert _verify(unsigned, certs_url, emulator=True)["sub"] == "u-1"
    with pytest.raises(UnauthenticatedError):
        _verify(jwt.encode(_event(exp=1), None, algorithm="none"), certs_url, emulator=True)
    with pytest.raises(UnauthenticatedError):
        _verify(unsigned, certs_url, emulator=False)
