"""The hottest document over merged per-process write logs (bench/hot.py), and the meter's
part in it: failed commits counted, written documents handed out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.hot import hottest, merge, parse_log, peak_in_window, read_logs, summary, within
from common.adapters.firestore_metering import DocumentCounts, DocumentMeter
from emulator.serve import WritesLog


def test_peak_in_window_slides_over_any_start() -> None:
    # 1 write a second for 30 s: any 10 s window holds at most 10.
    assert peak_in_window([float(t) for t in range(30)], 10.0) == 10
    # A burst: 5 writes within half a second, then quiet.
    assert peak_in_window([100.0, 100.1, 100.2, 100.3, 100.4, 150.0], 10.0) == 5
    # Window edges: writes exactly 10 s apart are not in one window of 10 s.
    assert peak_in_window([0.0, 10.0], 10.0) == 1
    assert peak_in_window([0.0, 9.999], 10.0) == 2
    assert peak_in_window([], 10.0) == 0
    # Order does not matter.
    assert peak_in_window([5.0, 1.0, 3.0, 2.0, 4.0], 2.5) == 3


def test_the_hottest_document_is_found_across_merged_processes() -> None:
    # Two gateway workers write the same point's document; neither alone is the hottest.
    worker_a = {"availability/pt-1": [0.0, 2.0, 4.0, 6.0], "seats/s1_0": [1.0]}
    worker_b = {"availability/pt-1": [1.0, 3.0, 5.0, 7.0], "availability/pt-2": [0.0, 0.5, 1.0]}
    folder = {"availability/pt-2": [1.5, 2.0]}
    merged = merge(worker_a, worker_b, folder)
    ranked = hottest(merged, window_s=10.0)
    assert [(h.name, h.writes) for h in ranked] == [
        ("availability/pt-1", 8),
        ("availability/pt-2", 5),
        ("seats/s1_0", 1),
    ]
    assert ranked[0].per_second == pytest.approx(0.8)
    assert ranked[0].min_gap_s == pytest.approx(1.0)
    assert ranked[1].min_gap_s == pytest.approx(0.5)
    assert ranked[2].min_gap_s is None
    assert ranked[0].as_dict()["writes_per_s"] == 0.8


def test_ties_are_broken_deterministically() -> None:
    ranked = hottest({"b": [0.0], "a": [0.0], "c": [0.0, 20.0]}, window_s=10.0)
    assert [h.name for h in ranked] == ["c", "a", "b"]  # same peak: more writes, then the name


def test_within_keeps_only_the_phase() -> None:
    series = {"x": [1.0, 5.0, 9.0], "y": [20.0]}
    assert within(series, 2.0, 9.0) == {"x": [5.0, 9.0]}
    assert within(series, None, 1.0) == {"x": [1.0]}
    assert within(series) == series


def test_log_lines_are_parsed_and_a_torn_line_skipped() -> None:
    lines = [
        "1000000000 availability/pt-1\n",
        "1500000000 seats/pt-1_20261203_1000_jcovden_7\n",
        "2000000000 availability/pt-1\n",
        "25000",  # a worker killed in the middle of a line
        "\n",
    ]
    assert parse_log(lines) == {
        "availability/pt-1": [1.0, 2.0],
        "seats/pt-1_20261203_1000_jcovden_7": [1.5],
    }


def test_workers_logs_are_read_and_merged(tmp_path: Path) -> None:
    meter = tmp_path / "documents-bench-x"
    first = WritesLog(WritesLog.path_for(meter, 101))
    second = WritesLog(WritesLog.path_for(meter, 202))
    first.append(["projects/p/databases/(default)/documents/availability/pt-1"], 1_000_000_000)
    second.append(["availability/pt-1", "seats/a_0"], 3_000_000_000)
    (tmp_path / "unrelated.writes.1").write_text("5 availability/pt-1\n")
    series = read_logs(meter)
    assert series == {"availability/pt-1": [1.0, 3.0], "seats/a_0": [3.0]}
    report = summary(series, window_s=10.0)
    assert report["hottest"]["document"] == "availability/pt-1"
    assert report["hottest"]["writes_in_window"] == 2
    assert report["writes"] == 3 and report["documents_written"] == 2
    assert summary({})["hottest"] is None


class _Api:
    """The few GAPIC methods DocumentMeter wraps; commit fails when told to."""

    def __init__(self) -> None:
        self.fail = False

    def batch_get_documents(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def run_query(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def run_aggregation_query(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def commit(self, request: dict[str, Any]) -> str:
        if self.fail:
            raise RuntimeError("ALREADY_EXISTS")
        return "ok"

    def batch_write(self, request: dict[str, Any]) -> str:
        return "ok"


class _Client:
    def __init__(self) -> None:
        self._firestore_api = _Api()


def _writes(*names: str) -> dict[str, Any]:
    prefix = "projects/p/databases/(default)/documents/"
    return {"writes": [{"update": {"name": prefix + n}} for n in names]}


def test_a_commit_that_raises_is_counted_as_a_failed_attempt_and_writes_nothing() -> None:
    client = _Client()
    meter = DocumentMeter(client, track_documents=True)  # type: ignore[arg-type]
    api = client._firestore_api
    api.commit(request=_writes("seats/a_0", "availability/pt-1"))
    api.fail = True
    with pytest.raises(RuntimeError):
        api.commit(request=_writes("seats/a_0"))
    counts = meter.counts()
    assert counts == DocumentCounts(writes=2, commits=1, failed_commits=1)
    assert counts.commits + counts.failed_commits == 2
    written = meter.written()
    assert set(written) == {"seats/a_0", "availability/pt-1"}
    assert all(len(times) == 1 for times in written.values())
    assert meter.hottest(10.0) is not None


def test_the_gateway_meter_logs_every_written_document(tmp_path: Path) -> None:
    from emulator.serve import SharedDocumentCounts, meter_into

    counts = SharedDocumentCounts.create(tmp_path / "documents")
    log = WritesLog(WritesLog.path_for(tmp_path / "documents"))
    client = _Client()
    meter_into(client, counts, log)
    client._firestore_api.commit(request=_writes("availability/pt-1", "seats/x_1"))
    client._firestore_api.fail = True
    with pytest.raises(RuntimeError):
        client._firestore_api.commit(request=_writes("seats/x_2"))
    assert counts.counts() == DocumentCounts(writes=2, commits=1, failed_commits=1)
    series = read_logs(tmp_path / "documents")
    assert set(series) == {"availability/pt-1", "seats/x_1"}
