"""Rendering results: a short Markdown report with tables and a text chart (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ORIGINAL_SEARCHES_PER_S = 950
ORIGINAL_BOOKINGS_PER_H = 122_000
ORIGINAL_BOOKINGS_PER_DAY = 880_000


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def bar_chart(pairs: Sequence[tuple[str, float]], width: int = 40, unit: str = "") -> str:
    """A horizontal text bar chart; the longest bar is `width` characters."""
    if not pairs:
        return ""
    top = max(v for _, v in pairs) or 1.0
    label_width = max(len(k) for k, _ in pairs)
    lines = []
    for label, value in pairs:
        bar = "█" * max(1 if value > 0 else 0, round(width * value / top))
        lines.append(f"{label.ljust(label_width)} │{bar} {value:,.1f}{unit}")
    return "\n".join(lines)


def ratio(value: float | None, base: float | None) -> float | None:
    if not value or not base:
        return None
    return round(value / base, 3)


def render(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    load = results.get("load", {})
    out = [
        f"# Benchmark results ({results.get('mode', '?')} mode)",
        "",
        f"Run {results.get('started_at')} with `{results.get('command')}`, "
        f"{results.get('run_time_s', 0):.0f} s in all. Machine: {m.get('nproc')} CPU "
        f"({m.get('cpu_model')}), {m.get('memory_gib')} GiB, Python {m.get('python')}, "
        f"Firestore emulator {m.get('firestore_emulator')}, Pub/Sub emulator "
        f"{m.get('pubsub_emulator')}, {m.get('java')}. Whole machine busy "
        f"{_pct(load.get('machine_busy_share'))} during the run (load average at start "
        f"{m.get('loadavg_at_start')}, at end {load.get('loadavg_at_end')}): figures from a "
        "shared machine are read as ratios to the emulator ceiling below.",
    ]
    ceiling = results.get("ceiling")
    if ceiling:
        out += [
            "",
            "## Emulator ceiling (plain single-document operations, one client)",
            "",
            table(
                ["threads", "gets/s", "get p50 ms", "writes/s", "write p50 ms"],
                [
                    [
                        t,
                        ceiling.get(f"gets_per_s_c{t}"),
                        ceiling.get(f"get_p50_ms_c{t}"),
                        ceiling.get(f"writes_per_s_c{t}"),
                        ceiling.get(f"write_p50_ms_c{t}"),
                    ]
                    for t in (1, 8)
                ],
            ),
        ]
    get_ceiling = (ceiling or {}).get("gets_per_s_c8")
    write_ceiling = (ceiling or {}).get("writes_per_s_c8")
    search = results.get("search")
    if search:
        out += [
            "",
            "## Search: documents read per search as the country grows (service layer, exact)",
            "",
            table(
                [
                    "points",
                    "slots",
                    "cold reads",
                    "reads/search (mean)",
                    "max",
                    "writes",
                    "p50 ms",
                    "p99 ms",
                ],
                [
                    [
                        r["points"],
                        r["slots"],
                        r["cold_reads"],
                        r["reads_per_search_mean"],
                        r["reads_per_search_max"],
                        r["writes_per_search"],
                        r["sequential_p50_ms"],
                        r["sequential_p99_ms"],
                    ]
                    for r in search["sizes"]
                ],
            ),
            "",
            f"## Search throughput ({search['dataset_for_throughput']:,} points)",
            "",
            table(
                [
                    "layer",
                    "concurrency",
                    "searches/s",
                    "x get ceiling",
                    "p50 ms",
                    "p99 ms",
                    "reads/search",
                    "failed",
                ],
                [
                    [
                        r["layer"],
                        r["concurrency"],
                        r["ops_per_s"],
                        ratio(r["ops_per_s"], get_ceiling),
                        r["p50_ms"],
                        r["p99_ms"],
                        r["reads_per_search"],
                        sum(n for k, n in r["outcomes"].items() if k not in ("ok", "empty")),
                    ]
                    for r in search["throughput"]
                ],
            ),
            "",
            "```text",
            bar_chart(
                [
                    (f"{r['layer']} c={r['concurrency']}", r["ops_per_s"])
                    for r in search["throughput"]
                ],
                unit=" searches/s",
            ),
            "```",
        ]
    booking = results.get("booking")
    if booking:
        out += [
            "",
            "## Booking: documents per operation (HTTP, one at a time, exact)",
            "",
            table(
                [
                    "operation",
                    "samples",
                    "docs read",
                    "queries (empty)",
                    "billed reads",
                    "writes",
                    "of which deletes",
                    "commits",
                    "p50 ms",
                ],
                [
                    [
                        k,
                        v["samples"],
                        v["reads"],
                        f"{v['queries']} ({v['empty_queries']})",
                        v["billed_reads"],
                        v["writes"],
                        v["billed_deletes"],
                        v["commits"],
                        v["p50_ms"],
                    ]
                    for k, v in booking["cost"].items()
                ],
            ),
            "",
            "## Booking rush: everyone at once on ONE point-day (HTTP)",
            "",
            table(
                [
                    "bookers",
                    "seats",
                    "succeeded",
                    "refused (full)",
                    "failed",
                    "oversold",
                    "wall s",
                    "bookings/s",
                    "p50 ms",
                    "p99 ms",
                    "tries/booker",
                ],
                [
                    [
                        r["bookers"],
                        r["seats"],
                        r["succeeded"],
                        r["refused_full"],
                        r["failed"],
                        r["oversold"],
                        r["elapsed_s"],
                        r["bookings_per_s"],
                        r["p50_ms"],
                        r["p99_ms"],
                        r["attempts_mean"],
                    ]
                    for r in booking["rush"]
                ],
            ),
            "",
            "## Booking throughput: many point-days (HTTP)",
            "",
            table(
                [
                    "concurrency",
                    "bookings/s",
                    "x write ceiling",
                    "p50 ms",
                    "p99 ms",
                    "succeeded",
                    "refused (full)",
                    "failed",
                    "writes/booking",
                ],
                [
                    [
                        r["concurrency"],
                        r["bookings_per_s"],
                        ratio(r["bookings_per_s"], write_ceiling),
                        r["p50_ms"],
                        r["p99_ms"],
                        r["succeeded"],
                        r["refused_full"],
                        r["failed"],
                        r["writes_per_booking"],
                    ]
                    for r in booking["many"]
                ],
            ),
        ]
    peak = results.get("peak")
    if peak:
        kinds = peak["kinds"]
        out += [
            "",
            f"## Compressed national peak ({peak['duration_s']:.0f} s, {peak['concurrency']} "
            f"users, {peak['points']:,} points)",
            "",
            f"{peak['ops_per_s']:.1f} operations/s, p50 {peak['p50_ms']} ms, p99 "
            f"{peak['p99_ms']} ms, {peak['failed']} failed; {peak['reads_per_s']:.0f} document "
            f"reads/s and {peak['writes_per_s']:.0f} writes/s.",
            "",
            table(
                ["operation", "count", "per s", "p50 ms", "p99 ms", "outcomes"],
                [
                    [
                        k,
                        v["operations"],
                        v["per_s"],
                        v["p50_ms"],
                        v["p99_ms"],
                        ", ".join(f"{o} {n}" for o, n in sorted(v["outcomes"].items())),
                    ]
                    for k, v in kinds.items()
                ],
            ),
        ]
        searches = kinds.get("search", {}).get("per_s")
        bookings = kinds.get("book", {}).get("per_s")
        out += [
            "",
            f"Against the original's peak: searches {_pct(ratio(searches, 950))} of 950/s, "
            f"bookings {_pct(ratio(bookings, ORIGINAL_BOOKINGS_PER_H / 3600))} of "
            f"{ORIGINAL_BOOKINGS_PER_H / 3600:.1f}/s, on one emulator and one process.",
        ]
    out.append(render_projection(production_projection(results)))
    return "\n".join(out) + "\n"


# ASSUMPTION, not a quote: Firestore Standard list prices in USD per 100,000 documents for a
# regional (single-region) location, as published for us-central1 when this was written
# (2025). europe-central2 (Warsaw) is priced separately and somewhat higher; replace these
# with the current figures from https://cloud.google.com/firestore/pricing before relying on
# the dollar amounts. The document counts do not depend on them.
ASSUMED_PRICES_PER_100K = {"read": 0.03, "write": 0.09, "delete": 0.01}
PRICE_NOTE = (
    "assumed list prices per 100,000 documents: reads $0.03, writes $0.09, deletes $0.01 "
    "(us-central1 regional, 2025; NOT verified for europe-central2 — substitute the current "
    "Warsaw price)"
)


def production_projection(
    results: dict[str, Any], prices: dict[str, float] | None = None
) -> dict[str, Any] | None:
    """Documents and cost at the original's peak, from the measured per-operation costs."""
    prices = prices or ASSUMED_PRICES_PER_100K
    sizes = (results.get("search") or {}).get("sizes") or []
    cost = (results.get("booking") or {}).get("cost") or {}
    if not sizes or "book_two_doses" not in cost:
        return None
    search_reads = max(r["reads_per_search_mean"] for r in sizes)
    rows = {}
    for label, c in (
        ("one-dose", cost.get("book_single_dose")),
        ("two-dose", cost["book_two_doses"]),
    ):
        if not c:
            continue
        writes = c["billed_writes"]
        deletes = c["billed_deletes"]
        reads = c["billed_reads"]
        per_booking = (
            reads * prices["read"] + writes * prices["write"] + deletes * prices["delete"]
        ) / 100_000
        rows[label] = {
            "reads": reads,
            "writes": writes,
            "deletes": deletes,
            "usd_per_booking": per_booking,
            "usd_per_peak_hour": per_booking * ORIGINAL_BOOKINGS_PER_H,
            "usd_per_day": per_booking * ORIGINAL_BOOKINGS_PER_DAY,
            "writes_per_s_at_peak": writes * ORIGINAL_BOOKINGS_PER_H / 3600,
        }
    per_search = search_reads * prices["read"] / 100_000
    return {
        "search_reads": search_reads,
        "search_reads_per_s_at_peak": search_reads * ORIGINAL_SEARCHES_PER_S,
        "usd_per_search": per_search,
        "usd_per_peak_hour_of_search": per_search * ORIGINAL_SEARCHES_PER_S * 3600,
        "booking": rows,
        "prices": prices,
    }


