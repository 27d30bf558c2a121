"""One unit of work for every write path.

A write use case reads what it needs, decides (the pure domain), stages its writes, and commits
them together: the change itself, its outbox events, its audit entry and, for a request with an
Idempotency-Key, the stored response. One Firestore commit, all or nothing. After the commit
the events are published (best effort: the outbox relay publishes whatever this misses).

When the commit finds that something it read has changed since (a stale version precondition,
a document gone), the whole attempt runs again from its reads: a bounded number of times, with
jittered backoff, under one retry policy for every service (`RetryPolicy`). When a `create()`
finds its document already there, the caller's `on_conflict` decides (a booking's seat was
taken: try another; the patient already has one: refuse); a conflict on the idempotency record
means an earlier request with the same key committed first, and its stored answer is replayed.

Services see only the `UnitOfWork` protocol and a factory that runs attempts: Firestore here,
an in-memory fake in pure unit tests (tests/support/fake_store.py), so a service's decisions are
tested without an emulator.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

from common import structured_log as log
from common.adapters.firestore_store import AUDIT_LOG, IDEMPOTENCY, RPC
from common.adapters.pubsub_publisher import EventPublisher
from common.domain.errors import DomainError
from common.domain.events import DomainEvent
from common.services import audit as audit_trail
from common.services import outbox
from common.services.idempotency import IdempotencyScope, IdempotentReplay, StoredResponse

T = TypeVar("T")

# Filters as (field, operator, value), the operators Firestore's FieldFilter takes.
Where = tuple[str, str, Any]


@dataclass(frozen=True)
class Document:
    """A document as read: its data and its version (update time), the precondition of a
    write that must find it unchanged."""

    id: str
    data: dict[str, Any]
    version: datetime | None


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, an attempt is repeated when its reads went stale."""

    attempts: int = 6
    first_delay_s: float = 0.02
    max_delay_s: float = 0.5
    # The commit's preconditions failed: something read has changed or gone since. ABORTED is
    # what production Firestore answers under contention; none of our commits read inside.
    retried: tuple[type[Exception], ...] = (
        gexc.FailedPrecondition,
        gexc.NotFound,
        gexc.Aborted,
    )

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, first * 2^attempt)], so retries spread out."""
        return rng.uniform(0.0, min(self.max_delay_s, self.first_delay_s * 2**attempt))


DEFAULT_RETRY = RetryPolicy()
# One attempt: a commit guarded by a version whose loser must not try again (another worker won).
ONCE = RetryPolicy(attempts=1)


class UnitOfWork(Protocol):
    """What a service may do inside one attempt: read, stage, and (the runner) commit."""

    # -- reads ----------------------------------------------------------------------------
    def get(self, collection: str, doc_id: str) -> Document | None: ...

    def get_all(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Document | None]:
        """Several documents, possibly of several collections, in one round trip."""
        ...

    def query(
        self,
        collection: str,
        *where: Where,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[Document]: ...

    def count(self, collection: str, *where: Where) -> int:
        """How many documents match: one aggregation (one billed read per 1,000 entries)."""
        ...

    # -- staged writes --------------------------------------------------------------------
    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> None: ...

    def set(
        self, collection: str, doc_id: str, data: dict[str, Any], merge: bool = False
    ) -> None: ...

    def update(
        self,
        collection: str,
        doc_id: str,
        fields: dict[str, Any],
        *,
        if_version: datetime | None = None,
    ) -> None: ...

    def delete(
        self, collection: str, doc_id: str, *, if_version: datetime | None = None
    ) -> None: ...

    def publish(self, events: Iterable[DomainEvent]) -> None:
        """The events go to the outbox in this commit, and to Pub/Sub right after it."""
        ...

    def audit(
        self, actor: Any, action: str, subjects: Sequence[Any], now: datetime, **details: Any
    ) -> None:
        """Who did it, to whom, why: agents, staff and admins (patients' acts are the events)."""
        ...

    def respond(self, response: StoredResponse) -> StoredResponse:
        """The answer, stored with the idempotency key (if any) in this same commit."""
        ...

    def after_commit(self, callback: Callable[[], None]) -> None: ...

    def commit(self) -> None: ...


class UnitOfWorkRunner(Protocol):
    def run(
        self,
        attempt: Callable[[UnitOfWork], T],
        *,
        gave_up: Callable[[], Exception],
        idem: IdempotencyScope | None = None,
        on_conflict: Callable[[UnitOfWork], T | None] | None = None,
        policy: RetryPolicy | None = None,
    ) -> T: ...

    def reader(self) -> UnitOfWork:
        """A unit of work for reads only (queries of a use case that writes nothing)."""
        ...


def audit_document(
    actor: Any, action: str, subjects: Sequence[Any], now: datetime, details: dict[str, Any]
) -> dict[str, Any] | None:
    if actor.role not in audit_trail.AUDITED_ROLES:
        return None
    entry = audit_trail.audit_entry(actor, action, subjects, now)
    entry["appointment_ids"] = [s.appointment_id for s in subjects if s.appointment_id]
    if details:
        entry["details"] = details
    return entry


@dataclass
class FirestoreUnitOfWork:
    """One attempt against Firestore: a WriteBatch, its events, its idempotency completion."""

    db: firestore.Client
    publisher: EventPublisher | None
    idem: IdempotencyScope | None = None
    new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)
    batch: Any = field(init=False)
    events: list[DomainEvent] = field(init=False, default_factory=list)
    callbacks: list[Callable[[], None]] = field(init=False, default_factory=list)
    staged: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.batch = self.db.batch()

    def _ref(self, collection: str, doc_id: str) -> firestore.DocumentReference:
        return self.db.collection(collection).document(doc_id)

    # -- reads ----------------------------------------------------------------------------
    def get(self, collection: str, doc_id: str) -> Document | None:
        snapshot = self._ref(collection, doc_id).get(**RPC)
        return _document(snapshot)

    def get_all(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Document | None]:
        keys = list(dict.fromkeys(keys))
        found: dict[tuple[str, str], Document | None] = dict.fromkeys(keys)
        if not keys:
            return found
        by_path = {self._ref(c, i).path: (c, i) for c, i in keys}
        for snapshot in self.db.get_all([self._ref(c, i) for c, i in keys], **RPC):
            found[by_path[snapshot.reference.path]] = _document(snapshot)
        return found

    def _filtered(self, collection: str, where: Sequence[Where]) -> Any:
        query: Any = self.db.collection(collection)
        for field_path, op, value in where:
            query = query.where(filter=firestore.FieldFilter(field_path, op, value))
        return query

    def count(self, collection: str, *where: Where) -> int:
        result = self._filtered(collection, where).count().get(**RPC)
        return int(result[0][0].value)

    def query(
        self,
        collection: str,
        *where: Where,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[Document]:
        query = self._filtered(collection, where)
        if order_by is not None:
            query = query.order_by(order_by)
        if limit is not None:
            query = query.limit(limit)
        return [d for d in (_document(s) for s in query.stream(**RPC)) if d is not None]

    # -- staged writes --------------------------------------------------------------------
    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        self.batch.create(self._ref(collection, doc_id), data)
        self.staged += 1

    def set(self, collection: str, doc_id: str, data: dict[str, Any], merge: bool = False) -> None:
        self.batch.set(self._ref(collection, doc_id), data, merge=merge)
        self.staged += 1

    def update(
        self,
        collection: str,
        doc_id: str,
        fields: dict[str, Any],
        *,
        if_version: datetime | None = None,
    ) -> None:
        option = self.db.write_option(last_update_time=if_version) if if_version else None
        self.batch.update(self._ref(collection, doc_id), fields, option=option)
        self.staged += 1

    def delete(self, collection: str, doc_id: str, *, if_version: datetime | None = None) -> None:
        option = self.db.write_option(last_update_time=if_version) if if_version else None
        self.batch.delete(self._ref(collection, doc_id), option=option)
        self.staged += 1

    def publish(self, events: Iterable[DomainEvent]) -> None:
        events = list(events)
        outbox.add_events(self.batch, self.db, events)
        self.events.extend(events)
        self.staged += len(events)

    def audit(
        self, actor: Any, action: str, subjects: Sequence[Any], now: datetime, **details: Any
    ) -> None:
        entry = audit_document(actor, action, subjects, now, details)
        if entry is not None:
            self.create(AUDIT_LOG, self.new_id(), entry)

    def respond(self, response: StoredResponse) -> StoredResponse:
        if self.idem is not None:
            self.create(IDEMPOTENCY, self.idem.doc_id, self.idem.record(response))
        return response

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)

    def commit(self) -> None:
        if self.staged:
            self.batch.commit(**RPC)
        outbox.publish_now(self.db, self.publisher, self.events)
        for callback in self.callbacks:
            try:
                callback()
            except Exception as err:  # noqa: BLE001 (the commit is done: never fail it now)
                log.warning("after-commit step failed", fault=type(err).__name__)


