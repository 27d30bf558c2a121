"""Rendering of the benchmark report: tables, the text chart, and a whole report."""

from __future__ import annotations

import io

from bench.progress import Progress, counter_text
from bench.report import bar_chart, ratio, render, table


def test_table_is_markdown_with_readable_numbers() -> None:
    text = table(
        ["points", "reads", "p50 ms", "note"], [[7000, 5.0, 1234.5, "a|b"], [1, None, 0.25, "x"]]
    )
    lines = text.splitlines()
    assert lines[0] == "| points | reads | p50 ms | note |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2] == "| 7,000 | 5.00 | 1,234 | a\\|b |"
    assert lines[3] == "| 1 | – | 0.25 | x |"


def test_bar_chart_scales_to_the_longest_bar() -> None:
    chart = bar_chart([("c=1", 10.0), ("c=8", 40.0), ("c=32", 0.0)], width=8, unit="/s")
    lines = chart.splitlines()
    assert lines[0] == "c=1  │██ 10.0/s"
    assert lines[1] == "c=8  │████████ 40.0/s"
    assert lines[2] == "c=32 │ 0.0/s"
    assert bar_chart([]) == ""


def test_ratio() -> None:
    assert ratio(50, 200) == 0.25
    assert ratio(None, 200) is None
    assert ratio(5, 0) is None


def _results() -> dict:
    cost = {
        "samples": 2,
        "reads": 2.0,
        "queries": 2.0,
        "empty_queries": 1.0,
        "billed_reads": 3.0,
        "writes": 8.0,
        "billed_deletes": 1.0,
        "commits": 3.0,
        "p50_ms": 50.0,
    }
    throughput = {
        "layer": "service",
        "concurrency": 8,
        "ops_per_s": 100.0,
        "p50_ms": 5.0,
        "p99_ms": 9.0,
        "reads_per_search": 5.0,
        "outcomes": {"ok": 10, "x": 1},
    }
    return {
        "mode": "quick",
        "command": "python -m bench --quick",
        "started_at": "2026-01-01T00:00:00",
        "run_time_s": 90,
        "machine": {"nproc": 2, "cpu_model": "CPU", "memory_gib": 8, "python": "3.11"},
        "load": {"machine_busy_share": 0.5},
        "ceiling": {"gets_per_s_c1": 200.0, "gets_per_s_c8": 400.0, "writes_per_s_c8": 300.0},
        "search": {
            "dataset_for_throughput": 7000,
            "sizes": [
                {
                    "points": p,
                    "slots": p * 144,
                    "cold_reads": 9,
                    "reads_per_search_mean": 5.0,
                    "reads_per_search_max": 5,
                    "writes_per_search": 0.0,
                    "sequential_p50_ms": 4.0,
                    "sequential_p99_ms": 9.0,
                }
                for p in (100, 1000, 7000)
            ],
            "throughput": [throughput],
        },
        "booking": {
            "cost": {"book_single_dose": cost},
            "rush": [
                {
                    "bookers": 144,
                    "seats": 48,
                    "succeeded": 48,
                    "refused_full": 96,
                    "failed": 0,
                    "oversold": 0,
                    "elapsed_s": 3.0,
                    "bookings_per_s": 16.0,
                    "p50_ms": 100.0,
                    "p99_ms": 300.0,
                    "attempts_mean": 1.5,
                }
            ],
            "many": [
                {
                    "concurrency": 8,
                    "bookings_per_s": 30.0,
                    "p50_ms": 50.0,
                    "p99_ms": 90.0,
                    "succeeded": 300,
                    "refused_full": 0,
                    "failed": 0,
                    "writes_per_booking": 8.0,
                }
            ],
        },
        "peak": {
            "duration_s": 180,
            "concurrency": 32,
            "points": 1000,
            "ops_per_s": 40.0,
            "p50_ms": 100.0,
            "p99_ms": 500.0,
            "failed": 0,
            "reads_per_s": 200.0,
            "writes_per_s": 90.0,
            "kinds": {
                "search": {
                    "operations": 10,
                    "per_s": 95.0,
                    "p50_ms": 1.0,
                    "p99_ms": 2.0,
                    "outcomes": {"ok": 10},
                },
                "book": {
                    "operations": 3,
                    "per_s": 33.9,
                    "p50_ms": 1.0,
                    "p99_ms": 2.0,
                    "outcomes": {"ok": 3},
                },
            },
        },
    }


def test_render_has_every_section_and_the_ratios() -> None:
    text = render(_results())
    for heading in (
        "Emulator ceiling",
        "documents read per search",
        "Search throughput",
        "documents per operation",
        "ONE point-day",
        "many point-days",
        "Compressed national peak",
    ):
        assert heading in text
    assert "| service | 8 | 100 | 0.25 |" in text  # 100 searches/s over 400 gets/s
    assert "searches 10% of 950/s" in text
    assert "bookings 100% of 33.9/s" in text
    assert "| 144 | 48 | 48 | 96 | 0 | 0 |" in text


def test_render_survives_missing_scenarios() -> None:
    text = render({"mode": "quick", "machine": {}, "load": {}})
    assert text.startswith("# Benchmark results (quick mode)")


def test_progress_writes_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(stream, interval_s=0)
    progress.update("seeding: 1/2")
    progress.done("seeded")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("seeding: 1/2") and lines[1].endswith("seeded")
    assert counter_text("patients", 250, 1000) == "patients: 250/1,000 (25%)"
