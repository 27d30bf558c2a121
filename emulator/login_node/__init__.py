"""The national login node simulator (login.gov.pl as an OIDC provider): see README.md."""

from __future__ import annotations

from typing import Any

from emulator.faults import RunningServer, serve_in_thread
from emulator.login_node.app import DEFAULT_CLIENT_ID, LoginNode, make_app

__all__ = ["DEFAULT_CLIENT_ID", "LoginNode", "start_login_node"]


def start_login_node(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    client_id: str = DEFAULT_CLIENT_ID,
    redirect_prefixes: tuple[str, ...] = ("http://127.0.0.1", "http://localhost"),
    **_: Any,
) -> tuple[RunningServer, LoginNode]:
    """Serve a login node in a background thread (port 0 = a free port); its issuer is its URL."""
    import socket

    if port == 0:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
    node = LoginNode(f"http://{host}:{port}", client_id, redirect_prefixes)
    return serve_in_thread(make_app(node), host, port), node
