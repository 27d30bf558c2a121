"""SDS (vaccine distribution system) simulator: deliveries of doses and booked demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulator.faults import RunningServer, serve_in_thread
from emulator.sds.app import API, DEFAULT_TOKEN, make_app

__all__ = ["API", "DEFAULT_TOKEN", "make_app", "start_sds"]


def start_sds(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str = DEFAULT_TOKEN,
    state_path: Path | None = None,
    seed: int = 0,
    **app_options: Any,
) -> RunningServer:
    """Serve a fresh SDS simulator in a background thread (port 0 = a free port)."""
    app = make_app(token=token, state_path=state_path, seed=seed, **app_options)
    return serve_in_thread(app, host, port)
