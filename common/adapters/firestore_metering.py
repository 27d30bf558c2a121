"""Exact counts of Firestore documents read and written, from the RPCs themselves.

Wraps one client's GAPIC methods: every document in a BatchGetDocuments or RunQuery response
is a read (a missing document in a get is billed as a read too), every write in a Commit or
BatchWrite request is a write (deletes are also counted on their own: they are priced apart),
and a query that returns nothing is counted as an empty query (billed one read); an
aggregation (a count) is billed one read per 1,000 index entries it counts, which for our counts
(one slot's seats) is one. Used by the tests and the benchmarks, so that "documents read per
search" and "documents written per booking" are counted, never guessed.

With `track_documents=True` it also keeps when each document was written, so that a benchmark
can name the hottest document and its highest write rate over any 10 seconds (production
Firestore sustains about one write a second per document); `written()` hands those times out,
and a subclass may send them elsewhere (`_written_documents`: the benchmarks' gateway workers
append them to a file each, emulator/serve.py).

A Commit that raises (a create() that found its document, a failed precondition, a timeout)
wrote nothing: it is not in `commits` or `writes`, but it is counted in `failed_commits`, so
that commits + failed_commits is every commit attempted.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from google.cloud import firestore


@dataclass(frozen=True)
class DocumentCounts:
    reads: int = 0
    writes: int = 0
    queries: int = 0
    commits: int = 0
    empty_queries: int = 0
    deletes: int = 0
    aggregations: int = 0
    failed_commits: int = 0  # Commit or BatchWrite calls that raised: attempted, nothing written

    def __sub__(self, other: DocumentCounts) -> DocumentCounts:
        return DocumentCounts(
            *(getattr(self, f.name) - getattr(other, f.name) for f in fields(self))
        )

    @property
    def billed_reads(self) -> int:
        """Firestore bills at least one read per query, even one that finds nothing."""
        return self.reads + self.empty_queries + self.aggregations

    @property
    def billed_writes(self) -> int:
        return self.writes - self.deletes


@dataclass(frozen=True)
class HotDocument:
    """The document written most often in some window: its name and writes per second."""

    name: str
    writes: int
    window_s: float

    @property
    def per_second(self) -> float:
        return self.writes / self.window_s


class DocumentMeter:
    def __init__(self, client: firestore.Client, *, track_documents: bool = False) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {f.name: 0 for f in fields(DocumentCounts)}
        self._track = track_documents
        self._written: dict[str, list[float]] = {}
        api = client._firestore_api
        api.batch_get_documents = self._count_stream(api.batch_get_documents, query=False)
        api.run_query = self._count_stream(api.run_query, query=True)
        api.run_aggregation_query = self._count_aggregation(api.run_aggregation_query)
        api.commit = self._count_writes(api.commit)
        api.batch_write = self._count_writes(api.batch_write)

    def hottest(self, window_s: float = 10.0) -> HotDocument | None:
        """The document with the most writes inside any `window_s` seconds, and that count."""
        best: HotDocument | None = None
        with self._lock:
            series = {name: list(times) for name, times in self._written.items()}
        for name, times in series.items():
            times.sort()
            window: deque[float] = deque()
            peak = 0
            for moment in times:
                window.append(moment)
                while window[0] < moment - window_s:
                    window.popleft()
                peak = max(peak, len(window))
            if best is None or peak > best.writes:
                best = HotDocument(name.split("/documents/", 1)[-1], peak, window_s)
        return best

    def written(self) -> dict[str, list[float]]:
        """With track_documents: each written document's name (relative to the database)
        and the time.monotonic() seconds of its writes, a copy."""
        with self._lock:
            return {
                name.split("/documents/", 1)[-1]: list(times)
                for name, times in self._written.items()
            }

    def _written_documents(self, names: list[str], moment_ns: int) -> None:
        """With track_documents, after every successful commit: the documents it wrote and
        when (time.monotonic_ns(), CLOCK_MONOTONIC: comparable across processes)."""
        moment = moment_ns / 1e9
        with self._lock:
            for name in names:
                self._written.setdefault(name, []).append(moment)

    def _count_aggregation(self, method: Callable[..., Any]):
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self._add(aggregations=1)
            return method(*args, **kwargs)

        return wrapped

    def counts(self) -> DocumentCounts:
        with self._lock:
            return DocumentCounts(**self._counts)

    def _add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._counts[name] += delta

    def _count_stream(self, method: Callable[..., Any], *, query: bool):
        def wrapped(*args: Any, **kwargs: Any) -> _CountingStream:
            if query:
                self._add(queries=1)
            return _CountingStream(method(*args, **kwargs), self, query=query)

        return wrapped

    def _count_writes(self, method: Callable[..., Any]):
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            request = kwargs.get("request") or (args[0] if args else None)
            writes = getattr(request, "writes", None) or (request or {}).get("writes", [])
            deletes = sum(1 for w in writes if _is_delete(w))
            try:
                response = method(*args, **kwargs)
            except BaseException:
                self._add(failed_commits=1)
                raise
            self._add(writes=len(writes), deletes=deletes, commits=1)
            if self._track:
                self._written_documents(
                    [_document_name(write) for write in writes], time.monotonic_ns()
                )
            return response

        return wrapped


def _document_name(write: Any) -> str:
    if isinstance(write, dict):
        update = write.get("update") or {}
        return str(write.get("delete") or update.get("name") or write.get("transform", {}))
    return str(
        getattr(write, "delete", "")
        or getattr(getattr(write, "update", None), "name", "")
        or getattr(getattr(write, "transform", None), "document", "")
    )


def _is_delete(write: Any) -> bool:
    if isinstance(write, dict):
        return bool(write.get("delete"))
    return bool(getattr(write, "delete", None))


class _CountingStream:
    """Iterates a server stream, counting documents; anything else goes to the real stream."""

    def __init__(self, stream: Any, meter: DocumentMeter, *, query: bool) -> None:
        self._stream = stream
        self._iterator: Iterator[Any] | None = None
        self._meter = meter
        self._query = query
        self._documents = 0

    def __iter__(self) -> _CountingStream:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = iter(self._stream)
        try:
            item = next(self._iterator)
        except StopIteration:
            if self._query and self._documents == 0:
                self._meter._add(empty_queries=1)
            raise
        if self._query:
            found = bool(item.document and item.document.name)
        else:
            found = bool(item.found or item.missing)
        if found:
            self._documents += 1
            self._meter._add(reads=1)
        return item

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
