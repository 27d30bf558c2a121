"""Settings from the environment: what changes between the emulators and Google Cloud."""

from __future__ import annotations

import pytest

from common.config import Settings, emulator_mode

LOCAL = {
    "GOOGLE_CLOUD_PROJECT": "p",
    "LOCAL_STACK": "1",
    "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080",
}


def test_reminder_tasks_go_to_the_gateway_locally() -> None:
    settings = Settings.from_env({**LOCAL, "PUBLIC_BASE_URL": "http://127.0.0.1:8123/"})
    assert settings.send_reminder_url == "http://127.0.0.1:8123/_functions/send_reminder"


def test_reminder_tasks_go_to_the_deployed_function_in_production() -> None:
    # Terraform (terraform/stack/main.tf) gives every enqueuing function send_reminder's URL.
    url = "https://send-reminder-123456789.europe-central2.run.app"
    settings = Settings.from_env(
        {"GOOGLE_CLOUD_PROJECT": "p", "PESEL_HASH_KEY": "k", "SEND_REMINDER_URL": url}
    )
    assert settings.send_reminder_url == url


# -- fail closed: what a deployed function refuses at start-up (docs/identity.md) -------------
DEPLOYED = {"GOOGLE_CLOUD_PROJECT": "prod", "PESEL_HASH_KEY": "k", "SMS_WEBHOOK_SECRET": "s"}


@pytest.mark.parametrize(
    "variable",
    [
        "FIREBASE_AUTH_EMULATOR_HOST",
        "FIRESTORE_EMULATOR_HOST",
        "PUBSUB_EMULATOR_HOST",
        "CLOUD_TASKS_EMULATOR_HOST",
        "STORAGE_EMULATOR_HOST",
    ],
)
def test_an_emulator_host_is_refused_outside_emulator_mode(variable: str) -> None:
    with pytest.raises(RuntimeError, match=variable):
        Settings.from_env({**DEPLOYED, variable: "127.0.0.1:9099"})
    # An emulator host is refused even when empty-looking values hide it among others.
    with pytest.raises(RuntimeError, match="emulator mode"):
        Settings.from_env({**DEPLOYED, variable: "x", "LOCAL_STACK": "0"})


def test_emulator_mode_takes_the_explicit_local_stack_variable() -> None:
    settings = Settings.from_env({**LOCAL, "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"})
    assert settings.is_local
    assert not Settings.from_env(DEPLOYED).is_local
    assert emulator_mode({"LOCAL_STACK": "1"}) and not emulator_mode({"LOCAL_STACK": "true"})


@pytest.mark.parametrize("variable", ["K_SERVICE", "K_REVISION", "CLOUD_RUN_JOB"])
def test_local_stack_is_refused_on_cloud_run(variable: str) -> None:
    with pytest.raises(RuntimeError, match="refused on Cloud Run"):
        Settings.from_env({**LOCAL, variable: "book-appointment"})


def test_an_empty_webhook_secret_is_refused_outside_emulator_mode() -> None:
    for empty in ("", "  "):
        with pytest.raises(RuntimeError, match="SMS_WEBHOOK_SECRET is empty"):
            Settings.from_env({**DEPLOYED, "SMS_WEBHOOK_SECRET": empty})
    assert Settings.from_env({**LOCAL, "SMS_WEBHOOK_SECRET": ""}).sms_webhook_secret is None


def test_a_missing_hash_key_is_refused_outside_emulator_mode() -> None:
    env = {k: v for k, v in DEPLOYED.items() if k != "PESEL_HASH_KEY"}
    with pytest.raises(RuntimeError, match="PESEL_HASH_KEY"):
        Settings.from_env(env)
