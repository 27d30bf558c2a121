"""SMS gateway simulator: outgoing SMS deduped by our id, incoming SMS pushed to a webhook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulator.faults import RunningServer, serve_in_thread
from emulator.sms.app import API, DEFAULT_TOKEN, SIGNATURE_HEADER, make_app

__all__ = ["API", "DEFAULT_TOKEN", "SIGNATURE_HEADER", "make_app", "start_sms"]


def start_sms(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str = DEFAULT_TOKEN,
    state_path: Path | None = None,
    seed: int = 0,
    **app_options: Any,
) -> RunningServer:
    """Serve a fresh SMS gateway simulator in a background thread (port 0 = a free port)."""
    app = make_app(token=token, state_path=state_path, seed=seed, **app_options)
    return serve_in_thread(app, host, port)
