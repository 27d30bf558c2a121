"""P1 (national e-Health platform) simulator: e-referrals and vaccination records.

Usage in tests::

    with start_p1(token="t") as server:
        client = P1Client(server.base_url, "t")   # common.adapters.p1_client
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    **app_options: Any,
) -> RunningServer:
    """Serve a fresh P1 simulator in a background thread (port 0 = a free port)."""
    app = make_app(token=token, state_path=state_path, seed=seed, **app_options)
    return serve_in_thread(app, host, port)
