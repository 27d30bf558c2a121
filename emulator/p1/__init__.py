"""P1 (national e-Health platform) simulator: e-referrals and vaccination records.

Usage in tests::

    with start_p1(token="t") as server:
        client = P1Client(server.base_url, "t")   # common.adapters.p1_client

    pki = generate_pki(tmp_path)                  # emulator.certs: mutual TLS, as the real P1
    with start_p1(pki=pki) as server:
        client = P1Client.mutual_tls(server.base_url, str(pki.client_cert),
                                     str(pki.client_key), str(pki.ca))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulator.certs import Pki
from emulator.faults import RunningServer, serve_in_thread
from emulator.p1.app import API, DEFAULT_TOKEN, make_app

__all__ = ["API", "DEFAULT_TOKEN", "make_app", "start_p1"]


def start_p1(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str = DEFAULT_TOKEN,
    state_path: Path | None = None,
    seed: int = 0,
    pki: Pki | None = None,
    **app_options: Any,
) -> RunningServer:
    """Serve a fresh P1 simulator in a background thread (port 0 = a free port). With `pki`
    (emulator/certs.py) it serves HTTPS and requires a client certificate of that CA (mutual
    TLS, as the real P1): the certificate is then the credential, no bearer token is asked."""
    app = make_app(
        token=None if pki is not None else token, state_path=state_path, seed=seed, **app_options
    )
    context = pki.server_context(require_client_cert=True) if pki is not None else None
    return serve_in_thread(app, host, port, context)
