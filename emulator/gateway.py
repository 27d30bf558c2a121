"""The dev gateway: one base URL (`/v1/...`) routed to the per-use-case functions.

In production an API Gateway routes each path of api/openapi.yaml to its function (the
`x-function` extension names it, Terraform turns it into `x-google-backend`). Locally this
gateway reads the same document and serves every function in-process through
functions-framework's own `create_app`, so a client sees the same API it will see in
production. Functions that are not public (Pub/Sub push targets, scheduled jobs) are reachable
under `/_functions/<name>`, the way push subscriptions and Cloud Scheduler reach them.

The caller's identity travels as it does behind API Gateway (docs/identity.md): on /v1 routes
the caller's `Authorization` moves to `X-Forwarded-Authorization`, any
`X-Forwarded-Authorization` the client sent is dropped (API Gateway overwrites it), and
`Authorization` carries the gateway's own identity, which a function never reads.

`python -m emulator.gateway --host H --port P [--dev-tokens FILE] [--workers N]` serves it as
instances serve functions in production: gunicorn `gthread` workers, each building the gateway
after the fork (emulator/serve.py says which settings and why). Tests call `build_gateway()`
in-process.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import functions_framework
import yaml
from werkzeug.wrappers import Request, Response

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
OPENAPI_PATH = ROOT / "api" / "openapi.yaml"
WEB_DIR = ROOT / "web"
_HTTP_METHODS = ("get", "post", "put", "patch", "delete")
# Stands for the gateway's own Google-signed OIDC token (audience: the function's URL), which
# Cloud Run's IAM check consumes in production; the functions never read it.
GATEWAY_IDENTITY = "Bearer dev-gateway-identity"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    function: str


def discover_functions(functions_dir: Path = FUNCTIONS_DIR) -> list[str]:
    """A function is a folder of functions/ with a main.py; its target has the folder's name."""
    return sorted(p.parent.name for p in functions_dir.glob("*/main.py"))


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}/]+\})", template)
    regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}\\Z")


def load_routes(openapi_path: Path = OPENAPI_PATH) -> list[Route]:
    if not openapi_path.exists():
        return []
    spec = yaml.safe_load(openapi_path.read_text(encoding="utf-8"))
    routes = []
    for template, item in (spec.get("paths") or {}).items():
        for method in _HTTP_METHODS:
            operation = item.get(method)
            if operation and operation.get("x-function"):
                routes.append(
                    Route(
                        method.upper(), template, _template_regex(template), operation["x-function"]
                    )
                )
    # Literal segments beat parameters: /v1/appointments/mine before /v1/appointments/{id}.
    routes.sort(key=lambda r: (r.template.count("{"), -len(r.template)))
    return routes


def _json(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status=status, mimetype="application/json", headers=headers)


class Gateway:
    def __init__(
        self,
        functions: dict[str, WsgiApp],
        routes: list[Route],
        extra_handlers: dict[str, Callable[[Request], Response]] | None = None,
    ) -> None:
        self.functions = functions
        self.routes = routes
        self.extra_handlers = extra_handlers or {}

    def _match(self, method: str, path: str) -> tuple[Route | None, bool]:
        path_known = False
        for route in self.routes:
            if route.pattern.match(path):
                path_known = True
                if route.method == method:
                    return route, True
        return None, path_known

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        request = Request(environ)
        path = request.path
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
            return _json(404, "not_found", "not found")(environ, start_response)
        if path.startswith("/_functions/"):
            name = path[len("/_functions/") :].split("/", 1)[0]
            app = self.functions.get(name)
            if app is None:
                return _json(404, "not_found", f"no function named {name}")(environ, start_response)
            return app(environ, start_response)
        if path.startswith("/v1/"):
            method = "GET" if request.method == "HEAD" else request.method
            route, path_known = self._match(method, path)
            if route is None:
                if path_known:
                    return _json(405, "method_not_allowed", "method not allowed on this path")(
                        environ, start_response
                    )
                return _json(404, "not_found", "no such API path")(environ, start_response)
            return self.functions[route.function](as_forwarded(environ), start_response)
        for prefix, handler in self.extra_handlers.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return handler(request)(environ, start_response)
        return _json(404, "not_found", "not found")(environ, start_response)


