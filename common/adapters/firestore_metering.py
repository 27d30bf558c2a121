"""Exact counts of Firestore documents read and written, from the RPCs themselves.

Wraps one client's GAPIC methods: every document in a BatchGetDocuments or RunQuery response
is a read (a missing document in a get is billed as a read too), every write in a Commit or
BatchWrite request is a write. Used by the tests and the benchmarks, so that "documents read
per search" and "documents written per booking" are counted, never guessed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore


@dataclass(frozen=True)
class DocumentCounts:
    reads: int = 0
    writes: int = 0
    queries: int = 0
    commits: int = 0

    def __sub__(self, other: DocumentCounts) -> DocumentCounts:
        return DocumentCounts(
            self.reads - other.reads,
            self.writes - other.writes,
            self.queries - other.queries,
            self.commits - other.commits,
        )


class DocumentMeter:
    def __init__(self, client: firestore.Client) -> None:
        self._lock = threading.Lock()
        self._reads = self._writes = self._queries = self._commits = 0
        api = client._firestore_api
        api.batch_get_documents = self._count_stream(api.batch_get_documents, self._on_get)
        api.run_query = self._count_stream(api.run_query, self._on_query)
        api.commit = self._count_call(api.commit, "writes")
        api.batch_write = self._count_call(api.batch_write, "writes")

    def counts(self) -> DocumentCounts:
        with self._lock:
            return DocumentCounts(self._reads, self._writes, self._queries, self._commits)

    def _on_get(self, response: Any) -> None:
        if response.found or response.missing:
            with self._lock:
                self._reads += 1

    def _on_query(self, response: Any) -> None:
        if response.document and response.document.name:
            with self._lock:
                self._reads += 1

    def _count_stream(self, method: Callable[..., Any], on_item: Callable[[Any], None]):
        meter = self
        is_query = on_item == self._on_query

        def wrapped(*args: Any, **kwargs: Any) -> _CountingStream:
            if is_query:
                with meter._lock:
                    meter._queries += 1
            return _CountingStream(method(*args, **kwargs), on_item)

        return wrapped

    def _count_call(self, method: Callable[..., Any], _: str):
        meter = self

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            request = kwargs.get("request") or (args[0] if args else None)
            writes = len(getattr(request, "writes", None) or (request or {}).get("writes", []))
            response = method(*args, **kwargs)
            with meter._lock:
                meter._writes += writes
                meter._commits += 1
            return response

        return wrapped


class _CountingStream:
    """Iterates a server stream, counting items; anything else goes to the real stream."""

    def __init__(self, stream: Any, on_item: Callable[[Any], None]) -> None:
        self._stream = stream
        self._iterator: Iterator[Any] | None = None
        self._on_item = on_item

    def __iter__(self) -> _CountingStream:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = iter(self._stream)
        item = next(self._iterator)
        self._on_item(item)
        return item

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
