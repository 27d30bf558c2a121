"""Start, watch and stop the processes of the local cloud.

Every child runs in its own session (process group) so that stopping it also stops what it
spawned: `gcloud emulators ... start` is a Python wrapper around a Java process, and killing
only the wrapper would leave Java running.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The official Firebase Auth emulator: firebase-tools from npm, pinned in
# emulator/auth_emulator/package-lock.json and installed by `make install` (npm ci).
AUTH_EMULATOR_DIR = ROOT / "emulator" / "auth_emulator"
FIREBASE_CLI = AUTH_EMULATOR_DIR / "node_modules" / ".bin" / "firebase"


class StackError(Exception):
    """A problem the person starting the stack can fix; printed as one clear message."""


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, chosen below the kernel's range for outgoing connections.

    A port the kernel hands out for `bind(0)` comes from that range, so any client's next
    connection may take it before our server binds it: in CI the Auth emulator lost its
    logging port so (EADDRINUSE) while another worker's tests were busy connecting. Below the
    range only another server can take it, and each candidate is checked."""
    low = _ephemeral_low()
    for _ in range(200):
        port = _random.randint(max(1025, low - 12_000), low - 1)
        if port_is_free(host, port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_random = random.SystemRandom()  # two test workers seeded alike must not pick alike


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def require_free_port(host: str, port: int, what: str, option: str) -> None:
    if not port_is_free(host, port):
        raise StackError(
            f"port {port} on {host} is already in use, so the {what} cannot start there. "
            f"Stop whatever listens on it (see `ss -ltnp 'sport = :{port}'`), or pick another "
            f"port with {option}."
        )


def require_tools() -> None:
    """Java and gcloud with both emulators: say what to install instead of a traceback."""
    if shutil.which("java") is None:
        raise StackError(
            "Java is not installed or not on PATH; the Firestore and Pub/Sub emulators need "
            "Java 11 or newer (on Debian: `apt-get install -y openjdk-17-jre-headless`)."
        )
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise StackError(
            "the gcloud CLI is not installed or not on PATH; install the Google Cloud SDK "
            "with the components cloud-firestore-emulator and pubsub-emulator "
            "(https://cloud.google.com/sdk/docs/install)."
        )
    sdk_root = Path(os.path.realpath(gcloud)).parent.parent
    # Debian packages put the emulators in /usr/lib/google-cloud-sdk/platform/...
    candidates = [sdk_root, Path("/usr/lib/google-cloud-sdk"), sdk_root / "lib/google-cloud-sdk"]
    for component in ("cloud-firestore-emulator", "pubsub-emulator"):
        if not any((root / "platform" / component).exists() for root in candidates):
            raise StackError(
                f"the gcloud component '{component}' is missing; install it with "
                f"`gcloud components install {component}` (or the Debian package "
                f"google-cloud-cli-{component.replace('cloud-', '')})."
            )


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (local)
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = self.log_path.open("wb")
        try:
            self.popen = subprocess.Popen(  # noqa: S603 (argv built by us)
                self.argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        finally:
            log_file.close()

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise StackError(
                    f"{self.name} exited during start-up (code {self.popen.returncode}); "
                    f"its last lines:\n{self.tail()}"
                )
            if self.ready():
                return
            time.sleep(0.2)
        raise StackError(
            f"{self.name} did not answer within {timeout_s:.0f} s; its last lines:\n{self.tail()}"
        )

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text[-lines:])

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        if self.popen is None:
            return
        pgid = self.popen.pid
        for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            if _wait_group_gone(pgid, self.popen, wait):
                break
        self.popen = None


def _wait_group_gone(pgid: int, popen: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        popen.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def latest_export(folder: Path) -> Path | None:
    """The newest export in `folder`: each export is a subfolder firestore_export_<epoch>."""
    found = sorted(folder.glob("*/*.overall_export_metadata"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def firestore_emulator(
    host: str, port: int, log_dir: Path, import_dir: Path | None = None
) -> ManagedProcess:
    argv = ["gcloud", "emulators", "firestore", "start", f"--host-port={host}:{port}"]
    if import_dir is not None:
        metadata = latest_export(import_dir)
        if metadata is not None:
            argv.append(f"--import-data={metadata}")
    return ManagedProcess(
        name="Firestore emulator",
        argv=argv,
        ready=lambda: http_ok(f"http://{host}:{port}/"),
        log_path=log_dir / "firestore.log",
    )


def pubsub_emulator(host: str, port: int, project_id: str, log_dir: Path) -> ManagedProcess:
    data_dir = log_dir / "pubsub-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        name="Pub/Sub emulator",
        argv=[
            "gcloud",
            "beta",
            "emulators",
            "pubsub",
            "start",
            f"--host-port={host}:{port}",
            f"--project={project_id}",
            f"--data-dir={data_dir}",
        ],
        ready=lambda: http_ok(f"http://{host}:{port}/"),
        log_path=log_dir / "pubsub.log",
    )


def require_auth_emulator() -> None:
    """Node and the repository's own firebase-tools (never a global one, never a download at
    run time): say what to run instead of a traceback."""
    if shutil.which("node") is None:
        raise StackError(
            "Node.js is not installed or not on PATH; the Firebase Auth emulator (firebase-tools) "
            "needs Node 20 or newer (on Debian: `apt-get install -y nodejs npm`)."
        )
    if not FIREBASE_CLI.exists():
        raise StackError(
            f"the Firebase Auth emulator is not installed ({FIREBASE_CLI} is missing); run "
            "`make install` (it runs `npm ci` in emulator/auth_emulator)."
        )


def auth_emulator(host: str, port: int, project_id: str, log_dir: Path) -> ManagedProcess:
    """The official Firebase Auth emulator on host:port, offline (a demo- project needs no
    login and no network). Its hub and logging side ports are free ports, written with the
    auth port into a firebase.json of its own, so two stacks (a `make run` and a test run) do
    not collide on firebase-tools' fixed defaults (4400, 4500)."""
    config_dir = log_dir / f"auth-emulator-{port}"
    config_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "emulators": {
            "auth": {"host": host, "port": port},
            "hub": {"host": host, "port": free_port(host)},
            "logging": {"host": host, "port": free_port(host)},
            "ui": {"enabled": False},
            # One emulator serves every project id (each test uses its own).
            "singleProjectMode": False,
        }
    }
    config_path = config_dir / "firebase.json"
    config_path.write_text(json.dumps(config, indent=2))
    demo_project = project_id if project_id.startswith("demo-") else f"demo-{project_id}"
    return ManagedProcess(
        name="Firebase Auth emulator",
        argv=[
            str(FIREBASE_CLI),
            "emulators:start",
            "--only",
            "auth",
            "--project",
            demo_project,
            "--config",
            str(config_path),
        ],
        ready=lambda: http_ok(f"http://{host}:{port}/"),
        log_path=log_dir / "auth.log",
        env={
            **os.environ,
            # No update check, no telemetry prompt: it must start the same way offline.
            "NO_UPDATE_NOTIFIER": "1",
            "FIREBASE_CLI_EXPERIMENTS": "",
            "CI": os.environ.get("CI", "true"),
        },
        cwd=config_dir,
    )