def _document(snapshot: Any) -> Document | None:
    if not snapshot.exists:
        return None
    return Document(snapshot.id, snapshot.to_dict(), snapshot.update_time)


class FirestoreUnitsOfWork:
    """Runs a service's attempts against Firestore under one retry policy."""

    def __init__(
        self,
        db: firestore.Client,
        publisher: EventPublisher | None,
        policy: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.policy = policy
        self._sleep = sleep
        self._rng = rng or random.Random()

    def begin(self, idem: IdempotencyScope | None = None) -> FirestoreUnitOfWork:
        return FirestoreUnitOfWork(self.db, self.publisher, idem)

    def reader(self) -> FirestoreUnitOfWork:
        return self.begin()

    def run(
        self,
        attempt: Callable[[UnitOfWork], T],
        *,
        gave_up: Callable[[], Exception],
        idem: IdempotencyScope | None = None,
        on_conflict: Callable[[UnitOfWork], T | None] | None = None,
        policy: RetryPolicy | None = None,
    ) -> T:
        return run_attempts(
            self.begin,
            attempt,
            gave_up=gave_up,
            idem=idem,
            on_conflict=on_conflict,
            policy=policy or self.policy,
            sleep=self._sleep,
            rng=self._rng,
        )


def run_attempts(
    begin: Callable[[IdempotencyScope | None], UnitOfWork],
    attempt: Callable[[UnitOfWork], T],
    *,
    gave_up: Callable[[], Exception],
    idem: IdempotencyScope | None,
    on_conflict: Callable[[UnitOfWork], T | None] | None,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    rng: random.Random,
) -> T:
    """The one retry loop: read, decide, stage, commit; again from the reads when stale.

    With an idempotency key, every setback first asks whether a request with the same key
    committed meanwhile (two copies of one request racing): if so, its answer is the answer.
    """

    def replay_if_committed(uow: UnitOfWork) -> None:
        if idem is not None:
            stored = idem.stored(uow)
            if stored is not None:
                raise IdempotentReplay(stored) from None

    for number in range(policy.attempts):
        uow = begin(idem)
        try:
            result = attempt(uow)
        except DomainError:
            if number > 0:  # the world changed since the first read: by our own twin?
                replay_if_committed(uow)
            raise
        try:
            uow.commit()
        except gexc.Conflict:
            # A create() found its document: first, was it our key's earlier request?
            replay_if_committed(uow)
            if on_conflict is not None:
                resolved = on_conflict(uow)
                if resolved is not None:
                    return resolved
                continue  # the resolver learnt what was taken: decide again at once
            sleep(policy.delay_s(number, rng))
            continue
        except policy.retried:
            replay_if_committed(uow)
            sleep(policy.delay_s(number, rng))
            continue
        return result
    raise gave_up()
