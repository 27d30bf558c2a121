"""Settings read from the environment, once per process.

Against real Google Cloud nothing changes but these variables: the emulator hosts are simply
absent there, and the clients fall back to the production endpoints.

**Fail closed.** Emulator mode is established by one explicit variable, LOCAL_STACK=1, that
only the local stack and the tests set (emulator/stack.py, tests/conftest.py); Terraform can
never set it (terraform/modules/function refuses it, tests/infra checks it) and it is refused
on Cloud Run (K_SERVICE is set there). Outside emulator mode start-up refuses any
*_EMULATOR_HOST variable (with FIREBASE_AUTH_EMULATOR_HOST firebase-admin would accept
unsigned ID tokens), a shifted clock, a missing PESEL_HASH_KEY and an empty
SMS_WEBHOOK_SECRET. docs/identity.md says why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from common import clock

# A fixed, public key is fine for local runs only; production sets PESEL_HASH_KEY from Secret
# Manager (see terraform/), and the stack refuses to start without it outside emulator mode.
_LOCAL_ONLY_HASH_KEY = "local-development-only-not-a-secret"
LOCAL_STACK_VARIABLE = "LOCAL_STACK"
# Set by Cloud Run (and so by Cloud Functions 2nd gen) on every instance: never the local stack.
_CLOUD_RUN_VARIABLES = ("K_SERVICE", "K_REVISION", "K_CONFIGURATION", "CLOUD_RUN_JOB")


def emulator_mode(env: dict[str, str] | os._Environ[str] | None = None) -> bool:
    """True only for the local stack and the tests (LOCAL_STACK=1, not on Cloud Run)."""
    env = os.environ if env is None else env
    if env.get(LOCAL_STACK_VARIABLE) != "1":
        return False
    on_cloud_run = [name for name in _CLOUD_RUN_VARIABLES if env.get(name)]
    if on_cloud_run:
        raise RuntimeError(
            f"{LOCAL_STACK_VARIABLE}=1 is refused on Cloud Run ({', '.join(on_cloud_run)} set)"
        )
    return True


def refuse_outside_emulators(env: dict[str, str] | os._Environ[str]) -> None:
    """What must never reach a deployed function: emulator hosts, a shifted clock, an empty
    webhook secret. Raises RuntimeError naming the variables (never their values)."""
    if emulator_mode(env):
        return
    emulators = sorted(name for name, value in env.items() if name.endswith("_EMULATOR_HOST"))
    if emulators:
        raise RuntimeError(
            f"{', '.join(emulators)}: allowed only in emulator mode ({LOCAL_STACK_VARIABLE}=1); "
            "outside it an emulator host would redirect a client, and the Auth emulator's "
            "would make firebase-admin accept unsigned ID tokens"
        )
    shifted = [name for name in clock.CLOCK_VARIABLES if env.get(name)]
    if shifted:
        # A shifted clock is a test instrument: real bookings run on the real time.
        raise RuntimeError(f"{', '.join(shifted)}: allowed only with the local emulators")
    if "SMS_WEBHOOK_SECRET" in env and not env["SMS_WEBHOOK_SECRET"].strip():
        raise RuntimeError("SMS_WEBHOOK_SECRET is empty: add its value (docs/operations.md)")


@dataclass(frozen=True)
class Settings:
    project_id: str
    region: str = "europe-central2"
    firestore_emulator_host: str | None = None
    pubsub_emulator_host: str | None = None
    cloud_tasks_emulator_host: str | None = None
    auth_emulator_host: str | None = None
    pesel_hash_key: bytes = field(default=_LOCAL_ONLY_HASH_KEY.encode(), repr=False)
    public_base_url: str = "http://127.0.0.1:8000"
    functions_base_url: str = "http://127.0.0.1:8000/_functions"
    # Where reminder tasks are sent: send_reminder's own URL in production (Terraform computes
    # its deterministic Cloud Run URL); locally the gateway's /_functions/send_reminder.
    send_reminder_url: str = "http://127.0.0.1:8000/_functions/send_reminder"
    # Notifications and the SMS booking dialog.
    tasks_location: str = "europe-central2"
    tasks_invoker_service_account: str | None = None
    sms_webhook_secret: str | None = field(default=None, repr=False)
    sms_offer_ttl_minutes: int = 10

    # The national login node (login.gov.pl, an OIDC provider of Identity Platform) as the
    # identity blocking function verifies its assertions (docs/identity.md).
    login_node_provider_id: str = "oidc.login-gov-pl"
    login_node_issuer: str | None = None
    login_node_client_id: str | None = None
    login_node_jwks_url: str | None = None
    # The URL Identity Platform calls the blocking function at: the `aud` of its JWT.
    blocking_function_url: str | None = None
    # LOCAL_STACK=1: the local stack or the tests (emulator_mode); never in a deployment.
    local_stack: bool = False

    @property
    def is_local(self) -> bool:
        return self.local_stack

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        project_id = env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCLOUD_PROJECT")
        if not project_id:
            raise RuntimeError("GOOGLE_CLOUD_PROJECT is not set")
        local = emulator_mode(env)
        refuse_outside_emulators(env)
        firestore_host = env.get("FIRESTORE_EMULATOR_HOST") or None
        key = env.get("PESEL_HASH_KEY")
        if not key:
            if not local:
                raise RuntimeError("PESEL_HASH_KEY must be set outside the local emulators")
            key = _LOCAL_ONLY_HASH_KEY
        public = env.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
        functions = env.get("FUNCTIONS_BASE_URL", f"{public}/_functions").rstrip("/")
        return cls(
            project_id=project_id,
            region=env.get("FUNCTION_REGION", "europe-central2"),
            firestore_emulator_host=firestore_host,
            pubsub_emulator_host=env.get("PUBSUB_EMULATOR_HOST") or None,
            cloud_tasks_emulator_host=env.get("CLOUD_TASKS_EMULATOR_HOST") or None,
            auth_emulator_host=env.get("FIREBASE_AUTH_EMULATOR_HOST") or None,
            pesel_hash_key=key.encode(),
            public_base_url=public,
            functions_base_url=functions,
            send_reminder_url=env.get("SEND_REMINDER_URL") or f"{functions}/send_reminder",
            tasks_location=env.get("CLOUD_TASKS_LOCATION") or "europe-central2",
            tasks_invoker_service_account=env.get("TASKS_INVOKER_SERVICE_ACCOUNT") or None,
            sms_webhook_secret=env.get("SMS_WEBHOOK_SECRET") or None,
            sms_offer_ttl_minutes=int(env.get("SMS_OFFER_TTL_MINUTES") or 10),
            login_node_provider_id=env.get("LOGIN_NODE_PROVIDER_ID") or "oidc.login-gov-pl",
            login_node_issuer=env.get("LOGIN_NODE_ISSUER") or None,
            login_node_client_id=env.get("LOGIN_NODE_CLIENT_ID") or None,
            login_node_jwks_url=env.get("LOGIN_NODE_JWKS_URL") or None,
            blocking_function_url=env.get("BLOCKING_FUNCTION_URL") or None,
            local_stack=local,
        )
