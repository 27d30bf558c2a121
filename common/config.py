"""Settings read from the environment, once per process.

Against real Google Cloud nothing changes but these variables: the emulator hosts are simply
absent there, and the clients fall back to the production endpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from common import clock

# A fixed, public key is fine for local runs only; production sets PESEL_HASH_KEY from Secret
# Manager (see terraform/), and the stack refuses to start without it outside emulator mode.
_LOCAL_ONLY_HASH_KEY = "local-development-only-not-a-secret"


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

    @property
    def is_local(self) -> bool:
        return self.firestore_emulator_host is not None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        project_id = env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCLOUD_PROJECT")
        if not project_id:
            raise RuntimeError("GOOGLE_CLOUD_PROJECT is not set")
        firestore_host = env.get("FIRESTORE_EMULATOR_HOST") or None
        shifted = [name for name in clock.CLOCK_VARIABLES if env.get(name)]
        if firestore_host is None and shifted:
            # A shifted clock is a test instrument: real bookings run on the real time.
            raise RuntimeError(f"{', '.join(shifted)}: allowed only with the local emulators")
        key = env.get("PESEL_HASH_KEY")
        if not key:
            if firestore_host is None:
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
        )
