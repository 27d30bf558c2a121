"""An in-memory Firestore behind the UnitOfWork protocol, for pure unit tests of services.

It keeps what the services rely on: a document's version changes with every write; `create()`
of an existing document, `update()` of a missing one and a stale `if_version` fail the whole
commit (all or nothing), with the same exceptions the real client raises; `Increment` and
`SERVER_TIMESTAMP` transforms; dotted (and back-quoted) field paths; equality, range, `in` and
`array_contains` filters. Each commit can be made to fail first (`fail_next_commits`), to show
what a service does when Firestore is not there.
"""

from __future__ import annotations

import copy
import itertools
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1 import DELETE_FIELD, SERVER_TIMESTAMP
from google.cloud.firestore_v1.field_path import FieldPath
from google.cloud.firestore_v1.transforms import Increment

from common.adapters.firestore_store import AUDIT_LOG, IDEMPOTENCY, OUTBOX
from common.domain.events import DomainEvent
from common.services import outbox
from common.services.idempotency import IdempotencyScope, StoredResponse
from common.services.unit_of_work import (
    DEFAULT_RETRY,
    Document,
    RetryPolicy,
    Where,
    audit_document,
    run_attempts,
)

T = TypeVar("T")
Key = tuple[str, str]


def _split(path: str) -> list[str]:
    return list(FieldPath.from_string(path).parts) if "`" in path else path.split(".")


def _get_path(data: dict[str, Any], path: str) -> Any:
    current: Any = data
    for part in _split(path):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _apply_value(value: Any, old: Any, now: datetime) -> Any:
    if value is SERVER_TIMESTAMP:
        return now
    if isinstance(value, Increment):
        return (old or 0) + value.value
    if isinstance(value, dict):
        return {k: _apply_value(v, None, now) for k, v in value.items()}
    return copy.deepcopy(value)


def _set_path(data: dict[str, Any], path: str, value: Any, now: datetime) -> None:
    parts = _split(path)
    current = data
    for part in parts[:-1]:
        current = current.setdefault(part, {})
    if value is DELETE_FIELD:
        current.pop(parts[-1], None)
        return
    current[parts[-1]] = _apply_value(value, current.get(parts[-1]), now)


