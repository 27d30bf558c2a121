"""Browser tests of the web apps: headless Chromium (Playwright) against the real gateway.

The gateway runs in this process on a free port, serving web/ and every function, against the
emulators tests/conftest.py starts (each test has its own project). Chromium is the system's
(/usr/bin/chromium, `apt-get install chromium`): `playwright install` is never needed. Without
Chromium or the playwright package the tests skip, saying why.

UPDATE_SCREENSHOTS=1 saves the main screens to docs/screenshots/ (viewport 1280x800).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from common import wiring
from common.config import Settings
from common.domain.calendar import WARSAW
from tests.support.stack import firestore_client, today_warsaw

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--lang=pl-PL",  # date and time fields in the Polish format
]
VIEWPORT = {"width": 1280, "height": 800}
DEMO_POINTS = 4  # pt-00001 (Wrocław, the demo staff's point) and three in other cities
DEMO_PATIENTS = 8


def chromium_path() -> str | None:
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    candidates = ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    return None


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread
# while it lives, and later tests (the crowd tests, the benchmarks' unit tests) use asyncio.
@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -r requirements-dev.txt)")
    if chromium_path() is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    driver = sync_playwright().start()
    try:
        yield driver
    finally:
        driver.stop()


@pytest.fixture
def browser_context(playwright_driver: Any, tmp_path: Path) -> Iterator[Any]:
    """A fresh Chromium profile per test: no storage carried over between tests."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    context = playwright_driver.chromium.launch_persistent_context(
        profile,
        executable_path=chromium_path(),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport=VIEWPORT,
        locale="pl-PL",
        timezone_id="Europe/Warsaw",
    )
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        context.close()


@functools.cache
def _no_publisher() -> None:
    return None


@dataclass
class WebStack:
    url: str
    project: str
    tokens: dict[str, dict[str, str]]
    now: datetime
    db: Any
    requests: list[str] = field(default_factory=list)

    def token(self, uid: str) -> str:
        return self.tokens[uid]["token"]


@pytest.fixture(scope="session")
def gateway_server(local_cloud: Any) -> Iterator[tuple[str, dict[str, dict[str, str]]]]:
    """The gateway with /dev/tokens, served once per run; each test puts its project's tokens
    into the dict it serves (the functions read the project from the environment per call)."""
    from emulator.gateway import build_gateway

    tokens: dict[str, dict[str, str]] = {}
    server = make_server("127.0.0.1", 0, build_gateway(dev_tokens=tokens), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", tokens
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def web_stack(
    project: str,
    gateway_server: tuple[str, dict[str, dict[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[WebStack]:
    """Demo data, a clock at 06:00 today (Warsaw), and the demo users' tokens for this project.

    The clock is fixed so that a day published "today" still has slots ahead, whatever the
    hour the tests run at: check-in and completion happen on the visit's day.
    """
    from emulator.seed.demo import seed_demo
    from emulator.seed.users import demo_tokens

    now = datetime.combine(today_warsaw(), time(6, 0), tzinfo=WARSAW)
    monkeypatch.setattr(wiring, "publisher", _no_publisher)  # events stay in the outbox
    monkeypatch.setattr(wiring, "now", lambda: now)
    wiring.reset()
    db = firestore_client(project)
    seed_demo(
        points=DEMO_POINTS,
        patients=DEMO_PATIENTS,
        now=now,
        client=db,
        settings=Settings.from_env(),
    )
    url, served = gateway_server
    served.clear()
    served.update(demo_tokens(project))
    try:
        yield WebStack(url, project, dict(served), now, db)
    finally:
        served.clear()


@pytest.fixture
def page(browser_context: Any, web_stack: WebStack) -> Iterator[Any]:
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("request", lambda request: web_stack.requests.append(request.url))
    page.on("pageerror", lambda err: errors.append(str(err)))
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshot(page: Any, name: str) -> None:
    """Save docs/screenshots/<name>.png when UPDATE_SCREENSHOTS=1 (the viewport only)."""
    if os.environ.get("UPDATE_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)
