"""The first requests of a fresh instance all need the firebase-admin app at once.

CI (stop 17) saw one patient of a 5,000-connection crowd refused with 401: two of a gateway
worker's threads both created the app, and the loser's "app already exists" ValueError was read
as an invalid token. `initialize_app` is slowed here so that the threads surely overlap.
"""

from __future__ import annotations

import threading
import time
import uuid

import firebase_admin
import pytest

from common.adapters import firebase_app as firebase_app_module
from common.adapters.firebase_app import firebase_app

THREADS = 8  # one gateway worker's threads (emulator/serve.py)


@pytest.fixture
def slow_initialize(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    real = firebase_admin.initialize_app
    created: list[str] = []

    def slow(*args, **kwargs):
        time.sleep(0.05)  # wide enough for every thread to miss any cache first
        app = real(*args, **kwargs)
        created.append(app.name)
        return app

    monkeypatch.setattr(firebase_admin, "initialize_app", slow)
    return created


def _race(call) -> tuple[list[object], list[BaseException]]:
    start = threading.Barrier(THREADS)
    results: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            results.append(call())
        except BaseException as err:  # every failure is the finding
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def test_threads_racing_for_a_new_app_all_get_the_same_one(slow_initialize: list[str]):
    name = f"race-{uuid.uuid4().hex[:8]}"
    apps, errors = _race(lambda: firebase_app(name, "race-project"))
    assert errors == []
    assert len(apps) == THREADS and len({id(app) for app in apps}) == 1
    assert slow_initialize == [name]  # created once
    firebase_admin.delete_app(apps[0])
    firebase_app_module._apps.pop(name)


def test_an_app_someone_else_created_is_reused_not_recreated(slow_initialize: list[str]):
    name = f"made-elsewhere-{uuid.uuid4().hex[:8]}"
    made = firebase_admin.initialize_app(options={"projectId": "p"}, name=name)
    assert firebase_app(name, "p") is made
    firebase_admin.delete_app(made)
    firebase_app_module._apps.pop(name)


def test_verifying_tokens_on_a_fresh_instance_blames_no_token(
    slow_initialize: list[str], monkeypatch: pytest.MonkeyPatch
):
    """The crowd's case end to end in-process: 8 first requests with the same valid token on
    a new project (emulator mode, as the gateway runs), every one accepted."""
    from common.auth import verify_principal

    monkeypatch.setenv("LOCAL_STACK", "1")
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9")  # never contacted
    token = _unsigned_token(project := f"fresh-{uuid.uuid4().hex[:8]}")
    principals, errors = _race(lambda: verify_principal(f"Bearer {token}", project))
    assert errors == []
    assert [p.role for p in principals] == ["patient"] * THREADS
    firebase_admin.delete_app(firebase_admin.get_app(project))
    firebase_app_module._apps.pop(project)


def _unsigned_token(project: str) -> str:
    """What the Auth emulator issues: alg none, firebase claims for `project`."""
    import base64
    import json

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "auth_time": now,
        "iat": now,
        "exp": now + 3600,
        "sub": "crowd-patient",
        "user_id": "crowd-patient",
        "role": "patient",
        "pesel": "44051401359",
        "firebase": {"identities": {}, "sign_in_provider": "custom"},
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
