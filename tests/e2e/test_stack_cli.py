"""The README's run command, as a user meets it: up, usable, down with nothing left behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from emulator.processes import free_port, port_is_free
from emulator.sign_in import sign_in_patient
from emulator.stack import LOGIN_NODE_CLIENT_ID

ROOT = Path(__file__).resolve().parents[2]


def _stack_argv(ports: dict[str, int], *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "emulator",
        "--project", "demo-e2e",
        "--firestore-port", str(ports["firestore"]),
        "--pubsub-port", str(ports["pubsub"]),
        "--tasks-port", str(ports["tasks"]),
        "--gateway-port", str(ports["gateway"]),
        "--p1-port", str(ports["p1"]),
        "--sds-port", str(ports["sds"]),
        "--sms-port", str(ports["sms"]),
        "--auth-port", str(ports["auth"]),
        "--login-node-port", str(ports["login_node"]),
        *extra,
    ]  # fmt: skip


def _ports() -> dict[str, int]:
    names = ("firestore", "pubsub", "tasks", "gateway", "p1", "sds", "sms", "auth", "login_node")
    return {name: free_port() for name in names}


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    env.pop("GOOGLE_CLOUD_PROJECT", None)
    return env


def _processes_mentioning(text: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if text in line and "ps -eo" not in line]


def test_taken_port_fails_with_a_message_not_a_traceback():
    ports = _ports()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports["gateway"]))
        blocker.listen()
        result = subprocess.run(
            _stack_argv(ports),
            cwd=ROOT,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"port {ports['gateway']}" in result.stderr
    assert "--gateway-port" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_java_fails_with_what_to_install(tmp_path: Path):
    # A PATH with gcloud and python but no java.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud",):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = _clean_env() | {"PATH": str(bin_dir)}
    result = subprocess.run(
        _stack_argv(_ports()), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "Java is not installed" in result.stderr
    assert "openjdk" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_gcloud_fails_with_what_to_install(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = shutil.which("java")
    if java:
        (bin_dir / "java").symlink_to(java)
    env = _clean_env() | {"PATH": str(bin_dir)}
    result = subprocess.run(
        _stack_argv(_ports()), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "gcloud CLI is not installed" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_run_command_brings_everything_up_ctrl_c_leaves_nothing_and_persist_keeps_data(
    tmp_path: Path, monkeypatch
):
    """One stack start serves both checks of the run command (each start costs ~40 s of
    CI): up and usable, down with nothing left; and with --persist, the data of this run is
    there in the next."""
    from google.cloud import firestore

    data_dir = tmp_path / "firestore-data"
    ports = _ports()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{ports['firestore']}")
    process = subprocess.Popen(
        _stack_argv(ports, "--points", "40", "--persist", str(data_dir)),
        cwd=ROOT,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 180
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(output)
        assert "Press Ctrl-C to stop everything" in text, text
        base = f"http://127.0.0.1:{ports['gateway']}"
        assert base in text and f"127.0.0.1:{ports['firestore']}" in text
        assert f"127.0.0.1:{ports['p1']}" in text and f"127.0.0.1:{ports['sms']}" in text
        # The demo referrals came in through P1 and the first sync_p1_referrals run.
        assert re.search(r"P1: \d+ referrals issued, [1-9]\d* synced", text), text
        # Antoni signs in as patients do: the login node, the Auth emulator, the blocking function.
        signed_in = sign_in_patient(
            f"127.0.0.1:{ports['auth']}",
            f"http://127.0.0.1:{ports['login_node']}",
            LOGIN_NODE_CLIENT_ID,
            "patient-anna",
        )
        request = urllib.request.Request(
            f"{base}/v1/slots?postcode=31-001&product=comirnaty&radius_km=300",
            headers={"Authorization": f"Bearer {signed_in['idToken']}"},
        )
        result = json.loads(urllib.request.urlopen(request, timeout=30).read())
        assert result["items"], "the demo data should offer slots near Kraków"
        firestore.Client(project="demo-e2e").collection("notes").document("n1").set({"v": 42})
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    rest = process.stdout.read() if process.stdout else ""
    assert process.returncode == 0, rest
    assert "Stopped." in rest and "Firestore data saved" in rest
    for port in ports.values():
        assert port_is_free("127.0.0.1", port), f"port {port} still in use after Ctrl-C"
        assert _processes_mentioning(str(port)) == [], f"processes left on {port}"

    # Again, with the same data directory and no seeding: this run's data is there.
    second = _start_and_wait(_stack_argv(ports, "--no-seed", "--persist", str(data_dir)))
    try:
        client = firestore.Client(project="demo-e2e")
        snapshot = client.collection("notes").document("n1").get()
        assert snapshot.exists and snapshot.to_dict() == {"v": 42}
        assert client.collection("points").limit(1).get(), "the seeded points are kept too"
    finally:
        _stop(second)


def _start_and_wait(argv: list[str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Press Ctrl-C" in line:
            return process
    process.kill()
    raise AssertionError("the stack did not come up:\n" + "".join(lines))


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    return process.stdout.read() if process.stdout else ""
