"""In-memory Cloud Tasks v2 state and the gRPC handlers that expose it.

The client library's proto-plus types (de)serialize themselves, so no generated servicer is
needed: each RPC is registered by its full method name on a generic handler.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.cloud import tasks_v2
from google.protobuf import empty_pb2, field_mask_pb2
from google.rpc import status_pb2

from common.clock import epoch_seconds
from emulator.cloudtasks.dispatcher import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF_S,
    DEFAULT_MAX_DOUBLINGS,
    DEFAULT_MIN_BACKOFF_S,
    MAX_IDLE_WAIT_S,
    Clock,
    DispatchRequest,
    DispatchResult,
    fake_oauth_token,
    mint_oidc_token,
    next_backoff,
    retries_exhausted,
)

logger = logging.getLogger(__name__)

SERVICE_NAME = "google.cloud.tasks.v2.CloudTasks"

_PROJECT = r"[A-Za-z0-9\-:.]+"
_LOCATION = r"[A-Za-z0-9-]+"
_QUEUE_ID = r"[A-Za-z0-9-]{1,100}"
_TASK_ID = r"[A-Za-z0-9_-]{1,500}"
_LOCATION_RE = re.compile(rf"^projects/{_PROJECT}/locations/{_LOCATION}$")
_QUEUE_RE = re.compile(rf"^(projects/{_PROJECT}/locations/{_LOCATION})/queues/{_QUEUE_ID}$")
_TASK_RE = re.compile(
    rf"^(projects/{_PROJECT}/locations/{_LOCATION}/queues/{_QUEUE_ID})/tasks/{_TASK_ID}$"
)

# Production limits and defaults (https://cloud.google.com/tasks/docs/quotas).
MAX_DISPATCHES_PER_SECOND = 500.0
DEFAULT_MAX_BURST_SIZE = 100
DEFAULT_MAX_CONCURRENT_DISPATCHES = 1000
DEFAULT_DISPATCH_DEADLINE_S = 600.0
MAX_DISPATCH_DEADLINE_S = 1800.0
MAX_TASK_BODY_BYTES = 1024 * 1024
DEFAULT_PAGE_SIZE = 1000
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_UPDATABLE_QUEUE_FIELDS = {
    "app_engine_routing_override",
    "http_target",
    "rate_limits",
    "retry_config",
    "stackdriver_logging_config",
}
_STATE_FILTER_RE = re.compile(r"^\s*state\s*:\s*([A-Z_]+)\s*$")

# google.rpc.Code values for the HTTP statuses a target commonly returns.
_HTTP_TO_RPC_CODE = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND
    409: 10,  # ABORTED
    429: 8,  # RESOURCE_EXHAUSTED
    499: 1,  # CANCELLED
    501: 12,  # UNIMPLEMENTED
    503: 14,  # UNAVAILABLE
    504: 4,  # DEADLINE_EXCEEDED
}
_RPC_DEADLINE_EXCEEDED = 4
_RPC_UNAVAILABLE = 14
_RPC_FAILED_PRECONDITION = 9
_RPC_INTERNAL = 13


class EmulatorError(Exception):
    """A request the emulator refuses; becomes a gRPC status on the wire."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> EmulatorError:
    return EmulatorError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _not_found(message: str) -> EmulatorError:
    return EmulatorError(grpc.StatusCode.NOT_FOUND, message)


