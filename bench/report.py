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
    if isinstance(value, float) and 0 < abs(value) < 0.01:
        return f"{value:.2g}"
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


TARGETS = {
    "crowd_small_wall_s": 6.0,
    "crowd_large_wall_s": 30.0,
    "hot_writes_per_s": 1.0,
    "search_per_s": 950.0,
    "search_p99_ms": 250.0,
    "bookings_per_s": 60.0,
    "peak_held_share": 0.95,
}


def _mark(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "NOT met")


def _hot(block: Any) -> dict[str, Any]:
    """The hottest document of a phase's `hot` summary (bench/hot.py), or {}."""
    if not isinstance(block, dict):
        return {}
    return block.get("hottest") or {}


def _hot_text(block: Any) -> str:
    top = _hot(block)
    if not top:
        return "–"
    return f"{top['writes_per_s']:.1f}/s ({top['document']})"


def crowd_rows(crowd: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in (crowd or {}).get("runs", []) if "bookers" in r]


def targets(results: dict[str, Any]) -> list[list[Any]]:
    """One row per target of issue 11 item 7: what was asked, what was measured, met or not.
    Benchmarks report; they do not fail."""
    rows: list[list[Any]] = []
    for run in crowd_rows(results.get("crowd")):
        limit = (
            TARGETS["crowd_small_wall_s"]
            if run["bookers"] <= 1000
            else TARGETS["crowd_large_wall_s"]
        )
        exact = (
            run["booked"] == run["seats"]
            and run["unanswered"] == 0
            and run["refused_while_free"] == 0
            and run["resets"] == 0
        )
        rows.append(
            [
                f"crowd {run['bookers']:,} on {run['seats']:,} seats",
                f"all answered, exactly {run['seats']} booked, 0 resets, <= {limit:.0f} s",
                f"{run['booked']} booked, {run['unanswered']} unanswered, "
                f"{run['refused_while_free']} refused while free, {run['resets']} resets, "
                f"{run['wall_s']:.1f} s",
                _mark(exact and run["wall_s"] <= limit),
            ]
        )
    hottest = []
    for run in crowd_rows(results.get("crowd")):
        hottest.append((f"crowd {run['bookers']:,}", _hot(run.get("hot"))))
    peak = results.get("peak") or {}
    if "kinds" in peak:
        hottest.append(("peak mix", _hot(peak.get("hot"))))
    measured = [(label, h) for label, h in hottest if h]
    if measured:
        worst = max(measured, key=lambda pair: pair[1]["writes_per_s"])
        rows.append(
            [
                "hottest document (most writes in any 10 s, / 10)",
                f"<= {TARGETS['hot_writes_per_s']:.0f} write/s",
                f"{worst[1]['writes_per_s']:.1f}/s, {worst[1]['document']} ({worst[0]})",
                _mark(worst[1]["writes_per_s"] <= TARGETS["hot_writes_per_s"]),
            ]
        )
    levels = [r for r in (results.get("search") or {}).get("levels", []) if "requests_per_s" in r]
    if levels:
        top = max(levels, key=lambda r: r["connections"])
        rows.append(
            [
                f"search, {top['connections']} connections (wrk)",
                f">= {TARGETS['search_per_s']:.0f}/s, p99 <= {TARGETS['search_p99_ms']:.0f} ms, "
                "0 errors",
                f"{top['requests_per_s']:,.0f}/s, p99 {top['p99_ms']:,.0f} ms, "
                f"{top['failed']} errors",
                _mark(
                    top["requests_per_s"] >= TARGETS["search_per_s"]
                    and top["p99_ms"] <= TARGETS["search_p99_ms"]
                    and top["failed"] == 0
                ),
            ]
        )
    uncontended = (results.get("booking") or {}).get("uncontended") or []
    if uncontended:
        best = max(uncontended, key=lambda r: r["bookings_per_s"])
        rows.append(
            [
                "bookings with no contention",
                f">= {TARGETS['bookings_per_s']:.0f}/s",
                f"{best['bookings_per_s']:.1f}/s ({best['clients']} clients), "
                f"{sum(r['failed'] for r in uncontended)} failed",
                _mark(best["bookings_per_s"] >= TARGETS["bookings_per_s"]),
            ]
        )
    if "kinds" in peak:
        held = all(
            v["answered_per_s"] >= TARGETS["peak_held_share"] * peak["rates"].get(k, 0)
            for k, v in peak["kinds"].items()
        )
        rows.append(
            [
                f"peak mix for {peak['duration_s'] / 60:.0f} min (open loop)",
                "every rate held, 0 failed",
                ", ".join(
                    f"{k} {v['answered_per_s']:,.1f}/{peak['rates'].get(k, 0):g}"
                    for k, v in peak["kinds"].items()
                )
                + f" per s; {peak['failed']} failed",
                _mark(held and peak["failed"] == 0),
            ]
        )
    return rows