def render_projection(projection: dict[str, Any] | None) -> str:
    if not projection:
        return ""
    p = projection
    rows = [
        [
            "search (page of 5)",
            p["search_reads"],
            0,
            0,
            f"${p['usd_per_search'] * 1e6:.2f}",
            f"{p['search_reads_per_s_at_peak']:,.0f} reads/s",
            f"${p['usd_per_peak_hour_of_search']:,.2f}",
            "–",
        ],
    ] + [
        [
            f"booking, {k}",
            v["reads"],
            v["writes"],
            v["deletes"],
            f"${v['usd_per_booking'] * 1e6:.2f}",
            f"{v['writes_per_s_at_peak']:,.0f} writes/s",
            f"${v['usd_per_peak_hour']:,.2f}",
            f"${v['usd_per_day']:,.2f}",
        ]
        for k, v in p["booking"].items()
    ]
    return "\n".join(
        [
            "",
            "## What it means at the original's peak (950 searches/s, 122,000 bookings/h, "
            "880,000/day)",
            "",
            table(
                [
                    "operation",
                    "billed reads",
                    "writes",
                    "deletes",
                    "per million ops",
                    "load at peak",
                    "per peak hour",
                    "per 880k-booking day",
                ],
                rows,
            ),
            "",
            f"Dollar figures use {PRICE_NOTE}. Per operation cost = (reads x P_read + writes x "
            "P_write + deletes x P_delete) / 100,000.",
        ]
    )


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def main(argv: list[str] | None = None) -> int:
    """Re-render a results JSON as Markdown: python -m bench.report bench/results/latest.json"""
    import json
    import sys
    from pathlib import Path

    for name in argv if argv is not None else sys.argv[1:]:
        path = Path(name)
        results = json.loads(path.read_text())
        clean = {k: v for k, v in results.items() if not (isinstance(v, dict) and "error" in v)}
        path.with_suffix(".md").write_text(render(clean))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
