"""The Cloud Tasks emulator, exercised through the real google-cloud-tasks client."""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2

from common import clock
from common.adapters.cloud_tasks import make_tasks_client
from emulator.cloudtasks import CloudTasksEmulator
from emulator.cloudtasks.dispatcher import mint_oidc_token, next_backoff, retries_exhausted
from tests.integration.cloudtasks_target import TargetServer

LOCATION = "projects/test-project/locations/europe-central2"
FULL = tasks_v2.Task.View.FULL
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def emulator() -> Iterator[CloudTasksEmulator]:
    with CloudTasksEmulator(port=0) as running:
        yield running


@pytest.fixture(scope="module")
def client(emulator: CloudTasksEmulator) -> tasks_v2.CloudTasksClient:
    return make_tasks_client(emulator.address)


@pytest.fixture(scope="module")
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def make_queue(
    client: tasks_v2.CloudTasksClient,
    *,
    min_backoff: float = 0.1,
    max_backoff: float = 1.0,
    max_attempts: int = 5,
    max_doublings: int = 16,
    rate: float = 500.0,
    max_concurrent: int = 1000,
) -> str:
    """A fresh queue with small backoffs so retry tests finish quickly."""
    queue = tasks_v2.Queue(
        name=f"{LOCATION}/queues/{_unique('q')}",
        rate_limits=tasks_v2.RateLimits(
            max_dispatches_per_second=rate, max_concurrent_dispatches=max_concurrent
        ),
        retry_config=tasks_v2.RetryConfig(
            max_attempts=max_attempts,
            min_backoff=_seconds(min_backoff),
            max_backoff=_seconds(max_backoff),
            max_doublings=max_doublings,
        ),
    )
    return client.create_queue(parent=LOCATION, queue=queue).name


def http_task(url: str, **fields: Any) -> dict[str, Any]:
    request = {"url": url, "http_method": tasks_v2.HttpMethod.POST}
    request.update(fields.pop("http_request", {}))
    return {"http_request": request, **fields}


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(step)


def task_gone(client: tasks_v2.CloudTasksClient, name: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            client.get_task(name=name)
        except exceptions.NotFound:
            return True
        return False

    return check


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")

    def part(segment: str) -> dict[str, Any]:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))

    return part(header), part(payload), signature


# ----- next_backoff and friends (pure functions) -------------------------------------------


def test_next_backoff_follows_documented_example() -> None:
    config = tasks_v2.RetryConfig(
        min_backoff=_seconds(10), max_backoff=_seconds(300), max_doublings=3
    )
    delays = [next_backoff(config, attempt) for attempt in range(1, 10)]
    assert delays == [10, 20, 40, 80, 160, 240, 300, 300, 300]


def test_next_backoff_single_doubling_then_linear() -> None:
    config = tasks_v2.RetryConfig(
        min_backoff=_seconds(1), max_backoff=_seconds(10), max_doublings=1
    )
    assert [next_backoff(config, n) for n in range(1, 8)] == [1, 2, 4, 6, 8, 10, 10]


