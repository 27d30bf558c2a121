"""What Firestore bills beyond the DocumentMeter's document counts, counted the same way.

The shared DocumentMeter (common/adapters/firestore_metering.py) counts documents returned
and writes committed. Two billing rules need more, and are counted here from the RPCs too:
- a query that returns no document is billed one read (Firestore's minimum per query);
- a delete is billed as a delete (a third of a write's list price), not as a write.
Install it on the same client after the DocumentMeter; it wraps the meter's wrappers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore


@dataclass(frozen=True)
class BillingCounts:
    empty_queries: int = 0
    deletes: int = 0

    def __sub__(self, other: BillingCounts) -> BillingCounts:
        return BillingCounts(self.empty_queries - other.empty_queries, self.deletes - other.deletes)


class BillingMeter:
    def __init__(self, client: firestore.Client) -> None:
        self._lock = threading.Lock()
        self._empty = 0
        self._deletes = 0
        api = client._firestore_api
        api.run_query = self._watch_query(api.run_query)
        api.commit = self._watch_commit(api.commit)

    def counts(self) -> BillingCounts:
        with self._lock:
            return BillingCounts(self._empty, self._deletes)

    def _watch_query(self, method: Callable[..., Any]):
        meter = self

        def wrapped(*args: Any, **kwargs: Any) -> Iterator[Any]:
            return _EmptyWatch(method(*args, **kwargs), meter)

        return wrapped

    def _watch_commit(self, method: Callable[..., Any]):
        meter = self

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            request = kwargs.get("request") or (args[0] if args else None)
            writes = getattr(request, "writes", None) or (request or {}).get("writes", [])
            deletes = sum(1 for w in writes if _is_delete(w))
            response = method(*args, **kwargs)
            with meter._lock:
                meter._deletes += deletes
            return response

        return wrapped

    def _query_done(self, found: bool) -> None:
        if not found:
            with self._lock:
                self._empty += 1


def _is_delete(write: Any) -> bool:
    if isinstance(write, dict):
        return bool(write.get("delete"))
    return bool(getattr(write, "delete", ""))


class _EmptyWatch:
    def __init__(self, stream: Any, meter: BillingMeter) -> None:
        self._stream = stream
        self._iterator: Iterator[Any] | None = None
        self._meter = meter
        self._found = False
        self._reported = False

    def __iter__(self) -> _EmptyWatch:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = iter(self._stream)
        try:
            item = next(self._iterator)
        except StopIteration:
            if not self._reported:
                self._reported = True
                self._meter._query_done(self._found)
            raise
        if item.document and item.document.name:
            self._found = True
        return item

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
