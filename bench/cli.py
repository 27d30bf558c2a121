"""`python -m bench`: search and booking at national scale, measured against the local stack.

    python -m bench                 # every scenario, default sizes (under 15 minutes)
    python -m bench --quick         # smaller sizes and shorter phases (under 2 minutes)
    python -m bench --scenarios search,booking --duration 5 --levels 1,4,16

Starts its own Firestore and Pub/Sub emulators on free ports (or uses FIRESTORE_EMULATOR_HOST
and PUBSUB_EMULATOR_HOST when set) and serves every function behind the real gateway on a free
port. Writes bench/results/latest.json and latest.md (quick mode: quick.json and quick.md).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import machine
from bench.progress import Progress
from bench.report import render

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("ceiling", "search", "booking", "peak")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    sizes = []
    for item in text.split(","):
        points, _, days = item.partition("x")
        sizes.append((int(points), int(days or 9)))
    return tuple(sizes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small and short (under 2 min)")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    parser.add_argument("--duration", type=float, help="seconds per measured phase")
    parser.add_argument("--levels", type=_ints, help="search concurrency levels, e.g. 1,8,32")
    parser.add_argument("--booking-levels", type=_ints, help="many-point-day booking levels")
    parser.add_argument("--rush-levels", type=_ints, help="bookers released on one point-day")
    parser.add_argument(
        "--sizes", type=_sizes, help="search data sizes as POINTSxDAYS, e.g. 100x9,1000x9,7000x9"
    )
    parser.add_argument("--peak-duration", type=float, help="seconds of the national peak mix")
    parser.add_argument("--peak-users", type=int, help="concurrent users in the peak mix")
    parser.add_argument("--layers", default=None, help="search layers: service,http")
    parser.add_argument("--out", type=Path, help="results path without extension")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    return args


def build_config(args: argparse.Namespace):
    from bench.scenarios import Config

    cfg = Config.quick() if args.quick else Config()
    changes: dict[str, Any] = {"scenarios": tuple(s for s in SCENARIOS if s in args.scenarios)}
    if args.duration:
        changes["phase_s"] = args.duration
    if args.levels:
        changes["search_levels"] = args.levels
    if args.booking_levels:
        changes["many_levels"] = args.booking_levels
    if args.rush_levels:
        changes["rush_levels"] = args.rush_levels
    if args.sizes:
        changes["search_sizes"] = args.sizes
    if args.peak_duration:
        changes["peak_s"] = args.peak_duration
    if args.peak_users:
        changes["peak_concurrency"] = args.peak_users
    if args.layers:
        changes["search_layers"] = tuple(args.layers.split(","))
    return replace(cfg, **changes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = build_config(args)
    out = args.out or RESULTS / ("quick" if cfg.mode == "quick" else "latest")
    progress = Progress()
    started = time.monotonic()
    cpu_start = machine.cpu_times()
    results: dict[str, Any] = {
        "format": 1,
        "mode": cfg.mode,
        "command": (
            "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
        ).strip(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine.machine_info(),
        "settings": cfg.as_dict(),
    }
    import logging

    logging.getLogger("common").setLevel(logging.ERROR)
    from bench import scenarios
    from bench.harness import Stack

    stack = Stack(progress)
    status = 0
    try:
        stack.start()
        results["stack"] = {
            "reused": stack.reused,
            "gateway_port": stack.base_port,
            "emulator_logs": str(stack.logs),
        }
        for name in cfg.scenarios:
            phase_started = time.monotonic()
            progress.done(f"== {name} ==")
            try:
                results[name] = getattr(scenarios, name)(stack, cfg, progress)
            except Exception as err:  # noqa: BLE001 (report it, keep what was measured)
                import traceback

                status = 1
                results[name] = {
                    "error": f"{type(err).__name__}: {err}",
                    "traceback": traceback.format_exc(limit=6),
                }
                progress.done(f"{name} FAILED: {type(err).__name__}: {err}")
            if isinstance(results[name], dict):
                results[name]["run_time_s"] = round(time.monotonic() - phase_started, 1)
    except KeyboardInterrupt:
        status = 130
        progress.done("interrupted: writing what was measured")
    finally:
        stack.stop()
        results["run_time_s"] = round(time.monotonic() - started, 1)
        results["load"] = {
            "machine_busy_share": machine.busy_share(cpu_start, machine.cpu_times()),
            "loadavg_at_end": machine.loadavg(),
            "bench_process_cpu_s": round(machine.own_cpu_s(), 1),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{out}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        clean = {k: v for k, v in results.items() if not (isinstance(v, dict) and "error" in v)}
        Path(f"{out}.md").write_text(render(clean))
        progress.done(f"done in {results['run_time_s']:.0f} s: wrote {out}.json and {out}.md")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