def test_next_backoff_sub_second_and_defaults() -> None:
    fast = tasks_v2.RetryConfig(
        min_backoff=_seconds(0.1), max_backoff=_seconds(1), max_doublings=16
    )
    assert [round(next_backoff(fast, n), 3) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    # Unset fields use production defaults: 0.1 s doubling 16 times, capped at one hour.
    assert next_backoff(tasks_v2.RetryConfig(), 1) == pytest.approx(0.1)
    assert next_backoff(tasks_v2.RetryConfig(), 40) == 3600
    assert next_backoff(fast, 0) == pytest.approx(0.1)  # defensive: treated as first retry


def test_retries_exhausted_needs_both_limits() -> None:
    limited = tasks_v2.RetryConfig(max_attempts=3)
    assert not retries_exhausted(limited, 2, first_attempt_at=0, now=1)
    assert retries_exhausted(limited, 3, first_attempt_at=0, now=1)
    both = tasks_v2.RetryConfig(max_attempts=3, max_retry_duration=_seconds(60))
    assert not retries_exhausted(both, 5, first_attempt_at=0, now=30)
    assert retries_exhausted(both, 5, first_attempt_at=0, now=61)
    by_time = tasks_v2.RetryConfig(max_attempts=-1, max_retry_duration=_seconds(60))
    assert retries_exhausted(by_time, 1, first_attempt_at=0, now=61)
    unlimited = tasks_v2.RetryConfig(max_attempts=-1)
    assert not retries_exhausted(unlimited, 10_000, first_attempt_at=0, now=10**9)


def test_mint_oidc_token_is_unsigned_google_shaped_jwt() -> None:
    header, payload, signature = decode_jwt(mint_oidc_token("sa@p.iam", "https://aud", now=1000))
    assert header == {"alg": "none", "typ": "JWT"}
    assert signature == ""
    assert payload["iss"] == "https://accounts.google.com"
    assert (payload["aud"], payload["email"]) == ("https://aud", "sa@p.iam")
    assert (payload["iat"], payload["exp"]) == (1000, 4600)
    assert payload["sub"]


# ----- queues --------------------------------------------------------------------------------


def test_queue_create_get_list_update_delete(client: tasks_v2.CloudTasksClient) -> None:
    location = f"projects/test-project/locations/{_unique('crud')}"
    names = [f"{location}/queues/q{i}" for i in range(3)]
    for name in names:
        created = client.create_queue(parent=location, queue={"name": name})
        assert created.state == tasks_v2.Queue.State.RUNNING
    fetched = client.get_queue(name=names[0])
    assert fetched.rate_limits.max_dispatches_per_second == 500
    assert fetched.retry_config.max_attempts == 100

    pager = client.list_queues(request={"parent": location, "page_size": 2})
    assert [len(page.queues) for page in pager.pages] == [2, 1]
    assert [q.name for q in client.list_queues(parent=location)] == names

    masked = client.update_queue(
        queue={"name": names[0], "rate_limits": {"max_dispatches_per_second": 7}},
        update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"]),
    )
    assert masked.rate_limits.max_dispatches_per_second == 7
    assert masked.rate_limits.max_concurrent_dispatches == 1000  # untouched by the mask

    whole = client.update_queue(
        queue={"name": names[0], "retry_config": {"max_attempts": 4}},
    )
    assert whole.retry_config.max_attempts == 4
    assert whole.rate_limits.max_dispatches_per_second == 500  # replaced, back to default

    with pytest.raises(exceptions.InvalidArgument):
        client.update_queue(
            queue={"name": names[0]}, update_mask=field_mask_pb2.FieldMask(paths=["state"])
        )

    client.delete_queue(name=names[1])
    with pytest.raises(exceptions.NotFound):
        client.get_queue(name=names[1])
    assert [q.name for q in client.list_queues(parent=location)] == [names[0], names[2]]


def test_create_existing_queue_is_already_exists(client: tasks_v2.CloudTasksClient) -> None:
    name = make_queue(client)
    with pytest.raises(exceptions.AlreadyExists):
        client.create_queue(parent=LOCATION, queue={"name": name})


def test_paused_queue_does_not_dispatch_until_resumed(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client)
    paused = client.pause_queue(name=queue)
    assert paused.state == tasks_v2.Queue.State.PAUSED
    paused_names = [
        q.name for q in client.list_queues(request={"parent": LOCATION, "filter": "state: PAUSED"})
    ]
    assert queue in paused_names

    client.create_task(parent=queue, task=http_task(target.url("/paused")))
    time.sleep(0.5)  # a negative check needs some wait; dispatch is otherwise ~immediate
    assert target.received("/paused") == []

    resumed = client.resume_queue(name=queue)
    assert resumed.state == tasks_v2.Queue.State.RUNNING
    target.wait_for("/paused", 1)


def test_purge_queue_deletes_all_tasks(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client)
    client.pause_queue(name=queue)
    for _ in range(3):
        client.create_task(parent=queue, task=http_task(target.url("/purged")))
    assert len(list(client.list_tasks(parent=queue))) == 3

    purged = client.purge_queue(name=queue)
    assert purged.purge_time is not None
    assert list(client.list_tasks(parent=queue)) == []
    client.resume_queue(name=queue)
    time.sleep(0.3)
    assert target.received("/purged") == []


# ----- tasks ---------------------------------------------------------------------------------


def test_task_create_get_list_paging_delete(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client)
    client.pause_queue(name=queue)  # keep the tasks around
    named = client.create_task(
        parent=queue,
        task=http_task(
            target.url("/crud"), name=f"{queue}/tasks/my-task", http_request={"body": b"x"}
        ),
    )
    assert named.name == f"{queue}/tasks/my-task"
    assert (named.dispatch_count, named.response_count) == (0, 0)
    assert named.create_time is not None and named.schedule_time is not None
    generated = [
        client.create_task(parent=queue, task=http_task(target.url("/crud"))) for _ in range(4)
    ]
    for task in generated:
        task_id = task.name.rsplit("/", 1)[-1]
        assert task.name.startswith(f"{queue}/tasks/") and task_id.isdigit()

    basic = client.get_task(name=named.name)
    assert basic.view == tasks_v2.Task.View.BASIC and basic.http_request.body == b""
    full = client.get_task(request={"name": named.name, "response_view": FULL})
    assert full.view == FULL and full.http_request.body == b"x"

    pager = client.list_tasks(request={"parent": queue, "page_size": 2})
    assert [len(page.tasks) for page in pager.pages] == [2, 2, 1]
    listed = {task.name for task in client.list_tasks(parent=queue)}
    assert listed == {named.name, *(task.name for task in generated)}

    client.delete_task(name=named.name)
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=named.name)
    with pytest.raises(exceptions.NotFound):
        client.delete_task(name=named.name)
    assert len(list(client.list_tasks(parent=queue))) == 4