def as_forwarded(environ: dict[str, Any]) -> dict[str, Any]:
    """The request as API Gateway hands it to a function: the caller's Authorization in
    X-Forwarded-Authorization (a client's own X-Forwarded-Authorization never passes), and
    the gateway's identity in Authorization."""
    forwarded = dict(environ)
    forwarded.pop("HTTP_X_FORWARDED_AUTHORIZATION", None)
    caller = forwarded.pop("HTTP_AUTHORIZATION", None)
    if caller is not None:
        forwarded["HTTP_X_FORWARDED_AUTHORIZATION"] = caller
    forwarded["HTTP_AUTHORIZATION"] = GATEWAY_IDENTITY
    return forwarded


def build_function_apps(names: Iterable[str]) -> dict[str, WsgiApp]:
    apps: dict[str, WsgiApp] = {}
    for name in names:
        source = FUNCTIONS_DIR / name / "main.py"
        app = functions_framework.create_app(target=name, source=str(source))
        # Flask's own 404/405 pages are HTML; the API always answers with its error body.
        app.register_error_handler(404, lambda _e: _json(404, "not_found", "not found"))
        app.register_error_handler(
            405, lambda _e: _json(405, "method_not_allowed", "method not allowed")
        )
        apps[name] = app
    return apps


def _static_handler(root: Path) -> Callable[[Request], Response]:
    def serve(request: Request) -> Response:
        relative = request.path.lstrip("/") or "index.html"
        target = (root / relative).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not str(target).startswith(str(root.resolve())) or not target.is_file():
            return _json(404, "not_found", "not found")
        mimetype = {
            ".html": "text/html",
            ".js": "text/javascript",
            ".css": "text/css",
            ".json": "application/json",
            ".svg": "image/svg+xml",
            ".png": "image/png",
        }.get(target.suffix, "application/octet-stream")
        return Response(target.read_bytes(), mimetype=mimetype)

    return serve


def sign_in_config() -> dict[str, Any]:
    import os

    from emulator.seed.users import DEMO_PASSWORD, DEMO_USERS

    auth = os.environ.get("FIREBASE_AUTH_EMULATOR_HOST")
    if os.environ.get("LOCAL_STACK") != "1" or not auth:
        return {}
    return {
        "auth_emulator": f"http://{auth}",
        "api_key": "local-api-key",
        "login_node": os.environ.get("LOGIN_NODE_ISSUER"),
        "client_id": os.environ.get("LOGIN_NODE_CLIENT_ID"),
        "provider_id": os.environ.get("LOGIN_NODE_PROVIDER_ID", "oidc.login-gov-pl"),
        "patients": [
            {"person": u.uid, "label": u.label} for u in DEMO_USERS if u.role == "patient"
        ],
        "accounts": [
            {"email": u.email, "password": DEMO_PASSWORD, "role": u.role, "label": u.label}
            for u in DEMO_USERS
            if u.email is not None
        ],
    }


def build_gateway(dev_tokens: dict[str, Any] | None = None) -> Gateway:
    sys.path.insert(0, str(ROOT))
    functions = build_function_apps(discover_functions())
    routes = load_routes()
    missing = sorted({r.function for r in routes} - set(functions))
    if missing:
        raise SystemExit(f"api/openapi.yaml routes to functions that do not exist: {missing}")

    def healthz(_: Request) -> Response:
        return Response(
            json.dumps({"status": "ok", "functions": sorted(functions)}),
            mimetype="application/json",
        )

    def openapi(_: Request) -> Response:
        return Response(OPENAPI_PATH.read_bytes(), mimetype="application/yaml")

    def tokens(_: Request) -> Response:
        # Tests only (tests/e2e/browser): tokens the Auth emulator issued for their users.
        return Response(json.dumps(dev_tokens or {}), mimetype="application/json")

    def sign_in(_: Request) -> Response:
        # Local only: where the sign-in page (web/index.js) finds the login node and the Auth
        # emulator, and the demo accounts it offers (docs/identity.md).
        return Response(json.dumps(sign_in_config()), mimetype="application/json")

    handlers: dict[str, Callable[[Request], Response]] = {
        "/healthz": healthz,
        "/openapi.yaml": openapi,
        "/dev/tokens": tokens,
        "/dev/sign-in": sign_in,
    }
    if WEB_DIR.exists():
        handlers["/"] = _static_handler(WEB_DIR)
    return Gateway(functions, routes, handlers)


def main(argv: list[str] | None = None) -> int:
    from emulator.serve import main as serve_main

    return serve_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
