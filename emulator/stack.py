"""The whole local cloud with one command: `python -m emulator` (or `make run`).

Starts the official Firestore, Pub/Sub and Firebase Auth emulators, our Cloud Tasks emulator,
the P1/SDS/SMS and login-node simulators and the dev gateway with every function, provisions
topics, subscriptions and queues from common/declarations.yaml, registers the identity blocking
function in the Auth emulator, creates the demo staff, agent and admin accounts, loads demo
data, fires scheduled jobs, prints where everything is, and on Ctrl-C (or SIGTERM) stops all
of it, Java and Node included. Everything runs in emulator mode (LOCAL_STACK=1).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import ssl
import sys
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from common import clock
from emulator.certs import Pki, ensure_pki
from emulator.processes import (
    ManagedProcess,
    StackError,
    auth_emulator,
    firestore_emulator,
    http_ok,
    latest_export,
    pubsub_emulator,
    require_auth_emulator,
    require_free_port,
    require_tools,
    tcp_open,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PROJECT = "demo-erejestracja"
LOCATION = "europe-central2"
# Local-only credentials of the simulators (documented defaults, not secrets).
LOCAL_SDS_TOKEN = "local-sds-token"  # noqa: S105
LOCAL_SMS_TOKEN = "local-sms-token"  # noqa: S105
LOCAL_SMS_WEBHOOK_SECRET = "local-sms-webhook-secret"  # noqa: S105
LOGIN_NODE_CLIENT_ID = "e-rejestracja-local"


@dataclass(frozen=True)
class StackConfig:
    project_id: str
    host: str
    firestore_port: int
    pubsub_port: int
    tasks_port: int
    gateway_port: int
    state_dir: Path
    persist_dir: Path | None
    seed: bool
    seed_points: int
    # The P1, SDS and SMS simulators (emulator/p1, sds, sms), as the functions reach them.
    p1_port: int = 8301
    sds_port: int = 8302
    sms_port: int = 8303
    # The Firebase Auth emulator and the national login node simulator (docs/identity.md).
    auth_port: int = 9099
    login_node_port: int = 8304

    @property
    def login_node_url(self) -> str:
        return f"http://{self.host}:{self.login_node_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}"

    @property
    def pki_dir(self) -> Path:
        """The local CA and the P1 simulator's and our client's certificates."""
        return self.state_dir / "pki"

    def environment(self) -> dict[str, str]:
        """The variables every client needs to reach the local cloud instead of Google's."""
        return {
            "GOOGLE_CLOUD_PROJECT": self.project_id,
            # Emulator mode: the only way the processes accept the variables below.
            "LOCAL_STACK": "1",
            "FIRESTORE_EMULATOR_HOST": f"{self.host}:{self.firestore_port}",
            "PUBSUB_EMULATOR_HOST": f"{self.host}:{self.pubsub_port}",
            "CLOUD_TASKS_EMULATOR_HOST": f"{self.host}:{self.tasks_port}",
            "FIREBASE_AUTH_EMULATOR_HOST": f"{self.host}:{self.auth_port}",
            "LOGIN_NODE_ISSUER": self.login_node_url,
            "LOGIN_NODE_JWKS_URL": f"{self.login_node_url}/jwks",
            "LOGIN_NODE_CLIENT_ID": LOGIN_NODE_CLIENT_ID,
            "BLOCKING_FUNCTION_URL": f"{self.gateway_url}/_functions/authorize_sign_in",
            "PUBLIC_BASE_URL": self.gateway_url,
            "FUNCTIONS_BASE_URL": f"{self.gateway_url}/_functions",
            # P1 over mutual TLS, as in production: our client certificate, P1's CA
            # (emulator/certs.py makes both at start, in .local/pki, never committed).
            "P1_BASE_URL": f"https://{self.host}:{self.p1_port}",
            **Pki(self.pki_dir).client_env(),
            "SDS_BASE_URL": f"http://{self.host}:{self.sds_port}",
            "SDS_TOKEN": LOCAL_SDS_TOKEN,
            "SMS_BASE_URL": f"http://{self.host}:{self.sms_port}",
            "SMS_TOKEN": LOCAL_SMS_TOKEN,
            "SMS_WEBHOOK_SECRET": LOCAL_SMS_WEBHOOK_SECRET,
        }