def test_run_task_dispatches_now_even_if_paused_and_future(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client)
    client.pause_queue(name=queue)
    later = clock.now() + timedelta(hours=1)
    task = client.create_task(parent=queue, task=http_task(target.url("/run"), schedule_time=later))
    ran = client.run_task(name=task.name)
    assert ran.name == task.name
    target.wait_for("/run", 1)
    wait_until(task_gone(client, task.name))


def test_http_method_headers_and_body_are_delivered(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client)
    body = json.dumps({"pesel": "not-logged"}).encode()
    task = client.create_task(
        parent=queue,
        task=http_task(
            target.url("/deliver?x=1"),
            name=f"{queue}/tasks/deliver-1",
            http_request={
                "http_method": tasks_v2.HttpMethod.PUT,
                "headers": {"Content-Type": "application/json", "X-Custom": "yes"},
                "body": body,
            },
        ),
    )
    (received,) = target.wait_for("/deliver?x=1", 1)
    assert received.method == "PUT"
    assert received.body == body
    headers = received.headers
    assert headers["content-type"] == "application/json"
    assert headers["x-custom"] == "yes"
    assert headers["x-cloudtasks-queuename"] == queue.rsplit("/", 1)[-1]
    assert headers["x-cloudtasks-taskname"] == "deliver-1"
    assert headers["x-cloudtasks-taskretrycount"] == "0"
    assert headers["x-cloudtasks-taskexecutioncount"] == "0"
    assert float(headers["x-cloudtasks-tasketa"]) == pytest.approx(
        task.schedule_time.timestamp(), abs=1e-3
    )
    assert "x-cloudtasks-taskpreviousresponse" not in headers
    assert "authorization" not in headers
    wait_until(task_gone(client, task.name))  # success removes the task


