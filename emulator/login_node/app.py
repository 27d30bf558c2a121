"""The national login node (login.gov.pl) as the local stack plays it: an OIDC provider.

A demo person picks who they are on the authorize page (the demo patients of
emulator/seed/users.py) and is sent back to the client with an ID token signed RS256 by a key
generated when the simulator starts (kept in memory only: no private key is ever written or
committed). Its public half is at /jwks, as the real node's bridge publishes its keys, and the
identity blocking function verifies the token against it exactly as it verifies the real one
(common/adapters/login_node.py). Implicit flow (`response_type=id_token`, `nonce`, `state`),
the token in the redirect's fragment, because the local web apps have no back end of their
own; production uses the code flow through Identity Platform (docs/identity.md).
"""

from __future__ import annotations

import hashlib
import html
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, redirect, request
from jwt.algorithms import RSAAlgorithm

from common import clock

DEFAULT_CLIENT_ID = "e-rejestracja-local"
LEVEL_HIGH = "http://eidas.europa.eu/LoA/high"
LEVEL_SUBSTANTIAL = "http://eidas.europa.eu/LoA/substantial"
TOKEN_LIFETIME_S = 300
LEVELS = (LEVEL_SUBSTANTIAL, LEVEL_HIGH)


@dataclass(frozen=True)
class Person:
    key: str
    label: str
    pesel: str
    assurance: str


def demo_people() -> list[Person]:
    from emulator.seed.users import DEMO_USERS

    means = ["Profil Zaufany", "e-dowód", "bankowość elektroniczna"]
    patients = [u for u in DEMO_USERS if u.role == "patient" and u.pesel]
    return [
        Person(u.uid, f"{u.label}: {means[i % 3]}", u.pesel or "", LEVELS[i % 2])
        for i, u in enumerate(patients)
    ]


class LoginNode:
    def __init__(self, issuer: str, client_id: str, redirect_prefixes: tuple[str, ...]) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.redirect_prefixes = redirect_prefixes
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex[:16]
        self.people = {p.key: p for p in demo_people()}

    def jwks(self) -> dict[str, Any]:
        public = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def id_token(self, person: Person, nonce: str | None) -> str:
        now = int(clock.now().timestamp())
        # A pairwise subject: stable per person and client, and not the PESEL.
        subject = hashlib.sha256(f"{self.client_id}\x00{person.pesel}".encode()).hexdigest()[:32]
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "sub": subject,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            "jti": uuid.uuid4().hex,
            "acr": person.assurance,
            "pesel": person.pesel,
        }
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def allowed_redirect(self, uri: str) -> bool:
        parts = urlsplit(uri)
        return parts.scheme in ("http", "https") and any(
            uri.startswith(prefix) for prefix in self.redirect_prefixes
        )


def make_app(node: LoginNode) -> Flask:
    app = Flask("login_node")

    @app.get("/.well-known/openid-configuration")
    def discovery() -> dict[str, Any]:
        return {
            "issuer": node.issuer,
            "authorization_endpoint": f"{node.issuer}/authorize",
            "jwks_uri": f"{node.issuer}/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["sub", "pesel", "acr", "jti", "nonce"],
        }

    @app.get("/jwks")
    def jwks() -> dict[str, Any]:
        return node.jwks()

    @app.get("/authorize")
    def authorize() -> Any:
        args = request.args
        redirect_uri = args.get("redirect_uri", "")
        if args.get("client_id") != node.client_id or not node.allowed_redirect(redirect_uri):
            return Response("unknown client or redirect_uri", status=400, mimetype="text/plain")
        if args.get("response_type") != "id_token":
            return Response("response_type must be id_token", status=400, mimetype="text/plain")
        person = node.people.get(args.get("person", ""))
        if person is None:
            return Response(_chooser(node, dict(args)), mimetype="text/html")
        fragment = urlencode(
            {"id_token": node.id_token(person, args.get("nonce")), "state": args.get("state", "")}
        )
        return redirect(f"{redirect_uri}#{fragment}", code=302)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "issuer": node.issuer, "at": time.time()}

    return app


def _chooser(node: LoginNode, args: dict[str, str]) -> str:
    rows = "".join(
        f'<li><a href="/authorize?{html.escape(urlencode({**args, "person": p.key}))}">'
        f"{html.escape(p.label)}</a></li>"
        for p in node.people.values()
    )
    return f"""<!doctype html><html lang="pl"><head><meta charset="utf-8">
<title>login.gov.pl (symulator)</title></head><body>
<h1>Węzeł Krajowy — symulator</h1>
<p>Wersja demonstracyjna: wybierz osobę, jako która się logujesz.
(Demo: choose who you are; the node then vouches for your PESEL.)</p>
<ul>{rows}</ul></body></html>"""
