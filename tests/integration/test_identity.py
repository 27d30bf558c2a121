"""Identity end to end against the Auth emulator (docs/identity.md).

- A patient signs in as in production: the login-node simulator's signed ID token, the Auth
  emulator's signInWithIdp, the blocking function (served over HTTP, as Identity Platform calls
  it) that verifies the token against the node's keys and sets role and PESEL; a replayed or
  forged assertion is refused.
- The admin API creates, re-roles and disables managed accounts; the claims follow in the
  tokens the emulator issues, and every change is audited.
- The trusted identity header, from both sides: through the dev gateway (as API Gateway) and
  calling a function directly.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from firebase_admin import auth as firebase_auth
from werkzeug.serving import make_server
from werkzeug.test import Client

from common.adapters.firestore_store import AUDIT_LOG
from emulator.login_node import start_login_node
from emulator.sign_in import (
    PROVIDER_ID,
    SignInError,
    _client_call,
    _post,
    login_node_id_token,
    register_blocking_function,
    sign_in_patient,
    sign_in_with_password,
)
from tests.support.identity import admin_app
from tests.support.stack import Api, firestore_client, gateway

PESEL = "44051401359"


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
def login_world(project: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The login node and the gateway served over HTTP, the blocking function registered."""
    server, node = start_login_node()
    http = make_server("127.0.0.1", 0, gateway(), threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    blocking = f"http://127.0.0.1:{http.server_port}/_functions/authorize_sign_in"
    monkeypatch.setenv("LOGIN_NODE_ISSUER", node.issuer)
    monkeypatch.setenv("LOGIN_NODE_JWKS_URL", f"{node.issuer}/jwks")
    monkeypatch.setenv("LOGIN_NODE_CLIENT_ID", node.client_id)
    monkeypatch.setenv("BLOCKING_FUNCTION_URL", blocking)
    from common import wiring

    wiring.reset()
    auth = __import__("os").environ["FIREBASE_AUTH_EMULATOR_HOST"]
    register_blocking_function(auth, project, blocking)
    try:
        yield {"auth": auth, "node": node, "url": server.base_url, "blocking": blocking}
    finally:
        http.shutdown()
        server.stop()


def _blocking_url(world: dict[str, Any]) -> str:
    return world["blocking"]


def test_a_patient_signs_in_through_the_login_node(project: str, login_world) -> None:
    w = login_world
    answer = sign_in_patient(
        w["auth"], w["url"], w["node"].client_id, "patient-anna", project_id=project
    )
    claims = _claims(answer["idToken"])
    assert claims["role"] == "patient" and claims["pesel"] == PESEL and claims["aud"] == project
    assert claims["firebase"]["sign_in_provider"] == PROVIDER_ID
    # The PESEL is a session claim: nothing of it is stored on the Identity Platform user.
    user = firebase_auth.get_user(claims["sub"], app=admin_app(project))
    assert not user.custom_claims and PESEL not in str(user.provider_data)
    # The functions accept the token.
    listed = Api(project).call("GET", "/v1/me/appointments", token=answer["idToken"])
    assert listed.status_code == 200, listed.get_json()


def _sign_in_with(auth: str, project: str, node_token: str) -> dict[str, Any]:
    body = {
        "postBody": f"id_token={node_token}&providerId={PROVIDER_ID}",
        "requestUri": "http://127.0.0.1/signed-in",
        "returnSecureToken": True,
    }
    return _client_call(auth, "accounts:signInWithIdp", body, project)


def test_replayed_and_forged_assertions_are_refused(project: str, login_world) -> None:
    w = login_world
    node_token = login_node_id_token(
        w["url"], w["node"].client_id, "patient-jan", "http://127.0.0.1/x", "n-1"
    )
    assert _claims(_sign_in_with(w["auth"], project, node_token)["idToken"])["role"] == "patient"
    with pytest.raises(SignInError, match="used already"):
        _sign_in_with(w["auth"], project, node_token)
    # The Auth emulator verifies no signature: the blocking function does (the node's JWKS).
    forged = dict(_claims(node_token), jti=uuid.uuid4().hex, pesel=PESEL)
    other_key = __import__("cryptography.hazmat.primitives.asymmetric.rsa").hazmat.primitives
    key = other_key.asymmetric.rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = jwt.get_unverified_header(node_token)["kid"]
    with pytest.raises(SignInError, match="not valid"):
        _sign_in_with(w["auth"], project, jwt.encode(forged, key, "RS256", headers={"kid": kid}))
    unsigned = jwt.encode(forged, None, algorithm="none")
    with pytest.raises(SignInError):
        _sign_in_with(w["auth"], project, unsigned)


def test_nobody_signs_up_with_a_password(login_world, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client's sign-up (the API-key path: the emulator's default project; with the owner
    credential it would be an admin's, which blocking functions do not see, as deployed)."""
    from common import wiring
    from emulator.sign_in import API_KEY

    default = "demo-erejestracja-test"  # tests/conftest.py starts the emulator for it
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", default)
    wiring.reset()
    register_blocking_function(login_world["auth"], default, _blocking_url(login_world))
    body = {"email": f"{uuid.uuid4().hex[:8]}@example.org", "password": "secret-123"}
    url = f"http://{login_world['auth']}/identitytoolkit.googleapis.com/v1/accounts:signUp"
    with pytest.raises(SignInError, match="administrator"):
        _post(f"{url}?key={API_KEY}", {**body, "returnSecureToken": True})


def test_the_admin_api_creates_re_roles_and_disables_accounts(project: str) -> None:
    api = Api(project)
    admin = api.token("admin-1", "admin")
    body = {"email": "Ola@Example.org", "display_name": "Ola", "role": "staff", "point_id": "pt-1"}
    created = api.call("POST", "/v1/admin/accounts", token=admin, body=body, key="k-1")
    assert created.status_code == 201, created.get_json()
    uid = created.get_json()["account"]["uid"]
    # The person sets their password (the password e-mail), then signs in.
    firebase_auth.update_user(uid, password="haslo-ola-1", app=admin_app(project))
    auth = __import__("os").environ["FIREBASE_AUTH_EMULATOR_HOST"]

    def sign_in() -> dict[str, Any]:
        answer = sign_in_with_password(auth, "ola@example.org", "haslo-ola-1", project_id=project)
        return _claims(answer["idToken"])

    assert (sign_in()["role"], sign_in()["point_id"]) == ("staff", "pt-1")
    moved = api.call(
        "PATCH", f"/v1/admin/accounts/{uid}", token=admin, body={"role": "agent"}, key="k-2"
    )
    assert moved.status_code == 200 and moved.get_json()["account"]["role"] == "agent"
    assert sign_in()["role"] == "agent" and "point_id" not in sign_in()
    disabled = api.call(
        "PATCH", f"/v1/admin/accounts/{uid}", token=admin, body={"disabled": True}, key="k-3"
    )
    assert disabled.status_code == 200
    with pytest.raises(SignInError, match="USER_DISABLED"):
        sign_in()
    audits = [d.to_dict() for d in firestore_client(project).collection(AUDIT_LOG).stream()]
    assert sorted(a["action"] for a in audits) == ["account.created"] + ["account.updated"] * 2
    assert {a["actor_uid"] for a in audits} == {"admin-1"}
    # An admin does not demote themself.
    me = firebase_auth.create_user(email="boss@example.org", app=admin_app(project))
    firebase_auth.set_custom_user_claims(me.uid, {"role": "admin"}, app=admin_app(project))
    own = api.token(me.uid, "admin")
    refused = api.call(
        "PATCH", f"/v1/admin/accounts/{me.uid}", token=own, body={"role": "agent"}, key="k-4"
    )
    assert refused.status_code == 403


# -- the trusted identity header ---------------------------------------------------------------
def test_through_the_gateway_the_callers_authorization_is_the_identity(project: str) -> None:
    api = Api(project)
    anna = api.token("anna", "patient", pesel=PESEL)
    jan = api.token("jan", "patient", pesel="02270803624")
    client = Client(gateway())
    ok = client.get(
        "/v1/me/appointments",
        headers={"Authorization": f"Bearer {anna}", "X-Forwarded-Authorization": "Bearer x"},
    )
    assert ok.status_code == 200  # a client's own X-Forwarded-Authorization never passes
    smuggled = client.get(
        "/v1/me/appointments", headers={"X-Forwarded-Authorization": f"Bearer {jan}"}
    )
    assert smuggled.status_code == 401  # ... so it cannot stand in for Authorization


def test_called_directly_x_forwarded_authorization_is_read_first_and_alone(project: str) -> None:
    from emulator.gateway import build_function_apps

    app = build_function_apps(["list_my_appointments"])["list_my_appointments"]
    client = Client(app)
    anna = Api(project).token("anna", "patient", pesel=PESEL)
    path = "/v1/me/appointments"
    gateway_identity = "Bearer eyJhbGciOiJSUzI1NiJ9.gateway-service-account.sig"
    as_deployed = {"Authorization": gateway_identity, "X-Forwarded-Authorization": f"Bearer {anna}"}
    assert client.get(path, headers=as_deployed).status_code == 200
    # A wrong forwarded token is not rescued by a good Authorization: no fallback.
    wrong = {"Authorization": f"Bearer {anna}", "X-Forwarded-Authorization": "Bearer x"}
    assert client.get(path, headers=wrong).status_code == 401
    assert client.get(path, headers={"Authorization": f"Bearer {anna}"}).status_code == 200
