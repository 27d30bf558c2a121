"""Rendering of the benchmark report: tables, the text chart, and a whole report."""

from __future__ import annotations

import io

from bench.progress import Progress, counter_text
from bench.report import bar_chart, cpu_rows, ratio, render, table, targets


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


def _hot(per_second: float, document: str = "availability/pt-00001") -> dict:
    return {
        "hottest": {
            "document": document,
            "writes_in_window": int(per_second * 10),
            "window_s": 10.0,
            "writes_per_s": per_second,
            "writes_in_run": 40,
        }
    }


def _cpu(gateway: float) -> dict:
    return {
        "wall_s": 10.0,
        "cores": {"Firestore emulator": 0.6, "gateway": gateway, "bench process": 0.1},
        "machine_busy_cores": 1.9,
        "cpus": 2,
    }


def _crowd(bookers: int, seats: int, wall_s: float, hot: float) -> dict:
    return {
        "bookers": bookers,
        "points": seats // 100,
        "seats": seats,
        "booked": seats,
        "refused_full": bookers - seats,
        "unanswered": 0,
        "refused_while_free": 0,
        "resets": 0,
        "retries_503": 3,
        "wall_s": wall_s,
        "p50_s": 1.5,
        "p99_s": 4.0,
        "commit_attempts_per_winner": 1.3,
        "failed_commits": 30,
        "hot": _hot(hot),
        "cpu": _cpu(0.8),
    }


def _results() -> dict:
    cost = {
        "samples": 2,
        "reads": 3.0,
        "queries": 3.0,
        "empty_queries": 2.0,
        "aggregations": 1.0,
        "billed_reads": 6.0,
        "writes": 7.0,
        "billed_writes": 6.0,
        "billed_deletes": 1.0,
        "commits": 2.0,
        "p50_ms": 50.0,
    }
    kind = {
        "issued": 100,
        "skipped": 0,
        "p50_ms": 10.0,
        "p99_ms": 200.0,
        "failed": 0,
        "retries_503": 0,
        "resets": 0,
        "outcomes": {"ok": 100},
    }
    return {
        "mode": "quick",
        "command": "python -m bench --quick",
        "started_at": "2026-01-01T00:00:00",
        "run_time_s": 90,
        "machine": {"nproc": 2, "cpu_model": "CPU", "memory_gib": 8, "python": "3.11"},
        "load": {"machine_busy_share": 0.5},
        "ceiling": {
            "gets_per_s_c1": 200.0,
            "gets_per_s_c8": 400.0,
            "writes_per_s_c8": 300.0,
            "queries": [{"documents": 20_000, "queries_per_s_c8": 19.0, "p50_ms_c8": 380.0}],
        },
        "crowd": {"runs": [_crowd(1000, 100, 5.5, 0.9), _crowd(5000, 500, 41.0, 1.2)]},
        "search": {
            "country": {"points": 7020, "slots": 1_008_000},
            "warm_up_s": 20.0,
            "warm_up_documents": {"reads": 14042},
            "sequential": {
                "reads_per_search": 0.0,
                "reads_max": 0,
                "billed_reads_per_search": 0.02,
                "p50_ms": 5.0,
                "items_per_page": 5.0,
            },
            "levels": [
                {
                    "connections": c,
                    "requests_per_s": r,
                    "p50_ms": 20.0,
                    "p90_ms": 60.0,
                    "p99_ms": p99,
                    "failed": 0,
                    "reads_per_search": 0.0,
                    "billed_reads_per_search": 0.002,
                    "cpu": _cpu(1.5),
                }
                for c, r, p99 in ((8, 800.0, 40.0), (64, 1000.0, 240.0))
            ],
        },
        "booking": {
            "cost": {"book_single_dose": cost, "book_two_doses": cost},
            "uncontended": [
                {
                    "clients": c,
                    "bookings_per_s": b,
                    "p50_ms": 50.0,
                    "p99_ms": 90.0,
                    "succeeded": 300,
                    "refused_full": 0,
                    "failed": 0,
                    "writes_per_booking": 7.0,
                    "commit_attempts_per_booking": 2.0,
                    "hot": _hot(0.3),
                    "cpu": _cpu(0.4),
                }
                for c, b in ((8, 40.0), (32, 55.0))
            ],
        },
        "peak": {
            "duration_s": 300.0,
            "rates": {"search": 950.0, "book": 34.0},
            "failed": 0,
            "reads_per_s": 20.0,
            "writes_per_s": 300.0,
            "generator_lag_p99_ms": 3.0,
            "drain_s": 0.2,
            "hot": _hot(0.8),
            "cpu": _cpu(1.7),
            "kinds": {
                "search": kind | {"answered_per_s": 940.0},
                "book": kind | {"answered_per_s": 34.0},
            },
        },
    }


def test_render_has_every_section_and_the_ratios() -> None:
    text = render(_results())
    for heading in (
        "## Targets",
        "Emulator ceiling",
        "The opening: everybody at once",
        "Search: wrk against 7,020 points, 1,008,000 slots",
        "documents per operation",
        "no contention",
        "The peak hour, open loop (300 s)",
        "Where the CPU went",
        "What it means at the original's peak",
    ):
        assert heading in text, heading
    assert "| 64 | 1,000 | 2.50 | 20.00 | 60.00 | 240 | 0 | 0.00 | 0.002 |" in text
    assert "| 1,000 | 1 x 100 | 100 | 900 | 0 | 0 | 0 | 0 | 3 | 5.50 |" in text
    assert "1.3 (30 failed)" in text
    assert "| 20,000 | 19.00 | 380 |" in text  # the emulator's query ceiling
    assert "| search | 950 | 940 | 100 | 0 | 10.00 | 200 | 0 | 0 | 0 | ok 100 |" in text


def test_targets_are_judged_not_enforced() -> None:
    rows = {row[0]: row for row in targets(_results())}
    assert rows["crowd 1,000 on 100 seats"][3] == "met"  # 5.5 s <= 6 s, exact
    assert rows["crowd 5,000 on 500 seats"][3] == "NOT met"  # 41 s > 30 s
    hottest = rows["hottest document (most writes in any 10 s, / 10)"]
    assert hottest[2].startswith("1.2/s") and hottest[3] == "NOT met"
    assert rows["search, 64 connections (wrk)"][3] == "met"
    assert rows["bookings with no contention"][3] == "NOT met"  # 55/s < 60/s
    assert rows["peak mix for 5 min (open loop)"][3] == "met"  # 940 >= 95% of 950, 0 failed
    failing = _results()
    failing["peak"]["failed"] = 1
    assert {r[0]: r for r in targets(failing)}["peak mix for 5 min (open loop)"][3] == "NOT met"
    slow = _results()
    slow["peak"]["kinds"]["search"]["answered_per_s"] = 900.0
    assert {r[0]: r for r in targets(slow)}["peak mix for 5 min (open loop)"][3] == "NOT met"


def test_cpu_rows_name_every_measured_phase() -> None:
    names = [name for name, _ in cpu_rows(_results())]
    assert names == [
        "crowd 1,000",
        "crowd 5,000",
        "search c=8",
        "search c=64",
        "booking 8 clients",
        "booking 32 clients",
        "peak mix",
    ]
    text = render(_results())
    assert "| phase | Firestore emulator | gateway | bench process | others |" in text
    assert "| peak mix | 0.60 | 1.70 | 0.10 | – | 1.90 | 2 |" in text


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