def parse_args(argv: list[str] | None) -> StackConfig:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.split("\n")[0])
    parser.add_argument("--project", default=env.get("LOCAL_PROJECT", DEFAULT_PROJECT))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--firestore-port", type=int, default=int(env.get("FIRESTORE_PORT", 8080)))
    parser.add_argument("--pubsub-port", type=int, default=int(env.get("PUBSUB_PORT", 8085)))
    parser.add_argument("--tasks-port", type=int, default=int(env.get("TASKS_PORT", 8123)))
    parser.add_argument("--gateway-port", type=int, default=int(env.get("GATEWAY_PORT", 8000)))
    parser.add_argument(
        "--gateway-workers",
        type=int,
        default=None,
        help="the gateway's worker processes (also GATEWAY_WORKERS; default: the CPUs, 2 to "
        "8; emulator/serve.py)",
    )
    parser.add_argument("--p1-port", type=int, default=int(env.get("P1_PORT", 8301)))
    parser.add_argument("--sds-port", type=int, default=int(env.get("SDS_PORT", 8302)))
    parser.add_argument("--sms-port", type=int, default=int(env.get("SMS_PORT", 8303)))
    parser.add_argument("--auth-port", type=int, default=int(env.get("AUTH_PORT", 9099)))
    parser.add_argument(
        "--login-node-port", type=int, default=int(env.get("LOGIN_NODE_PORT", 8304))
    )
    parser.add_argument(
        "--persist",
        type=Path,
        default=None,
        help="keep Firestore data in this folder between runs (import at start, export at stop)",
    )
    parser.add_argument("--no-seed", action="store_true", help="do not load the demo data")
    parser.add_argument("--points", type=int, default=300, help="demo vaccination points")
    parser.add_argument(
        "--clock-at",
        default=None,
        help="run the whole stack as if it were this Warsaw time today (HH:MM) or this ISO "
        "datetime; the clock keeps running from there (common/clock.py)",
    )
    parser.add_argument(
        "--clock-file",
        type=Path,
        default=None,
        help='keep the clock offset in this JSON file ({"offset_s": N}) that every process '
        "re-reads: write it (python -m emulator.clock) to move the whole stack's time",
    )
    args = parser.parse_args(argv)
    if args.gateway_workers is not None:
        if args.gateway_workers < 1:
            parser.error("--gateway-workers must be at least 1")
        env["GATEWAY_WORKERS"] = str(args.gateway_workers)  # the gateway inherits it
    if args.clock_file:
        env[clock.FILE_VARIABLE] = str(args.clock_file.resolve())
    if args.clock_at:
        env.pop(clock.OFFSET_VARIABLE, None)
        env[clock.AT_VARIABLE] = args.clock_at
    try:
        # Decided once, here: every child process inherits the same CLOCK_OFFSET_S.
        clock.resolve_offset(env)
    except ValueError as err:
        parser.error(str(err))
    clock.process_clock.cache_clear()
    return StackConfig(
        project_id=args.project,
        host=args.host,
        firestore_port=args.firestore_port,
        pubsub_port=args.pubsub_port,
        tasks_port=args.tasks_port,
        gateway_port=args.gateway_port,
        state_dir=ROOT / ".local",
        persist_dir=args.persist.resolve() if args.persist else None,
        seed=not args.no_seed,
        seed_points=args.points,
        p1_port=args.p1_port,
        sds_port=args.sds_port,
        sms_port=args.sms_port,
        auth_port=args.auth_port,
        login_node_port=args.login_node_port,
    )


class LocalStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes: list[ManagedProcess] = []
        self.scheduler = None

    # -- start ---------------------------------------------------------------------------
    def preflight(self) -> None:
        require_tools()
        require_auth_emulator()
        c = self.config
        require_free_port(c.host, c.firestore_port, "Firestore emulator", "--firestore-port")
        require_free_port(c.host, c.pubsub_port, "Pub/Sub emulator", "--pubsub-port")
        require_free_port(c.host, c.tasks_port, "Cloud Tasks emulator", "--tasks-port")
        require_free_port(c.host, c.gateway_port, "gateway", "--gateway-port")
        require_free_port(c.host, c.p1_port, "P1 simulator", "--p1-port")
        require_free_port(c.host, c.sds_port, "SDS simulator", "--sds-port")
        require_free_port(c.host, c.sms_port, "SMS simulator", "--sms-port")
        require_free_port(c.host, c.auth_port, "Firebase Auth emulator", "--auth-port")
        require_free_port(c.host, c.login_node_port, "login node simulator", "--login-node-port")

    def start(self) -> None:
        c = self.config
        logs = c.state_dir / "logs"
        ensure_pki(c.pki_dir)
        child_env = {**os.environ, **c.environment(), "PYTHONPATH": str(ROOT)}
        firestore = firestore_emulator(c.host, c.firestore_port, logs, c.persist_dir)
        pubsub = pubsub_emulator(c.host, c.pubsub_port, c.project_id, logs)
        tasks = ManagedProcess(
            name="Cloud Tasks emulator",
            argv=[
                sys.executable,
                "-m",
                "emulator.cloudtasks",
                "--host",
                c.host,
                "--port",
                str(c.tasks_port),
            ],
            ready=lambda: tcp_open(c.host, c.tasks_port),
            log_path=logs / "cloudtasks.log",
            env=child_env,
            cwd=ROOT,
        )
        simulators = self._simulators(child_env, logs)
        # Measured: 6-20 s to ready on a quiet 2-core machine, up to 45 s under load.
        auth = auth_emulator(c.host, c.auth_port, c.project_id, logs)
        login_node = ManagedProcess(
            name="login node simulator",
            argv=[
                *(sys.executable, "-m", "emulator.login_node", "--host", c.host),
                *("--port", str(c.login_node_port), "--client-id", LOGIN_NODE_CLIENT_ID),
            ],
            ready=functools.partial(tcp_open, c.host, c.login_node_port),
            log_path=logs / "login_node.log",
            env=child_env,
            cwd=ROOT,
        )
        for process in (firestore, pubsub, tasks, auth, login_node, *simulators):
            self._launch(process)
        for process in (firestore, pubsub, tasks, auth, login_node, *simulators):
            process.wait_ready(120)
            print(f"  ready: {process.name}", flush=True)
        os.environ.update(c.environment())
        gateway = ManagedProcess(
            name="gateway and functions",
            argv=[
                sys.executable,
                "-m",
                "emulator.gateway",
                "--host",
                c.host,
                "--port",
                str(c.gateway_port),
            ],
            ready=lambda: http_ok(f"{c.gateway_url}/healthz"),
            log_path=logs / "gateway.log",
            env=child_env,
            cwd=ROOT,
        )
        self._launch(gateway)
        gateway.wait_ready(60)
        print(f"  ready: {gateway.name}", flush=True)
        self._provision()
        self._identity()
        if c.seed:
            self._seed()
        self._start_scheduler()

    def _simulators(self, env: dict[str, str], logs: Path) -> list[ManagedProcess]:
        """P1, SDS and SMS simulators. Their state is kept only with --persist, next to the
        Firestore data: a stored sync cursor must never outlive the history it points into."""
        c = self.config
        state = c.persist_dir / "simulators" if c.persist_dir else None
        processes = []
        for name, module, port, token, extra in (
            # Mutual TLS: the client certificate is the credential (no token).
            ("P1 simulator", "emulator.p1", c.p1_port, None, ["--pki", str(c.pki_dir)]),
            ("SDS simulator", "emulator.sds", c.sds_port, LOCAL_SDS_TOKEN, []),
            (
                "SMS simulator",
                "emulator.sms",
                c.sms_port,
                LOCAL_SMS_TOKEN,
                [
                    "--webhook",
                    # The public, signed route, as the provider reaches it in production.
                    f"{c.gateway_url}/v1/sms/inbound",
                    "--webhook-secret",
                    LOCAL_SMS_WEBHOOK_SECRET,
                ],
            ),
        ):
            argv = [sys.executable, "-m", module, "--host", c.host, "--port", str(port)]
            argv += [*(["--token", token] if token else []), *extra]
            if state is not None:
                state.mkdir(parents=True, exist_ok=True)
                argv += ["--state", str(state / f"{module.split('.')[-1]}.json")]
            processes.append(
                ManagedProcess(
                    name=name,
                    argv=argv,
                    ready=functools.partial(tcp_open, c.host, port),
                    log_path=logs / f"{module.split('.')[-1]}.log",
                    env=env,
                    cwd=ROOT,
                )
            )
        return processes

    def _launch(self, process: ManagedProcess) -> None:
        self.processes.append(process)
        process.start()

    def _provision(self) -> None:
        from common.adapters.cloud_tasks import make_tasks_client
        from common.declarations import load_declarations
        from emulator.provision import provision_pubsub, provision_queues

        c = self.config
        declarations = load_declarations()
        provision_pubsub(c.project_id, f"{c.gateway_url}/_functions", declarations)
        client = make_tasks_client(f"{c.host}:{c.tasks_port}")
        provision_queues(client, c.project_id, LOCATION, declarations)
        print(
            f"  provisioned: {len(declarations.topics)} topics, "
            f"{len(declarations.subscriptions)} subscriptions, {len(declarations.queues)} queues",
            flush=True,
        )

    def _identity(self) -> None:
        """The blocking function registered in the Auth emulator (as Terraform registers it in
        Identity Platform), and the demo staff, agent and admin accounts, made by the accounts
        service (the admin API's) with the local demo password."""
        from common import wiring
        from common.domain.accounts import AccountClaims
        from common.services.accounts import CreateAccount
        from common.services.booking import Actor
        from emulator.seed.users import DEMO_PASSWORD, DEMO_USERS
        from emulator.sign_in import register_blocking_function

        c = self.config
        environment = c.environment()
        register_blocking_function(
            environment["FIREBASE_AUTH_EMULATOR_HOST"],
            c.project_id,
            environment["BLOCKING_FUNCTION_URL"],
        )
        wiring.reset()
        service = wiring.accounts_service()
        seeder = Actor(uid="local-stack-seed", role="admin")
        made = 0
        for user in DEMO_USERS:
            if user.email is None:
                continue
            claims = AccountClaims(user.role, user.point_id)  # type: ignore[arg-type]
            command = CreateAccount(user.email, user.label, claims, password=DEMO_PASSWORD)
            service.create(command, seeder, clock.now(), None)
            made += 1
        print(f"  identity: blocking function registered, {made} demo accounts", flush=True)

    def _seed(self) -> None:
        from emulator.seed.demo import seed_demo

        summary = seed_demo(points=self.config.seed_points, progress=_progress)
        print(f"\n  demo data: {summary}", flush=True)
        print(f"  P1: {self._seed_p1()}", flush=True)

    def _seed_p1(self) -> str:
        """The demo patients' e-referrals issued in P1, then one sync so they are in
        Firestore before the first request (the scheduler keeps syncing every 5 minutes).
        seed_demo also writes them directly, so the demo works even if this fails."""
        from datetime import timedelta

        from emulator.seed.demo import DEMO_PATIENTS, demo_patients, demo_profiles

        c = self.config
        today = clock.today_warsaw()
        pesels = demo_patients(DEMO_PATIENTS)
        body = json.dumps(
            {
                "pesels": pesels,
                "valid_from": (today - timedelta(days=10)).isoformat(),
                "valid_days": 90,
            }
        ).encode()
        # The demo patients' phones live where real ones do: their IKP profiles in P1, fetched
        # (over mutual TLS) the first time a confirmation needs one.
        profiles = json.dumps({"profiles": demo_profiles(pesels)}).encode()
        p1 = f"https://{c.host}:{c.p1_port}/p1/v1"
        tls = Pki(c.pki_dir).client_context()
        try:
            issued = _post_json(f"{p1}/referrals:issue", body, None, tls)
            _post_json(f"{p1}/profiles:set", profiles, None, tls)
            synced = _post_json(f"{c.gateway_url}/_functions/sync_p1_referrals", b"{}", None)
        except OSError as err:
            return f"not seeded ({err}); sync_p1_referrals retries every 5 minutes"
        return (
            f"{issued.get('issued', 0)} referrals issued, {synced.get('written', 0)} synced "
            f"(cursor {synced.get('cursor')})"
        )

    def _start_scheduler(self) -> None:
        from common.declarations import load_declarations
        from emulator.scheduler import LocalScheduler

        self.scheduler = LocalScheduler(
            load_declarations(), f"{self.config.gateway_url}/_functions", clock.now
        )
        self.scheduler.start()

    # -- stop ----------------------------------------------------------------------------
    def export_firestore(self) -> None:
        c = self.config
        if c.persist_dir is None:
            return
        c.persist_dir.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {
                "database": f"projects/{c.project_id}/databases/(default)",
                "export_directory": str(c.persist_dir),
            }
        ).encode()
        url = f"http://{c.host}:{c.firestore_port}/emulator/v1/projects/{c.project_id}:export"
        request = urllib.request.Request(url, data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60):  # noqa: S310
                print(f"  Firestore data saved to {c.persist_dir}", flush=True)
        except OSError as err:
            print(f"  could not save Firestore data: {err}", file=sys.stderr)
            return
        # Each export is a new subfolder; only the newest is ever imported.
        newest = latest_export(c.persist_dir)
        for old in c.persist_dir.glob("firestore_export_*"):
            if newest is not None and old != newest.parent and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        if any(p.alive() for p in self.processes):
            self.export_firestore()
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def describe(self) -> str:
        c = self.config
        env = "\n".join(f"    export {k}={v}" for k, v in c.environment().items())
        moment = clock.now().astimezone(clock.WARSAW)
        shift = clock.process_clock().offset_s
        clock_line = (
            f"\n  Clock                  shifted by {shift:+.0f} s: it is {moment:%Y-%m-%d %H:%M} "
            "in Warsaw for every process (CLOCK_OFFSET_S)"
            if shift
            else ""
        )
        return f"""
e-Rejestracja local cloud is up (project {c.project_id}).

  API (all /v1 routes)   {c.gateway_url}/v1/...      contract: {c.gateway_url}/openapi.yaml
  Web apps               {c.gateway_url}/
  Firestore emulator     {c.host}:{c.firestore_port}
  Pub/Sub emulator       {c.host}:{c.pubsub_port}
  Cloud Tasks emulator   {c.host}:{c.tasks_port}
  P1 simulator           https://{c.host}:{c.p1_port}/p1/v1/...  (mutual TLS, .local/pki)
  SDS simulator          http://{c.host}:{c.sds_port}/sds/v1/...  (deliveries, demand)
  SMS simulator          http://{c.host}:{c.sms_port}/sms/v1/...  (signed webhook: /v1/sms/inbound)
  Auth emulator          {c.host}:{c.auth_port}   (official, firebase-tools: issues every ID token)
  login.gov.pl simulator {c.login_node_url}/authorize   (patients sign in there)
  Dead letters           python -m emulator.replay_dead_letters SUBSCRIPTION --list  (--to TOPIC)
  Sign in                {c.gateway_url}/  (patients via the login node, staff with e-mail
                         and password); a token for curl: python -m emulator.token patient
  Logs                   {c.state_dir / "logs"}{clock_line}

  To point your own tools at it:
{env}

  Try:  TOKEN=$(python -m emulator.token patient)
        curl -s "{c.gateway_url}/v1/slots?postcode=31-001&product=comirnaty" \\
             -H "Authorization: Bearer $TOKEN"

Press Ctrl-C to stop everything.
"""


def _post_json(url: str, body: bytes, token: str | None, tls: ssl.SSLContext | None = None) -> dict:
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 (local)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=120, context=tls) as response:  # noqa: S310
        return json.loads(response.read() or b"{}")


def _progress(done: int, total: int, what: str) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    print(
        f"\r  seeding {what:<12} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
        end="",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    stack = LocalStack(config)
    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        stack.preflight()
        print("Starting the local cloud...", flush=True)
        stack.start()
        print(stack.describe(), flush=True)
        while not stopping.is_set():
            for process in stack.processes:
                if not process.alive():
                    raise StackError(f"{process.name} stopped unexpectedly:\n{process.tail()}")
            stopping.wait(1.0)
        print("\nStopping...", flush=True)
        return 0
    except StackError as err:
        print(f"\nCannot run the local cloud: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
        print("Stopped.", flush=True)