def test_get_and_delete_methods_are_delivered(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client)
    for method in (tasks_v2.HttpMethod.GET, tasks_v2.HttpMethod.DELETE):
        client.create_task(
            parent=queue,
            task=http_task(
                target.url(f"/method-{method.name}"), http_request={"http_method": method}
            ),
        )
    assert target.wait_for("/method-GET", 1)[0].method == "GET"
    assert target.wait_for("/method-DELETE", 1)[0].method == "DELETE"


def test_future_schedule_time_is_respected(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client)
    eta = clock.now() + timedelta(seconds=0.8)
    client.create_task(parent=queue, task=http_task(target.url("/later"), schedule_time=eta))
    (received,) = target.wait_for("/later", 1, timeout=5)
    assert received.started_at >= eta.timestamp() - 0.01
    assert received.started_at - eta.timestamp() < 1.0


def test_retries_with_backoff_until_success(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client, min_backoff=0.2, max_backoff=5.0, max_attempts=5)
    target.program("/flaky", fail_times=2, fail_status=500)
    task = client.create_task(parent=queue, task=http_task(target.url("/flaky")))
    attempts = sorted(target.wait_for("/flaky", 3), key=lambda r: r.started_at)

    assert [r.headers["x-cloudtasks-taskretrycount"] for r in attempts] == ["0", "1", "2"]
    assert [r.headers["x-cloudtasks-taskexecutioncount"] for r in attempts] == ["0", "1", "2"]
    assert "x-cloudtasks-taskpreviousresponse" not in attempts[0].headers
    assert attempts[1].headers["x-cloudtasks-taskpreviousresponse"] == "500"
    assert "500" in attempts[2].headers["x-cloudtasks-taskretryreason"]
    first_gap = attempts[1].started_at - attempts[0].finished_at
    second_gap = attempts[2].started_at - attempts[1].finished_at
    assert 0.18 <= first_gap < 0.2 + 0.5  # min_backoff
    assert 0.38 <= second_gap < 0.4 + 0.5  # doubled
    assert second_gap > first_gap
    wait_until(task_gone(client, task.name))
    time.sleep(0.3)
    assert len(target.received("/flaky")) == 3  # no dispatch after success


def test_failed_attempt_updates_task_counters(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client, min_backoff=30, max_backoff=60)  # stays put after one failure
    target.program("/counted", fail_times=1, fail_status=503)
    task = client.create_task(parent=queue, task=http_task(target.url("/counted")))
    target.wait_for("/counted", 1)

    def attempted() -> bool:
        return client.get_task(name=task.name).last_attempt.response_status.code != 0

    wait_until(attempted)
    current = client.get_task(name=task.name)
    assert (current.dispatch_count, current.response_count) == (1, 1)
    assert current.first_attempt.dispatch_time is not None
    assert current.last_attempt.response_status.code == 14  # UNAVAILABLE for HTTP 503
    assert current.last_attempt.response_time is not None
    assert (
        current.schedule_time.timestamp() > clock.epoch_seconds() + 20
    )  # rescheduled by min_backoff
    client.delete_task(name=task.name)


def test_task_dropped_after_max_attempts(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client, min_backoff=0.05, max_backoff=0.1, max_attempts=2)
    target.program("/always-fails", fail_times=100, fail_status=502)
    task = client.create_task(parent=queue, task=http_task(target.url("/always-fails")))
    target.wait_for("/always-fails", 2)
    wait_until(task_gone(client, task.name))
    time.sleep(0.3)
    assert len(target.received("/always-fails")) == 2


def test_dispatch_deadline_exceeded_counts_as_failure(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client, min_backoff=0.1, max_backoff=0.2)
    target.program("/slow", stall_times=1, stall_s=1.2)
    task = client.create_task(
        parent=queue,
        task=http_task(target.url("/slow"), dispatch_deadline=_seconds(0.3)),
    )
    requests = sorted(target.wait_for("/slow", 2, timeout=10), key=lambda r: r.started_at)
    retry = requests[1]
    assert retry.headers["x-cloudtasks-taskretrycount"] == "1"
    assert retry.headers["x-cloudtasks-taskexecutioncount"] == "0"  # no response the first time
    assert "deadline" in retry.headers["x-cloudtasks-taskretryreason"]
    # The retry came after deadline + backoff, not after the target's stall finished.
    assert retry.started_at - requests[0].started_at < 1.0
    wait_until(task_gone(client, task.name))