def cpu_rows(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(phase, CpuShares result) for every phase that measured where the CPU went."""
    rows = []
    for run in crowd_rows(results.get("crowd")):
        rows.append((f"crowd {run['bookers']:,}", run.get("cpu") or {}))
    for level in (results.get("search") or {}).get("levels", []):
        if "cpu" in level:
            rows.append((f"search c={level['connections']}", level["cpu"]))
    for row in (results.get("booking") or {}).get("uncontended") or []:
        rows.append((f"booking {row['clients']} clients", row.get("cpu") or {}))
    peak = results.get("peak") or {}
    if "cpu" in peak:
        rows.append(("peak mix", peak["cpu"]))
    return [(name, shares) for name, shares in rows if shares.get("cores")]


def render_cpu(results: dict[str, Any]) -> list[str]:
    rows = cpu_rows(results)
    if not rows:
        return []
    groups: list[str] = []
    for _, shares in rows:
        for name in shares["cores"]:
            if name not in groups and name != "others":
                groups.append(name)
    groups.append("others")
    return [
        "",
        "## Where the CPU went (cores, from /proc)",
        "",
        "Each group is its processes' user + system CPU over the phase's wall time; `others` is "
        "the rest of the machine's busy time (other users of a shared machine, the kernel).",
        "",
        table(
            ["phase", *groups, "machine busy", "of"],
            [
                [
                    name,
                    *(shares["cores"].get(g) for g in groups),
                    shares.get("machine_busy_cores"),
                    shares.get("cpus"),
                ]
                for name, shares in rows
            ],
        ),
    ]


def render_profiles(results: dict[str, Any]) -> list[str]:
    found = []
    for level in (results.get("search") or {}).get("levels", []):
        if isinstance(level.get("profile"), dict):
            found.append((f"search c={level['connections']}", level["profile"]))
    peak = results.get("peak") or {}
    if isinstance(peak.get("profile"), dict):
        found.append(("peak mix", peak["profile"]))
    out: list[str] = []
    for name, prof in found:
        if "self" not in prof:
            out += ["", f"Profile of the gateway, {name}: {prof}"]
            continue
        out += [
            "",
            f"## Profile of the gateway workers: {name} (py-spy, {prof['samples']:,} samples)",
            "",
            table(
                ["on CPU itself (self)", "share", "this repository's code (inclusive)", "share"],
                [
                    [
                        a["function"] if a else "",
                        _pct(a["share"]) if a else "",
                        b["function"] if b else "",
                        _pct(b["share"]) if b else "",
                    ]
                    for a, b in _pairs(
                        prof["self"][:12], prof.get("inclusive_ours", prof["inclusive"])[:12]
                    )
                ],
            ),
        ]
    return out


def _answers(answers: dict[str, int] | None) -> str:
    if not answers:
        return "–"
    return ", ".join(f"{n:,} x {status}" for status, n in sorted(answers.items()))


def _pairs(left: list[Any], right: list[Any]) -> list[tuple[Any, Any]]:
    size = max(len(left), len(right))
    return [
        (left[i] if i < len(left) else None, right[i] if i < len(right) else None)
        for i in range(size)
    ]


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
        f"{m.get('pubsub_emulator')}, {m.get('java')}; gateway {m.get('gateway', '?')} "
        f"(gunicorn gthread). Whole machine busy {_pct(load.get('machine_busy_share'))} during "
        f"the run (load average at start {m.get('loadavg_at_start')}, at end "
        f"{load.get('loadavg_at_end')}): figures from a shared machine are read as ratios to "
        "the emulator ceiling below.",
    ]
    for note in results.get("notes") or []:
        out += ["", f"Note: {note}"]
    goals = targets(results)
    if goals:
        out += [
            "",
            "## Targets (a 2-core machine; benchmarks report, they do not fail)",
            "",
            table(["figure", "target", "measured", ""], goals),
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
        if ceiling.get("queries"):
            out += [
                "",
                "The emulator answers a query by scanning the collection (production Firestore "
                "reads an index): an equality query matching 1 document, 8 threads:",
                "",
                table(
                    ["documents in the collection", "queries/s", "p50 ms"],
                    [
                        [q["documents"], q["queries_per_s_c8"], q["p50_ms_c8"]]
                        for q in ceiling["queries"]
                    ],
                ),
            ]
    get_ceiling = (ceiling or {}).get("gets_per_s_c8")
    write_ceiling = (ceiling or {}).get("writes_per_s_c8")
    crowds = crowd_rows(results.get("crowd"))
    if crowds:
        out += [
            "",
            "## The opening: everybody at once (HTTP, clients retry as the API says)",
            "",
            table(
                [
                    "bookers",
                    "points x seats",
                    "booked",
                    "refused full",
                    "unanswered",
                    "refused while free",
                    "resets",
                    "timeouts",
                    "503 retries",
                    "wall s",
                    "p50 s",
                    "p99 s",
                    "commit attempts / winner",
                    "hottest document",
                ],
                [
                    [
                        r["bookers"],
                        f"{r['points']} x {r['seats'] // max(1, r['points'])}",
                        r["booked"],
                        r["refused_full"],
                        r["unanswered"],
                        r["refused_while_free"],
                        r["resets"],
                        r.get("timeouts", 0),
                        r["retries_503"],
                        r["wall_s"],
                        r["p50_s"],
                        r["p99_s"],
                        f"{r['commit_attempts_per_winner']} ({r['failed_commits']} failed)",
                        _hot_text(r.get("hot")),
                    ]
                    for r in crowds
                ],
            ),
        ]
    search = results.get("search")
    if search and "levels" in search:
        facts = search.get("country") or {}
        seq = search.get("sequential") or {}
        warm = search.get("warm_up_documents") or {}
        out += [
            "",
            f"## Search: wrk against {facts.get('points', 0):,} points, "
            f"{facts.get('slots', 0):,} slots (HTTP, GET /v1/slots, patient token)",
            "",
            f"Warm-up {search.get('warm_up_s')} s: every worker loads the directory and every "
            f"calendar once ({warm.get('reads', 0):,} documents read in all; answers "
            f"{_answers(search.get('warm_up_answers'))}). Then, one at a "
            f"time: {seq.get('reads_per_search')} documents read per search (max "
            f"{seq.get('reads_max')}), {seq.get('billed_reads_per_search')} billed (the view's "
            f"once-a-second refresh query, billed one read when nothing changed), p50 "
            f"{seq.get('p50_ms')} ms, {seq.get('items_per_page')} points per page.",
            "",
            table(
                [
                    "connections",
                    "searches/s",
                    "x get ceiling",
                    "p50 ms",
                    "p90 ms",
                    "p99 ms",
                    "errors",
                    "reads/search",
                    "billed reads/search",
                ],
                [
                    [
                        r["connections"],
                        r["requests_per_s"],
                        ratio(r["requests_per_s"], get_ceiling),
                        r["p50_ms"],
                        r["p90_ms"],
                        r["p99_ms"],
                        r["failed"],
                        r["reads_per_search"],
                        r["billed_reads_per_search"],
                    ]
                    for r in search["levels"]
                    if "requests_per_s" in r
                ],
            ),
        ]
        out += [f"\n{r}" for r in search["levels"] if "error" in r]
    booking = results.get("booking")
    if booking and "cost" in booking:
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
                    "aggregations",
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
                        v.get("aggregations"),
                        v["billed_reads"],
                        v["writes"],
                        v["billed_deletes"],
                        v["commits"],
                        v["p50_ms"],
                    ]
                    for k, v in booking["cost"].items()
                ],
            ),
        ]
    if booking and booking.get("uncontended"):
        out += [
            "",
            "## Bookings with no contention (HTTP, closed loop, a new patient each, "
            "random one-dose slot of the country)",
            "",
            table(
                [
                    "clients",
                    "bookings/s",
                    "x write ceiling",
                    "p50 ms",
                    "p99 ms",
                    "succeeded",
                    "refused (full)",
                    "failed",
                    "writes/booking",
                    "commit attempts/booking",
                    "hottest document",
                ],
                [
                    [
                        r["clients"],
                        r["bookings_per_s"],
                        ratio(r["bookings_per_s"], write_ceiling),
                        r["p50_ms"],
                        r["p99_ms"],
                        r["succeeded"],
                        r["refused_full"],
                        r["failed"],
                        r["writes_per_booking"],
                        r.get("commit_attempts_per_booking"),
                        _hot_text(r.get("hot")),
                    ]
                    for r in booking["uncontended"]
                ],
            ),
        ]
    peak = results.get("peak")
    if peak and "kinds" in peak:
        kinds = peak["kinds"]
        out += [
            "",
            f"## The peak hour, open loop ({peak['duration_s']:.0f} s)",
            "",
            f"Requests issued at their target rates whatever the latency; times from when each "
            f"was due to its definitive answer. {peak['failed']} failed; hottest document "
            f"{_hot_text(peak.get('hot'))}; {peak.get('reads_per_s', 0):,.0f} documents read "
            f"and {peak.get('writes_per_s', 0):,.0f} written per second; the generator issued "
            f"requests {peak.get('generator_lag_p99_ms')} ms late at p99 (its own lag); "
            f"{peak.get('drain_s')} s to drain after the schedule ended.",
            "",
            table(
                [
                    "operation",
                    "target /s",
                    "answered /s",
                    "issued",
                    "skipped",
                    "p50 ms",
                    "p99 ms",
                    "failed",
                    "503 retries",
                    "resets",
                    "outcomes",
                ],
                [
                    [
                        k,
                        peak["rates"].get(k),
                        v["answered_per_s"],
                        v["issued"],
                        v["skipped"],
                        v["p50_ms"],
                        v["p99_ms"],
                        v["failed"],
                        v["retries_503"],
                        v["resets"],
                        ", ".join(f"{o} {n}" for o, n in sorted(v["outcomes"].items())),
                    ]
                    for k, v in kinds.items()
                ],
            ),
        ]
    out += render_cpu(results)
    out += render_profiles(results)
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
    search = results.get("search") or {}
    cost = (results.get("booking") or {}).get("cost") or {}
    sequential = search.get("sequential") or {}
    if sequential.get("billed_reads_per_search") is None or "book_two_doses" not in cost:
        return None
    # Billed reads per warm search: the in-memory view's refresh query, one a second per
    # instance (billed one read when nothing changed), shared by that second's searches.
    levels = [r for r in search.get("levels", []) if r.get("billed_reads_per_search") is not None]
    search_reads = (
        max(levels, key=lambda r: r["connections"])["billed_reads_per_search"]
        if levels
        else sequential["billed_reads_per_search"]
    )
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
            _usd(p["usd_per_search"] * 1e6),
            f"{p['search_reads_per_s_at_peak']:,.0f} reads/s",
            _usd(p["usd_per_peak_hour_of_search"]),
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


def _usd(value: float) -> str:
    return f"${value:.2g}" if 0 < value < 0.01 else f"${value:,.2f}"


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
