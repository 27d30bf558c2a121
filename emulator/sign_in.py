"""Signing in to the local stack the way its clients do, for scripts and tests.

- A patient: the login-node simulator's authorize endpoint (the person chosen by key) answers
  with its signed ID token; the Auth emulator's `signInWithIdp` takes it for the OIDC provider
  `oidc.login-gov-pl`, calls the identity blocking function (which verifies the token against
  the node's keys and sets `role` and `pesel`), and issues the ID token.
- Staff, agents, admins: `signInWithPassword` with an account the admin API made.

The web sign-in page (web/index.js) does the same from the browser. Nothing here mints a token.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

PROVIDER_ID = "oidc.login-gov-pl"
API_KEY = "local-api-key"  # the Auth emulator takes any key


class SignInError(Exception):
    """The sign-in was refused (the message is the emulator's or the node's)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict:
    request = urllib.request.Request(  # noqa: S310 (local emulators)
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        raise SignInError(err.read().decode(errors="replace")[:500]) from None


def _client_call(auth_host: str, path: str, body: dict[str, Any], project_id: str | None) -> dict:
    """A client API call of the Auth emulator; with `project_id`, for that project (the
    emulator serves every project; its owner credential picks one), else its default one."""
    url = f"http://{auth_host}/identitytoolkit.googleapis.com/v1/{path}"
    if project_id is None:
        return _post(f"{url}?key={API_KEY}", body)
    return _post(url, {**body, "targetProjectId": project_id}, {"Authorization": "Bearer owner"})


def login_node_id_token(
    login_node_url: str, client_id: str, person: str, redirect_uri: str, nonce: str
) -> str:
    """The ID token the login node sends back for `person` (no browser: the redirect is read)."""
    query = urlencode(
        {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "id_token",
            "nonce": nonce,
            "state": secrets.token_hex(8),
            "person": person,
        }
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(f"{login_node_url}/authorize?{query}", timeout=30)
    except urllib.error.HTTPError as err:
        if err.code != 302:
            raise SignInError(f"the login node answered {err.code}") from None
        location = err.headers["Location"]
    else:
        raise SignInError(f"the login node does not know the person {person!r}")
    fragment = parse_qs(urlsplit(location).fragment)
    return fragment["id_token"][0]


def sign_in_patient(
    auth_host: str,
    login_node_url: str,
    client_id: str,
    person: str,
    *,
    project_id: str | None = None,
    redirect_uri: str = "http://127.0.0.1/signed-in",
) -> dict[str, Any]:
    """The Auth emulator's answer (idToken, refreshToken, localId...) for a patient."""
    nonce = secrets.token_hex(12)
    node_token = login_node_id_token(login_node_url, client_id, person, redirect_uri, nonce)
    return _client_call(
        auth_host,
        "accounts:signInWithIdp",
        {
            "postBody": urlencode({"id_token": node_token, "providerId": PROVIDER_ID}),
            "requestUri": redirect_uri,
            "returnSecureToken": True,
            "returnIdpCredential": False,
        },
        project_id,
    )


def sign_in_with_password(
    auth_host: str, email: str, password: str, *, project_id: str | None = None
) -> dict[str, Any]:
    return _client_call(
        auth_host,
        "accounts:signInWithPassword",
        {"email": email, "password": password, "returnSecureToken": True},
        project_id,
    )


def register_blocking_function(auth_host: str, project_id: str, function_url: str) -> None:
    """Identity Platform's blocking-function config, in the Auth emulator (Terraform sets the
    same in google_identity_platform_config): both events, the IdP's ID token forwarded."""
    request = urllib.request.Request(
        f"http://{auth_host}/identitytoolkit.googleapis.com/v2/projects/{project_id}/config"
        "?updateMask=blockingFunctions",
        data=json.dumps(
            {
                "blockingFunctions": {
                    "triggers": {
                        "beforeCreate": {"functionUri": function_url},
                        "beforeSignIn": {"functionUri": function_url},
                    },
                    "forwardInboundCredentials": {"idToken": True},
                }
            }
        ).encode(),
        method="PATCH",
        headers={"Content-Type": "application/json", "Authorization": "Bearer owner"},
    )
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310
        pass