def _timestamp(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def _seconds(value: timedelta | None) -> float:
    return value.total_seconds() if value else 0.0


def _rpc_code_for(result: DispatchResult) -> int:
    if result.status_code is None:
        return _RPC_DEADLINE_EXCEEDED if result.error == "deadline_exceeded" else _RPC_UNAVAILABLE
    if 200 <= result.status_code < 300:
        return 0
    default = _RPC_FAILED_PRECONDITION if result.status_code < 500 else _RPC_INTERNAL
    return _HTTP_TO_RPC_CODE.get(result.status_code, default)


def _retry_reason(result: DispatchResult) -> str:
    if result.status_code is not None:
        return f"HTTP status {result.status_code}"
    if result.error == "deadline_exceeded":
        return "dispatch deadline exceeded"
    return "target unreachable"


def _page(items: list[Any], page_size: int, page_token: str) -> tuple[list[Any], str]:
    """Offset paging; the token is opaque to clients, so a plain offset is enough here."""
    if page_size < 0:
        raise _invalid("page_size must not be negative")
    try:
        start = int(page_token) if page_token else 0
    except ValueError:
        raise _invalid("invalid page_token") from None
    if start < 0:
        raise _invalid("invalid page_token")
    size = min(page_size or DEFAULT_PAGE_SIZE, DEFAULT_PAGE_SIZE)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


@dataclass
class _TaskRecord:
    task: tasks_v2.Task  # always the FULL view; trimmed per request on the way out
    due: float  # epoch seconds of the next attempt
    in_flight: bool = False
    forced: bool = False  # RunTask: dispatch ignoring pause and rate limits
    first_dispatch_at: float | None = None
    current_attempt: tasks_v2.Attempt | None = None
    previous_response: int | None = None
    retry_reason: str | None = None


@dataclass
class _QueueRecord:
    queue: tasks_v2.Queue
    tasks: dict[str, _TaskRecord] = field(default_factory=dict)
    next_dispatch_at: float = 0.0  # earliest time the rate limit allows another dispatch


def _apply_queue_defaults(queue: tasks_v2.Queue) -> None:
    """Fill unset (zero) fields with production defaults, as GetQueue shows them."""
    limits = queue.rate_limits
    if not limits.max_dispatches_per_second:
        limits.max_dispatches_per_second = MAX_DISPATCHES_PER_SECOND
    if not limits.max_burst_size:
        limits.max_burst_size = DEFAULT_MAX_BURST_SIZE
    if not limits.max_concurrent_dispatches:
        limits.max_concurrent_dispatches = DEFAULT_MAX_CONCURRENT_DISPATCHES
    retry = queue.retry_config
    if not retry.max_attempts:
        retry.max_attempts = DEFAULT_MAX_ATTEMPTS
    if not _seconds(retry.min_backoff):
        retry.min_backoff = timedelta(seconds=DEFAULT_MIN_BACKOFF_S)
    if not _seconds(retry.max_backoff):
        retry.max_backoff = timedelta(seconds=DEFAULT_MAX_BACKOFF_S)
    if not retry.max_doublings:
        retry.max_doublings = DEFAULT_MAX_DOUBLINGS
    if queue.state == tasks_v2.Queue.State.STATE_UNSPECIFIED:
        queue.state = tasks_v2.Queue.State.RUNNING


def _validate_queue(queue: tasks_v2.Queue) -> None:
    limits = queue.rate_limits
    if not 0 < limits.max_dispatches_per_second <= MAX_DISPATCHES_PER_SECOND:
        raise _invalid("rate_limits.max_dispatches_per_second must be in (0, 500]")
    if limits.max_concurrent_dispatches < 0:
        raise _invalid("rate_limits.max_concurrent_dispatches must not be negative")
    retry = queue.retry_config
    if retry.max_attempts < -1:
        raise _invalid("retry_config.max_attempts must be >= -1")
    if retry.max_doublings < 0:
        raise _invalid("retry_config.max_doublings must not be negative")
    if _seconds(retry.min_backoff) > _seconds(retry.max_backoff):
        raise _invalid("retry_config.min_backoff must not exceed max_backoff")


class TaskStore:
    """All queues and tasks, guarded by one condition the dispatcher also waits on."""

    def __init__(self, name_reuse_window_s: float = 3600.0, clock: Clock = epoch_seconds) -> None:
        self.condition = threading.Condition()
        self._clock = clock
        self._name_reuse_window_s = name_reuse_window_s
        self._queues: dict[str, _QueueRecord] = {}
        # Task name -> last time it was live; production refuses re-use for about an hour.
        self._used_names: dict[str, float] = {}

    # ----- lookups ---------------------------------------------------------------------------

    def _queue(self, name: str) -> _QueueRecord:
        if not _QUEUE_RE.match(name):
            raise _invalid(f"invalid queue name: {name!r}")
        record = self._queues.get(name)
        if record is None:
            raise _not_found(f"queue not found: {name}")
        return record

    def _task(self, name: str) -> tuple[_QueueRecord, _TaskRecord]:
        match = _TASK_RE.match(name)
        if not match:
            raise _invalid(f"invalid task name: {name!r}")
        queue = self._queue(match.group(1))
        record = queue.tasks.get(name)
        if record is None:
            raise _not_found(f"task not found: {name}")
        return queue, record

    def _retire(self, queue: _QueueRecord, name: str) -> None:
        """Remove a task but keep its name reserved for the de-duplication window."""
        queue.tasks.pop(name, None)
        self._used_names[name] = self._clock()

    def _name_in_use(self, queue: _QueueRecord, name: str) -> bool:
        if name in queue.tasks:
            return True
        last_used = self._used_names.get(name)
        return last_used is not None and self._clock() - last_used < self._name_reuse_window_s

    def _forget_expired_names(self) -> None:
        cutoff = self._clock() - self._name_reuse_window_s
        for name in [n for n, used in self._used_names.items() if used <= cutoff]:
            del self._used_names[name]

    # ----- queues ----------------------------------------------------------------------------

    def create_queue(self, parent: str, queue: tasks_v2.Queue) -> tasks_v2.Queue:
        if not _LOCATION_RE.match(parent):
            raise _invalid(f"invalid parent: {parent!r}")
        match = _QUEUE_RE.match(queue.name)
        if not match or match.group(1) != parent:
            raise _invalid(f"queue name must be {parent}/queues/QUEUE_ID, got {queue.name!r}")
        stored = tasks_v2.Queue(queue)
        stored.state = tasks_v2.Queue.State.RUNNING  # output-only in the API
        tasks_v2.Queue.pb(stored).ClearField("purge_time")
        _apply_queue_defaults(stored)
        _validate_queue(stored)
        with self.condition:
            if queue.name in self._queues:
                raise EmulatorError(grpc.StatusCode.ALREADY_EXISTS, f"queue exists: {queue.name}")
            self._queues[queue.name] = _QueueRecord(queue=stored)
            return tasks_v2.Queue(stored)

    def get_queue(self, name: str) -> tasks_v2.Queue:
        with self.condition:
            return tasks_v2.Queue(self._queue(name).queue)

    def list_queues(
        self, parent: str, filter_: str, page_size: int, page_token: str
    ) -> tasks_v2.ListQueuesResponse:
        if not _LOCATION_RE.match(parent):
            raise _invalid(f"invalid parent: {parent!r}")
        wanted_state = self._parse_state_filter(filter_)
        with self.condition:
            queues = [
                tasks_v2.Queue(record.queue)
                for name, record in sorted(self._queues.items())
                if name.startswith(parent + "/")
                and (wanted_state is None or record.queue.state == wanted_state)
            ]
        page, next_token = _page(queues, page_size, page_token)
        return tasks_v2.ListQueuesResponse(queues=page, next_page_token=next_token)

    @staticmethod
    def _parse_state_filter(filter_: str) -> tasks_v2.Queue.State | None:
        if not filter_.strip():
            return None
        match = _STATE_FILTER_RE.match(filter_)
        if not match or match.group(1) not in tasks_v2.Queue.State.__members__:
            raise _invalid(f"unsupported filter: {filter_!r} (only 'state: STATE' is supported)")
        return tasks_v2.Queue.State[match.group(1)]

    def update_queue(
        self, queue: tasks_v2.Queue, update_mask: field_mask_pb2.FieldMask
    ) -> tasks_v2.Queue:
        match = _QUEUE_RE.match(queue.name)
        if not match:
            raise _invalid(f"invalid queue name: {queue.name!r}")
        paths = list(update_mask.paths)
        for path in paths:
            if path.split(".", 1)[0] not in _UPDATABLE_QUEUE_FIELDS:
                raise _invalid(f"field cannot be updated: {path!r}")
        if paths and not update_mask.IsValidForDescriptor(tasks_v2.Queue.pb().DESCRIPTOR):
            raise _invalid(f"invalid update_mask: {paths}")
        with self.condition:
            record = self._queues.get(queue.name)
            # Production UpdateQueue creates the queue when it does not exist yet.
            current = record.queue if record else tasks_v2.Queue(name=queue.name)
            updated = self._merge_queue(current, queue, update_mask)
            _apply_queue_defaults(updated)
            _validate_queue(updated)
            if record is None:
                self._queues[queue.name] = _QueueRecord(queue=updated)
            else:
                record.queue = updated
            self.condition.notify_all()
            return tasks_v2.Queue(updated)

    @staticmethod
    def _merge_queue(
        current: tasks_v2.Queue, patch: tasks_v2.Queue, update_mask: field_mask_pb2.FieldMask
    ) -> tasks_v2.Queue:
        if update_mask.paths:
            merged = tasks_v2.Queue(current)
            update_mask.MergeMessage(
                tasks_v2.Queue.pb(patch),
                tasks_v2.Queue.pb(merged),
                replace_message_field=True,
                replace_repeated_field=True,
            )
            return merged
        # No mask: every mutable field is replaced; output-only fields are kept.
        merged = tasks_v2.Queue(patch)
        merged.state = current.state
        merged_pb = tasks_v2.Queue.pb(merged)
        merged_pb.ClearField("purge_time")
        if tasks_v2.Queue.pb(current).HasField("purge_time"):
            merged_pb.purge_time.CopyFrom(tasks_v2.Queue.pb(current).purge_time)
        return merged

    def delete_queue(self, name: str) -> None:
        with self.condition:
            record = self._queue(name)
            for task_name in list(record.tasks):
                self._retire(record, task_name)
            del self._queues[name]

    def set_queue_state(self, name: str, state: tasks_v2.Queue.State) -> tasks_v2.Queue:
        with self.condition:
            record = self._queue(name)
            record.queue.state = state
            self.condition.notify_all()
            return tasks_v2.Queue(record.queue)

    def purge_queue(self, name: str) -> tasks_v2.Queue:
        with self.condition:
            record = self._queue(name)
            for task_name in list(record.tasks):
                self._retire(record, task_name)
            record.queue.purge_time = _timestamp(self._clock())
            return tasks_v2.Queue(record.queue)

    # ----- tasks -----------------------------------------------------------------------------

    def create_task(
        self, parent: str, task: tasks_v2.Task, view: tasks_v2.Task.View
    ) -> tasks_v2.Task:
        stored = self._new_task(parent, task)
        with self.condition:
            queue = self._queue(parent)
            self._forget_expired_names()
            if stored.name:
                if self._name_in_use(queue, stored.name):
                    raise EmulatorError(
                        grpc.StatusCode.ALREADY_EXISTS, f"task exists or was used: {stored.name}"
                    )
            else:
                stored.name = self._generate_name(queue, parent)
            now = self._clock()
            stored.create_time = _timestamp(now)
            if not tasks_v2.Task.pb(stored).HasField("schedule_time"):
                stored.schedule_time = _timestamp(now)
            record = _TaskRecord(task=stored, due=stored.schedule_time.timestamp())
            queue.tasks[stored.name] = record
            self._used_names[stored.name] = now
            self.condition.notify_all()
            return self._render(record, view)

    def _new_task(self, parent: str, task: tasks_v2.Task) -> tasks_v2.Task:
        """Validate the request and return a copy with output-only fields reset."""
        if not _QUEUE_RE.match(parent):
            raise _invalid(f"invalid parent queue name: {parent!r}")
        if task.name:
            match = _TASK_RE.match(task.name)
            if not match or match.group(1) != parent:
                raise _invalid(f"task name must be {parent}/tasks/TASK_ID, got {task.name!r}")
        target = tasks_v2.Task.pb(task).WhichOneof("message_type")
        if target == "app_engine_http_request":
            raise EmulatorError(
                grpc.StatusCode.UNIMPLEMENTED, "the emulator only supports http_request tasks"
            )
        if target != "http_request":
            raise _invalid("task needs a target: set http_request")
        request = task.http_request
        if not request.url.startswith(("http://", "https://")):
            raise _invalid(f"http_request.url must be an http(s) URL, got {request.url!r}")
        if request.http_method == tasks_v2.HttpMethod.HTTP_METHOD_UNSPECIFIED:
            request.http_method = tasks_v2.HttpMethod.POST
        if request.body and request.http_method.name not in _BODY_METHODS:
            raise _invalid("a body is only allowed for POST, PUT and PATCH")
        if len(request.body) > MAX_TASK_BODY_BYTES:
            raise _invalid("task body exceeds 1 MiB")
        deadline = _seconds(task.dispatch_deadline)
        if deadline < 0 or deadline > MAX_DISPATCH_DEADLINE_S:
            raise _invalid("dispatch_deadline must be at most 30 minutes")
        stored = tasks_v2.Task(name=task.name, http_request=request)
        stored.dispatch_deadline = timedelta(seconds=deadline or DEFAULT_DISPATCH_DEADLINE_S)
        if tasks_v2.Task.pb(task).HasField("schedule_time"):
            stored.schedule_time = task.schedule_time
        return stored

    def _generate_name(self, queue: _QueueRecord, parent: str) -> str:
        # Production task ids are long random decimal numbers.
        while True:
            name = f"{parent}/tasks/{secrets.randbelow(10**19):019d}"
            if not self._name_in_use(queue, name):
                return name

    @staticmethod
    def _render(record: _TaskRecord, view: tasks_v2.Task.View) -> tasks_v2.Task:
        task = tasks_v2.Task(record.task)
        # BASIC (the default) omits the payload, which may be large or sensitive.
        task.view = view if view == tasks_v2.Task.View.FULL else tasks_v2.Task.View.BASIC
        if task.view == tasks_v2.Task.View.BASIC:
            task.http_request.body = b""
        return task

    def get_task(self, name: str, view: tasks_v2.Task.View) -> tasks_v2.Task:
        with self.condition:
            _, record = self._task(name)
            return self._render(record, view)

    def list_tasks(
        self, parent: str, view: tasks_v2.Task.View, page_size: int, page_token: str
    ) -> tasks_v2.ListTasksResponse:
        with self.condition:
            queue = self._queue(parent)
            tasks = [self._render(record, view) for record in queue.tasks.values()]
        page, next_token = _page(tasks, page_size, page_token)
        return tasks_v2.ListTasksResponse(tasks=page, next_page_token=next_token)

    def delete_task(self, name: str) -> None:
        with self.condition:
            queue, _ = self._task(name)
            self._retire(queue, name)

    def run_task(self, name: str, view: tasks_v2.Task.View) -> tasks_v2.Task:
        with self.condition:
            _, record = self._task(name)
            if not record.in_flight:
                now = self._clock()
                record.forced = True
                record.due = now
                record.task.schedule_time = _timestamp(now)
                self.condition.notify_all()
            return self._render(record, view)

    # ----- dispatch (called by the Dispatcher) ----------------------------------------------

    def claim_due(self, now: float, capacity: int) -> tuple[list[DispatchRequest], float]:
        """Pick due tasks honouring pause, rate and concurrency limits. Caller holds the lock."""
        claimed: list[DispatchRequest] = []
        wake_at = now + MAX_IDLE_WAIT_S
        for queue in self._queues.values():
            if capacity - len(claimed) <= 0:
                break
            wake_at = min(wake_at, self._claim_from(queue, now, capacity - len(claimed), claimed))
        return claimed, wake_at

    def _claim_from(
        self, queue: _QueueRecord, now: float, capacity: int, claimed: list[DispatchRequest]
    ) -> float:
        wake_at = now + MAX_IDLE_WAIT_S
        idle = [record for record in queue.tasks.values() if not record.in_flight]
        for record in [r for r in idle if r.forced][:capacity]:
            claimed.append(self._begin_attempt(queue, record, now))
            capacity -= 1
        if queue.queue.state != tasks_v2.Queue.State.RUNNING:
            return wake_at
        in_flight = sum(1 for record in queue.tasks.values() if record.in_flight)
        limits = queue.queue.rate_limits
        interval = 1.0 / limits.max_dispatches_per_second
        for record in sorted((r for r in idle if not r.in_flight), key=lambda r: r.due):
            if record.due > now:
                return min(wake_at, record.due)
            if capacity <= 0 or in_flight >= limits.max_concurrent_dispatches:
                return wake_at  # a completing attempt notifies the dispatcher
            if now < queue.next_dispatch_at:
                return min(wake_at, queue.next_dispatch_at)
            claimed.append(self._begin_attempt(queue, record, now))
            queue.next_dispatch_at = now + interval
            capacity -= 1
            in_flight += 1
        return wake_at

    def _begin_attempt(
        self, queue: _QueueRecord, record: _TaskRecord, now: float
    ) -> DispatchRequest:
        task = record.task
        retry_count, execution_count = task.dispatch_count, task.response_count
        record.in_flight = True
        record.forced = False
        task.dispatch_count += 1
        record.current_attempt = tasks_v2.Attempt(
            schedule_time=task.schedule_time, dispatch_time=_timestamp(now)
        )
        if record.first_dispatch_at is None:
            record.first_dispatch_at = now
            task.first_attempt = tasks_v2.Attempt(dispatch_time=_timestamp(now))
        http = task.http_request
        headers = self._headers(queue, record, retry_count, execution_count)
        method = http.http_method
        target = queue.queue.http_target
        if target.http_method != tasks_v2.HttpMethod.HTTP_METHOD_UNSPECIFIED:
            method = target.http_method
        return DispatchRequest(
            queue_name=queue.queue.name,
            task_name=task.name,
            attempt=task.dispatch_count,
            method=method.name,
            url=http.url,
            headers=headers,
            body=bytes(http.body),
            deadline_s=_seconds(task.dispatch_deadline) or DEFAULT_DISPATCH_DEADLINE_S,
        )

    def _headers(
        self, queue: _QueueRecord, record: _TaskRecord, retry_count: int, execution_count: int
    ) -> dict[str, str]:
        task = record.task
        http = task.http_request
        headers = dict(http.headers)
        target = queue.queue.http_target
        for override in target.header_overrides:
            headers[override.header.key] = override.header.value
        # Clients may not spoof the Cloud Tasks headers; drop any case variant first.
        headers = {k: v for k, v in headers.items() if not k.lower().startswith("x-cloudtasks-")}
        lower_keys = {key.lower() for key in headers}
        if http.body and "content-type" not in lower_keys:
            headers["Content-Type"] = "application/octet-stream"
        headers["User-Agent"] = "Google-Cloud-Tasks"
        headers["X-CloudTasks-QueueName"] = queue.queue.name.rsplit("/", 1)[-1]
        headers["X-CloudTasks-TaskName"] = task.name.rsplit("/", 1)[-1]
        headers["X-CloudTasks-TaskRetryCount"] = str(retry_count)
        headers["X-CloudTasks-TaskExecutionCount"] = str(execution_count)
        headers["X-CloudTasks-TaskETA"] = f"{task.schedule_time.timestamp():.6f}"
        if retry_count and record.previous_response is not None:
            headers["X-CloudTasks-TaskPreviousResponse"] = str(record.previous_response)
        if retry_count and record.retry_reason:
            headers["X-CloudTasks-TaskRetryReason"] = record.retry_reason
        authorization = self._authorization(http, target)
        if authorization:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            headers["Authorization"] = authorization
        return headers

    def _authorization(self, http: tasks_v2.HttpRequest, target: tasks_v2.HttpTarget) -> str:
        # The task's own token wins; the queue's http_target token is the fallback.
        for source in (http, target):
            source_pb = type(source).pb(source)
            kind = source_pb.WhichOneof("authorization_header")
            if kind == "oidc_token":
                token = source.oidc_token
                audience = token.audience or http.url
                jwt = mint_oidc_token(
                    token.service_account_email, audience
                )  # real time: see common/clock.py
                return f"Bearer {jwt}"
            if kind == "oauth_token":
                return f"Bearer {fake_oauth_token(source.oauth_token.service_account_email)}"
        return ""

    def complete(self, request: DispatchRequest, result: DispatchResult) -> None:
        with self.condition:
            queue = self._queues.get(request.queue_name)
            record = queue.tasks.get(request.task_name) if queue else None
            # Deleted, purged or re-created meanwhile: the outcome no longer matters.
            if queue is None or record is None or not record.in_flight:
                return
            if record.task.dispatch_count != request.attempt:
                return
            self._record_outcome(queue, record, result)
            self.condition.notify_all()

    def _record_outcome(
        self, queue: _QueueRecord, record: _TaskRecord, result: DispatchResult
    ) -> None:
        task = record.task
        record.in_flight = False
        attempt = record.current_attempt or tasks_v2.Attempt()
        if result.status_code is not None:
            task.response_count += 1
            attempt.response_time = _timestamp(result.response_time)
        attempt.response_status = status_pb2.Status(
            code=_rpc_code_for(result), message=_retry_reason(result)
        )
        task.last_attempt = attempt
        if result.succeeded:
            self._retire(queue, task.name)
            return
        retry = queue.queue.retry_config
        now = result.response_time
        first = record.first_dispatch_at if record.first_dispatch_at is not None else now
        if retries_exhausted(retry, task.dispatch_count, first, now):
            logger.warning(
                "task dropped after %d attempts queue=%s task=%s",
                task.dispatch_count,
                queue.queue.name.rsplit("/", 1)[-1],
                task.name.rsplit("/", 1)[-1],
            )
            self._retire(queue, task.name)
            return
        record.due = now + next_backoff(retry, task.dispatch_count)
        task.schedule_time = _timestamp(record.due)
        if result.status_code is not None:
            record.previous_response = result.status_code
        record.retry_reason = _retry_reason(result)


# ----- gRPC wiring ------------------------------------------------------------------------------

Req = TypeVar("Req")


def _guard(fn: Callable[[Req], Any]) -> Callable[[Req, grpc.ServicerContext], Any]:
    """Turn EmulatorError into a gRPC status and unexpected errors into INTERNAL."""

    def handler(request: Req, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request)
        except EmulatorError as exc:
            context.abort(exc.code, exc.message)
        except Exception:
            logger.exception("unhandled error in Cloud Tasks emulator RPC")
            context.abort(grpc.StatusCode.INTERNAL, "internal emulator error")

    return handler


def _empty(_: None) -> empty_pb2.Empty:
    return empty_pb2.Empty()


def build_handler(store: TaskStore) -> grpc.GenericRpcHandler:
    """One generic handler for every supported CloudTasks RPC (others answer UNIMPLEMENTED)."""
    Queue, Task, State = tasks_v2.Queue, tasks_v2.Task, tasks_v2.Queue.State
    serialize_empty = empty_pb2.Empty.SerializeToString
    table: Iterable[tuple[str, Any, Callable[[Any], Any], Callable[[Any], bytes]]] = [
        (
            "CreateQueue",
            tasks_v2.CreateQueueRequest,
            lambda r: store.create_queue(r.parent, r.queue),
            Queue.serialize,
        ),
        ("GetQueue", tasks_v2.GetQueueRequest, lambda r: store.get_queue(r.name), Queue.serialize),
        (
            "ListQueues",
            tasks_v2.ListQueuesRequest,
            lambda r: store.list_queues(r.parent, r.filter, r.page_size, r.page_token),
            tasks_v2.ListQueuesResponse.serialize,
        ),
        (
            "UpdateQueue",
            tasks_v2.UpdateQueueRequest,
            lambda r: store.update_queue(r.queue, tasks_v2.UpdateQueueRequest.pb(r).update_mask),
            Queue.serialize,
        ),
        (
            "DeleteQueue",
            tasks_v2.DeleteQueueRequest,
            lambda r: _empty(store.delete_queue(r.name)),
            serialize_empty,
        ),
        (
            "PauseQueue",
            tasks_v2.PauseQueueRequest,
            lambda r: store.set_queue_state(r.name, State.PAUSED),
            Queue.serialize,
        ),
        (
            "ResumeQueue",
            tasks_v2.ResumeQueueRequest,
            lambda r: store.set_queue_state(r.name, State.RUNNING),
            Queue.serialize,
        ),
        (
            "PurgeQueue",
            tasks_v2.PurgeQueueRequest,
            lambda r: store.purge_queue(r.name),
            Queue.serialize,
        ),
        (
            "CreateTask",
            tasks_v2.CreateTaskRequest,
            lambda r: store.create_task(r.parent, r.task, r.response_view),
            Task.serialize,
        ),
        (
            "GetTask",
            tasks_v2.GetTaskRequest,
            lambda r: store.get_task(r.name, r.response_view),
            Task.serialize,
        ),
        (
            "ListTasks",
            tasks_v2.ListTasksRequest,
            lambda r: store.list_tasks(r.parent, r.response_view, r.page_size, r.page_token),
            tasks_v2.ListTasksResponse.serialize,
        ),
        (
            "DeleteTask",
            tasks_v2.DeleteTaskRequest,
            lambda r: _empty(store.delete_task(r.name)),
            serialize_empty,
        ),
        (
            "RunTask",
            tasks_v2.RunTaskRequest,
            lambda r: store.run_task(r.name, r.response_view),
            Task.serialize,
        ),
    ]
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            _guard(fn),
            request_deserializer=request_type.deserialize,
            response_serializer=serializer,
        )
        for method, request_type, fn, serializer in table
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