def test_rate_limit_spaces_dispatches(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client, rate=5)
    client.pause_queue(name=queue)  # enqueue everything first, then let the limiter work
    for _ in range(10):
        client.create_task(parent=queue, task=http_task(target.url("/rated")))
    client.resume_queue(name=queue)
    starts = sorted(r.started_at for r in target.wait_for("/rated", 10, timeout=10))
    assert starts[-1] - starts[0] >= 1.6
    # Arrival times jitter on a loaded machine, so check spans of 4 gaps (nominal 0.8 s).
    spans = [starts[i + 4] - starts[i] for i in range(len(starts) - 4)]
    assert min(spans) >= 0.5


def test_max_concurrent_dispatches_is_honoured(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client, max_concurrent=1)
    target.program("/serial", delay_s=0.2)
    client.pause_queue(name=queue)
    for _ in range(3):
        client.create_task(parent=queue, task=http_task(target.url("/serial")))
    client.resume_queue(name=queue)
    requests = sorted(target.wait_for("/serial", 3), key=lambda r: r.started_at)
    for earlier, later in itertools.pairwise(requests):
        assert later.started_at >= earlier.finished_at


def test_task_names_are_reserved_after_use(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client)
    client.pause_queue(name=queue)
    deleted = f"{queue}/tasks/dedupe-deleted"
    client.create_task(parent=queue, task=http_task(target.url("/dedupe"), name=deleted))
    with pytest.raises(exceptions.AlreadyExists):
        client.create_task(parent=queue, task=http_task(target.url("/dedupe"), name=deleted))
    client.delete_task(name=deleted)
    with pytest.raises(exceptions.AlreadyExists):
        client.create_task(parent=queue, task=http_task(target.url("/dedupe"), name=deleted))

    client.resume_queue(name=queue)
    completed = f"{queue}/tasks/dedupe-completed"
    client.create_task(parent=queue, task=http_task(target.url("/dedupe"), name=completed))
    target.wait_for("/dedupe", 1)
    wait_until(task_gone(client, completed))
    with pytest.raises(exceptions.AlreadyExists):
        client.create_task(parent=queue, task=http_task(target.url("/dedupe"), name=completed))


def test_name_reuse_window_is_configurable(target: TargetServer) -> None:
    with CloudTasksEmulator(name_reuse_window_s=0.3) as short:
        client = make_tasks_client(short.address)
        queue = make_queue(client)
        client.pause_queue(name=queue)
        name = f"{queue}/tasks/reusable"
        client.create_task(parent=queue, task=http_task(target.url("/reuse"), name=name))
        client.delete_task(name=name)
        with pytest.raises(exceptions.AlreadyExists):
            client.create_task(parent=queue, task=http_task(target.url("/reuse"), name=name))
        time.sleep(0.35)
        assert client.create_task(parent=queue, task=http_task(target.url("/reuse"), name=name))


