"""Test set-up shared by every suite.

Unit tests need nothing. Integration and end-to-end tests ask for `project` (or
`local_cloud`): the official Firestore, Pub/Sub and Firebase Auth emulators are started once
per run on free ports (or reused when FIRESTORE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST, and
FIREBASE_AUTH_EMULATOR_HOST for Auth, are already set), in emulator mode (LOCAL_STACK=1,
common/config.py), and each test gets a project id of its own, which isolates its data
completely in every emulator. Every ID token of those tests is issued by the Auth emulator
(tests/support/identity.py); only tests/unit may hand-mint one.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from emulator.processes import (  # noqa: E402
    StackError,
    auth_emulator,
    firestore_emulator,
    free_port,
    http_ok,
    pubsub_emulator,
    require_auth_emulator,
    require_tools,
)


def pytest_configure(config: pytest.Config) -> None:
    # CLOCK_AT=23:50 (or CLOCK_OFFSET_S) runs the suite as if it were that Warsaw time: decided
    # once here, so the tests, the in-process functions and every child process share it.
    from common import clock

    clock.resolve_offset(os.environ)
    clock.process_clock.cache_clear()


def pytest_report_header(config: pytest.Config) -> str:
    from common import clock

    moment = clock.now().astimezone(clock.WARSAW)
    shift = clock.process_clock().offset_s
    return f"clock: {moment:%Y-%m-%d %H:%M} in Warsaw" + (
        f" (shifted {shift:+.0f} s)" if shift else ""
    )


# The suites whose outcome could depend on the time of day ("today", "tomorrow", the reminder
# at 18:00 the day before, the visit day, ages and referral windows): `make test-clock` runs
# them again with the whole stack's clock shifted to other Warsaw hours.
CLOCK_SENSITIVE = (
    # Unit tests pass their moments explicitly (services take `now`); these read a clock.
    "tests/unit/test_clock.py",
    "tests/unit/test_firebase_app.py",
    "tests/unit/test_identity_fail_closed.py",
    "tests/unit/test_sign_in_service.py",
    "tests/unit/test_rules_in_force.py",
    "tests/unit/test_waiting_room.py",
    "tests/integration/test_notifications.py",
    "tests/integration/test_sms_dialog.py",
    "tests/integration/test_sms_channel_safety.py",
    "tests/integration/test_contact_data.py",
    "tests/integration/test_visits.py",
    "tests/integration/test_staff_calendar.py",
    "tests/integration/test_booking_flows.py",
    "tests/integration/test_eligibility_api.py",
    "tests/integration/test_hotline.py",
    "tests/integration/test_callbacks.py",
    "tests/integration/test_p1_sync.py",
    "tests/integration/test_p1_reporting.py",
    "tests/integration/test_sds_sync.py",
    "tests/integration/test_rules_in_force.py",
    "tests/e2e/test_full_day.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).relative_to(ROOT).as_posix()
        if path.startswith(CLOCK_SENSITIVE):
            item.add_marker(pytest.mark.clock)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """With REQUIRE_NO_SKIPS=1 (set by .ci/run) a skipped test fails: in CI every tool is
    installed, so a skip (no Chromium, no terraform, no checkov) would hide a real condition."""
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("REQUIRE_NO_SKIPS") == "1"
        and report.skipped
        and not hasattr(report, "wasxfail")
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped, which REQUIRE_NO_SKIPS=1 does not allow: {report.longrepr}"


@dataclass(frozen=True)
class LocalCloud:
    firestore_host: str
    pubsub_host: str
    auth_host: str


@pytest.fixture(scope="session")
def local_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    os.environ["LOCAL_STACK"] = "1"  # emulator mode (common/config.py): the tests' own
    reuse_firestore = os.environ.get("FIRESTORE_EMULATOR_HOST")
    reuse_pubsub = os.environ.get("PUBSUB_EMULATOR_HOST")
    reuse_auth = os.environ.get("FIREBASE_AUTH_EMULATOR_HOST")
    if reuse_auth and not http_ok(f"http://{reuse_auth}/"):
        reuse_auth = None
    wanted = [] if reuse_firestore and reuse_pubsub else ["firestore", "pubsub"]
    if not reuse_auth:
        wanted.append("auth")
    if not wanted:
        yield LocalCloud(reuse_firestore, reuse_pubsub, reuse_auth)
        return
    try:
        if "firestore" in wanted:
            require_tools()
        if "auth" in wanted:
            require_auth_emulator()
    except StackError as err:
        pytest.exit(f"cannot start the emulators: {err}", returncode=3)
    logs = tmp_path_factory.mktemp("emulator-logs")
    host = "127.0.0.1"
    processes = {}
    if "firestore" in wanted:
        processes["firestore"] = firestore_emulator(host, free_port(host), logs)
        processes["pubsub"] = pubsub_emulator(host, free_port(host), "test", logs)
    auth_port = free_port(host)
    if "auth" in wanted:
        # Measured: 6-20 s to ready on a quiet 2-core machine (40 s under heavy load).
        processes["auth"] = auth_emulator(host, auth_port, "demo-erejestracja-test", logs)
    started = []
    try:
        for process in processes.values():
            process.start()
            started.append(process)
        for process in processes.values():
            process.wait_ready(180)
    except StackError as err:
        for process in started:
            process.stop()
        pytest.exit(f"cannot start the emulators: {err}", returncode=3)
    set_here = []
    if "firestore" in processes:
        firestore, pubsub = processes["firestore"], processes["pubsub"]
        firestore_host = firestore.argv[-1].split("=", 1)[1]
        pubsub_host = next(a for a in pubsub.argv if a.startswith("--host-port=")).split("=")[1]
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_host
        set_here += ["FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"]
        _warm_up(firestore_host)
    if "auth" in processes:
        os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = f"{host}:{auth_port}"
        set_here.append("FIREBASE_AUTH_EMULATOR_HOST")
    try:
        yield LocalCloud(
            os.environ["FIRESTORE_EMULATOR_HOST"],
            os.environ["PUBSUB_EMULATOR_HOST"],
            os.environ["FIREBASE_AUTH_EMULATOR_HOST"],
        )
    finally:
        for process in started:
            process.stop()
        for name in set_here:
            os.environ.pop(name, None)


def _warm_up(firestore_host: str) -> None:
    """One unhurried round trip: a just-started emulator on a busy machine answers its first
    requests slowly (JIT), slower than the services' few-second RPC budget."""
    from google.cloud import firestore

    client = firestore.Client(project="warm-up")
    client.collection("warm_up").document("ping").set({"at": 1}, timeout=120)
    client.collection("warm_up").document("ping").get(timeout=120)


@pytest.fixture
def project(local_cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh project id: an empty database and an empty Pub/Sub namespace for this test."""
    from common import wiring

    project_id = f"test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project_id)
    monkeypatch.delenv("PESEL_HASH_KEY", raising=False)
    wiring.reset()
    yield project_id
    wiring.reset()
