"""The benchmark's pure statistics: percentiles and phase summaries."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.stats import PhaseResult, per_operation, percentile, rate


def test_percentile_interpolates_like_numpy_linear() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4], 0) == 1
    assert percentile([1, 2, 3, 4], 100) == 4
    assert percentile([10, 20, 30, 40, 50], 90) == pytest.approx(46.0)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


def test_percentile_ignores_input_order_and_handles_edges() -> None:
    assert percentile([5, 1, 4, 2, 3], 50) == 3
    assert percentile([7], 99) == 7
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_rate_and_per_operation_never_divide_by_zero() -> None:
    assert rate(10, 2.0) == 5.0
    assert rate(10, 0.0) == 0.0
    assert per_operation(16, 2) == 8.0
    assert per_operation(5, 0) is None


def test_phase_summary_counts_successes_and_latencies_in_ms() -> None:
    phase = PhaseResult("book", 4, 2.0, [0.010, 0.020, 0.030, 0.040], Counter(ok=3, refused_full=1))
    summary = phase.summary()
    assert summary["operations"] == 4
    assert summary["ops_per_s"] == 2.0
    assert summary["succeeded_per_s"] == 1.5
    assert summary["p50_ms"] == 25.0
    assert summary["max_ms"] == 40.0
    assert summary["outcomes"] == {"ok": 3, "refused_full": 1}