def _merge(base: dict[str, Any], data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """set(merge=True): nested maps merge key by key, as Firestore does."""
    for name, value in data.items():
        if value is DELETE_FIELD:
            base.pop(name, None)
        elif isinstance(value, dict) and isinstance(base.get(name), dict):
            _merge(base[name], value, now)
        else:
            base[name] = _apply_value(value, base.get(name), now)
    return base


def _matches(data: dict[str, Any], where: Where) -> bool:
    field_path, op, expected = where
    value = _get_path(data, field_path)
    if op == "==":
        return value == expected
    if op == "!=":
        return value is not None and value != expected
    if op == "in":
        return value in expected
    if op == "array_contains":
        return isinstance(value, list) and expected in value
    if value is None:
        return False
    return {
        "<": value < expected,
        "<=": value <= expected,
        ">": value > expected,
        ">=": value >= expected,
    }[op]


@dataclass
class FakeFirestore:
    """The documents, with a version per document, and counters the tests can look at."""

    documents: dict[Key, tuple[dict[str, Any], datetime]] = field(default_factory=dict)
    commits: int = 0
    fail_next_commits: int = 0
    fault: type[Exception] = gexc.ServiceUnavailable
    published: list[DomainEvent] = field(default_factory=list)
    after_commit_failures: list[Exception] = field(default_factory=list)
    _tick: itertools.count = field(default_factory=lambda: itertools.count(1))

    def _next_version(self) -> datetime:
        return datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=next(self._tick))

    def data(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        found = self.documents.get((collection, doc_id))
        return copy.deepcopy(found[0]) if found else None

    def collection(self, collection: str) -> dict[str, dict[str, Any]]:
        return {i: copy.deepcopy(d) for (c, i), (d, _) in self.documents.items() if c == collection}

    def put(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        """Seed a document directly (test set-up)."""
        self.documents[(collection, doc_id)] = (copy.deepcopy(data), self._next_version())

    def commit(self, writes: list[tuple[str, Key, Any, Any]], now: datetime) -> None:
        if self.fail_next_commits:
            self.fail_next_commits -= 1
            raise self.fault("the fake Firestore is down")
        staged = dict(self.documents)
        for kind, key, payload, option in writes:
            existing = staged.get(key)
            if option is not None and (existing is None or existing[1] != option):
                raise (gexc.NotFound if existing is None else gexc.FailedPrecondition)("stale")
            version = self._next_version()
            if kind == "create":
                if existing is not None:
                    raise gexc.Conflict(f"{key} already exists")
                staged[key] = (_apply_value(payload, None, now), version)
            elif kind == "set":
                data, merge = payload
                if merge:
                    base = copy.deepcopy(existing[0]) if existing else {}
                    staged[key] = (_merge(base, data, now), version)
                else:
                    staged[key] = (_apply_value(data, None, now), version)
            elif kind == "update":
                if existing is None:
                    raise gexc.NotFound(f"{key} does not exist")
                data = copy.deepcopy(existing[0])
                for path, value in payload.items():
                    _set_path(data, path, value, now)
                staged[key] = (data, version)
            elif kind == "delete":
                staged.pop(key, None)
        self.documents = staged
        self.commits += 1


@dataclass
class FakeUnitOfWork:
    store: FakeFirestore
    idem: IdempotencyScope | None
    now: Callable[[], datetime]
    writes: list[tuple[str, Key, Any, Any]] = field(default_factory=list)
    events: list[DomainEvent] = field(default_factory=list)
    callbacks: list[Callable[[], None]] = field(default_factory=list)

    def get(self, collection: str, doc_id: str) -> Document | None:
        found = self.store.documents.get((collection, doc_id))
        return Document(doc_id, copy.deepcopy(found[0]), found[1]) if found else None

    def get_all(self, keys: Sequence[Key]) -> dict[Key, Document | None]:
        return {key: self.get(*key) for key in keys}

    def query(
        self,
        collection: str,
        *where: Where,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[Document]:
        found = [
            Document(i, copy.deepcopy(d), v)
            for (c, i), (d, v) in sorted(self.store.documents.items())
            if c == collection and all(_matches(d, w) for w in where)
        ]
        if order_by is not None:
            found = [d for d in found if _get_path(d.data, order_by) is not None]
            found.sort(key=lambda d: _get_path(d.data, order_by))
        return found[:limit] if limit is not None else found

    def count(self, collection: str, *where: Where) -> int:
        return len(self.query(collection, *where))

    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        self.writes.append(("create", (collection, doc_id), data, None))

    def set(self, collection: str, doc_id: str, data: dict[str, Any], merge: bool = False) -> None:
        self.writes.append(("set", (collection, doc_id), (data, merge), None))

    def update(
        self, collection: str, doc_id: str, fields: dict[str, Any], *, if_version=None
    ) -> None:
        self.writes.append(("update", (collection, doc_id), fields, if_version))

    def delete(self, collection: str, doc_id: str, *, if_version=None) -> None:
        self.writes.append(("delete", (collection, doc_id), None, if_version))

    def publish(self, events: Iterable[DomainEvent]) -> None:
        for event in events:
            self.events.append(event)
            self.create(OUTBOX, event.event_id, outbox.outbox_document(event))

    def audit(self, actor: Any, action: str, subjects: Sequence[Any], now: datetime, **details):
        entry = audit_document(actor, action, subjects, now, details)
        if entry is not None:
            self.create(AUDIT_LOG, uuid.uuid4().hex, entry)

    def respond(self, response: StoredResponse) -> StoredResponse:
        if self.idem is not None:
            self.create(IDEMPOTENCY, self.idem.doc_id, self.idem.record(response))
        return response

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)

    def commit(self) -> None:
        self.store.commit(self.writes, self.now())
        self.store.published.extend(self.events)
        for callback in self.callbacks:
            try:
                callback()
            except Exception as err:
                # As the Firestore unit of work: the commit is done, an after-commit step
                # never fails it.
                self.store.after_commit_failures.append(err)


@dataclass
class FakeUnitsOfWork:
    """The runner services get in unit tests: the same retry loop, no sleeping."""

    store: FakeFirestore = field(default_factory=FakeFirestore)
    now: Callable[[], datetime] = field(default=lambda: datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    policy: RetryPolicy = DEFAULT_RETRY
    attempts: int = 0

    def begin(self, idem: IdempotencyScope | None = None) -> FakeUnitOfWork:
        self.attempts += 1
        return FakeUnitOfWork(self.store, idem, self.now)

    def reader(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.store, None, self.now)

    def run(
        self,
        attempt: Callable[[Any], T],
        *,
        gave_up: Callable[[], Exception],
        idem: IdempotencyScope | None = None,
        on_conflict: Callable[[Any], T | None] | None = None,
        policy: RetryPolicy | None = None,
    ) -> T:
        return run_attempts(
            self.begin,
            attempt,
            gave_up=gave_up,
            idem=idem,
            on_conflict=on_conflict,
            policy=policy or self.policy,
            sleep=lambda _s: None,
            rng=random.Random(0),
        )