def test_oidc_and_oauth_tokens_are_passed(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    queue = make_queue(client)
    email = "tasks-invoker@test-project.iam.gserviceaccount.com"
    client.create_task(
        parent=queue,
        task=http_task(
            target.url("/oidc"),
            http_request={
                "oidc_token": {"service_account_email": email, "audience": "https://api.example"}
            },
        ),
    )
    client.create_task(
        parent=queue,
        task=http_task(
            target.url("/oidc-default-aud"),
            http_request={"oidc_token": {"service_account_email": email}},
        ),
    )
    client.create_task(
        parent=queue,
        task=http_task(
            target.url("/oauth"), http_request={"oauth_token": {"service_account_email": email}}
        ),
    )
    (explicit,) = target.wait_for("/oidc", 1)
    scheme, token = explicit.headers["authorization"].split(" ", 1)
    header, payload, _ = decode_jwt(token)
    assert scheme == "Bearer" and header["alg"] == "none"
    assert payload["aud"] == "https://api.example"
    assert payload["email"] == email
    assert payload["iss"] == "https://accounts.google.com"
    assert payload["exp"] > time.time() > payload["iat"] - 5

    (defaulted,) = target.wait_for("/oidc-default-aud", 1)
    _, default_payload, _ = decode_jwt(defaulted.headers["authorization"].split(" ", 1)[1])
    assert default_payload["aud"] == target.url("/oidc-default-aud")

    (oauth,) = target.wait_for("/oauth", 1)
    assert oauth.headers["authorization"].startswith("Bearer ")


def test_not_found_and_invalid_argument(
    client: tasks_v2.CloudTasksClient, target: TargetServer
) -> None:
    missing_queue = f"{LOCATION}/queues/{_unique('missing')}"
    queue = make_queue(client)
    url = target.url("/never")
    with pytest.raises(exceptions.NotFound):
        client.get_queue(name=missing_queue)
    with pytest.raises(exceptions.NotFound):
        client.create_task(parent=missing_queue, task=http_task(url))
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=f"{queue}/tasks/nope")
    with pytest.raises(exceptions.NotFound):
        client.run_task(name=f"{queue}/tasks/nope")
    with pytest.raises(exceptions.NotFound):
        client.pause_queue(name=missing_queue)
    with pytest.raises(exceptions.InvalidArgument):
        client.get_queue(name="queues/bad")
    with pytest.raises(exceptions.InvalidArgument):
        client.create_queue(parent=LOCATION, queue={"name": "projects/x/locations/y/queues/q"})
    with pytest.raises(exceptions.InvalidArgument):
        client.create_queue(
            parent=LOCATION,
            queue={
                "name": f"{LOCATION}/queues/{_unique('fast')}",
                "rate_limits": {"max_dispatches_per_second": 501},
            },
        )
    with pytest.raises(exceptions.InvalidArgument):
        client.create_task(parent=queue, task={})  # no target
    with pytest.raises(exceptions.InvalidArgument):
        client.create_task(
            parent=queue, task=http_task(url, name="projects/p/locations/l/queues/o/tasks/t")
        )
    with pytest.raises(exceptions.InvalidArgument):
        client.create_task(parent=queue, task=http_task(url, name=f"{queue}/tasks/bad id!"))
    with pytest.raises(exceptions.InvalidArgument):
        client.create_task(parent=queue, task=http_task("ftp://example/x"))
    with pytest.raises(exceptions.InvalidArgument):
        client.create_task(
            parent=queue,
            task=http_task(
                url, http_request={"http_method": tasks_v2.HttpMethod.GET, "body": b"x"}
            ),
        )
    with pytest.raises(exceptions.MethodNotImplemented):
        client.create_task(parent=queue, task={"app_engine_http_request": {"relative_uri": "/x"}})
    with pytest.raises(exceptions.InvalidArgument):
        client.list_tasks(request={"parent": queue, "page_token": "garbage"})


# ----- CLI -----------------------------------------------------------------------------------


def _start_cli(port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "emulator.cloudtasks", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_serves_reports_port_in_use_and_exits_cleanly() -> None:
    first = _start_cli(0)
    try:
        assert first.stdout is not None
        ready = first.stdout.readline().strip()
        assert ready.startswith("Cloud Tasks emulator listening on 127.0.0.1:")
        address = ready.rsplit(" ", 1)[-1]
        client = make_tasks_client(address)
        assert list(client.list_queues(parent=LOCATION)) == []

        second = _start_cli(int(address.rsplit(":", 1)[-1]))
        _, err = second.communicate(timeout=20)
        assert second.returncode == 2
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=20)
    assert first.returncode == 0
