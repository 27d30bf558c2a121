"""Browser tests of the web apps: headless Chromium (Playwright) against the real gateway.

The gateway runs in this process on a free port, serving web/ and every function, against the
emulators tests/conftest.py starts (each test has its own project). Chromium is the system's
(/usr/bin/chromium, `apt-get install chromium`): `playwright install` is never needed. Without
Chromium or the playwright package the tests skip, saying why.

UPDATE_SCREENSHOTS=1 saves the main screens to docs/screenshots/ (viewport 1280x800, and
390x844 for the phone versions).

axe-core (tests/e2e/browser/package.json, locked) is injected into the pages by Playwright:
it comes from npm once (`npm ci` here, which `make test` runs), never from the network at
test time.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
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
from emulator.seed.users import DEMO_USERS
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
PHONE = {"width": 390, "height": 844}
TOOLING = Path(__file__).resolve().parent
AXE_JS = TOOLING / "node_modules" / "axe-core" / "axe.min.js"
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
    # The stack's clock (wiring.now): `now` until a test moves it (move_to).
    clock: list[datetime] = field(default_factory=list)
    # The browsers' clocks (Playwright's), kept at the stack's: a page decides from its own
    # Date whether a visit has started (no "move" button then), so a page on the real clock
    # and a stack at 06:00 disagreed after 08:00, and a test failed for the hour it ran at.
    browser_clocks: list[Any] = field(default_factory=list)

    def token(self, uid: str) -> str:
        return self.tokens[uid]["token"]

    def move_to(self, moment: datetime) -> None:
        """Move the stack's clock (every function reads wiring.now) and the pages' to `moment`."""
        self.clock[0] = moment
        for browser_clock in self.browser_clocks:
            browser_clock.set_fixed_time(moment)

    def current(self) -> datetime:
        return self.clock[0]


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
    clock = [now]  # a test may move it (WebStack.move_to): the opening's waiting room does
    monkeypatch.setattr(wiring, "publisher", _no_publisher)  # events stay in the outbox
    monkeypatch.setattr(wiring, "now", lambda: clock[0])
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
        yield WebStack(url, project, dict(served), now, db, clock=clock)
    finally:
        served.clear()


@pytest.fixture
def page(browser_context: Any, web_stack: WebStack) -> Iterator[Any]:
    # Date.now() is the stack's moment; timers still run (the pages poll as they would).
    browser_context.clock.set_fixed_time(web_stack.current())
    web_stack.browser_clocks.append(browser_context.clock)
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


# -- accessibility (axe-core) and phone width --------------------------------------------------


@functools.cache
def axe_source() -> str | None:
    """axe-core's script, installed from the lock file by npm if it is not there yet."""
    if not AXE_JS.exists() and shutil.which("npm"):
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=TOOLING,
            capture_output=True,
            timeout=300,
            check=False,
        )
    return AXE_JS.read_text(encoding="utf-8") if AXE_JS.exists() else None


@pytest.fixture(scope="module")
def axe() -> str:
    source = axe_source()
    if source is None:
        pytest.skip("axe-core is not installed (npm ci --prefix tests/e2e/browser)")
    return source


_AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
  }));
}"""


def assert_accessible(page: Any, source: str, where: str) -> None:
    """axe-core finds no violation on the page as it is now (open dialogs included)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=source)
    violations = page.evaluate(_AXE_RUN)
    assert violations == [], f"{where}: {violations}"


_OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const over = [];
  for (const node of document.querySelectorAll('body *')) {
    if (node.closest('dialog:not([open])')) continue;
    const r = node.getBoundingClientRect();
    if (r.width <= 1 || r.height <= 1) continue;  // visually hidden, empty
    if (r.right > width + 0.5) {
      const name = `${node.tagName.toLowerCase()}#${node.id}.${node.className}`;
      over.push(`${name} right=${Math.round(r.right)}`);
    }
  }
  return {width, scroll: document.documentElement.scrollWidth, over: over.slice(0, 8)};
}"""


def assert_fits_the_width(page: Any, where: str) -> None:
    """Nothing sticks out to the right: no horizontal scrolling, on the page or in a box."""
    found = page.evaluate(_OVERFLOW)
    assert found["scroll"] <= found["width"] and found["over"] == [], f"{where}: {found}"


# -- what both browser suites use ------------------------------------------------------------
PESEL = {u.uid: u.pesel for u in DEMO_USERS if u.pesel}
STAFF_POINT = "pt-00001"
STAFF_POINT_POSTCODE = "50-444"  # pt-00001 of the demo data is in Wrocław
WROCLAW = {"latitude": 51.1079, "longitude": 17.0385}


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def http(stack: WebStack, method: str, path: str, uid: str, body: Any = None) -> tuple[int, Any]:
    """The API as a client of the stack, signed in as `uid` (a key on every write)."""
    headers = {"Authorization": f"Bearer {stack.token(uid)}", "Accept": "application/json"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    if method != "GET":
        headers["Idempotency-Key"] = uuid.uuid4().hex
    request = urllib.request.Request(stack.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def log_in(page: Any, stack: WebStack, uid: str) -> None:
    page.goto(stack.url + "/")
    label = stack.tokens[uid]["label"]
    page.get_by_role("button", name=f"Zaloguj jako: {label}").click()


def publish_today(stack: WebStack, opens: str, closes: str, minutes: int, seats: int) -> None:
    day = stack.now.date()
    status, body = http(
        stack,
        "POST",
        f"/v1/points/{STAFF_POINT}/calendar/publish",
        "staff-1",
        {
            "date_from": day.isoformat(),
            "date_to": day.isoformat(),
            "weekdays": list(range(7)),
            "opens": opens,
            "closes": closes,
            "slot_minutes": minutes,
            "capacity": seats,
            "product": "comirnaty",
        },
    )
    assert status == 200, body
