"""Settings from the environment: what changes between the emulators and Google Cloud."""

from __future__ import annotations

from common.config import Settings

LOCAL = {"GOOGLE_CLOUD_PROJECT": "p", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080"}


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
