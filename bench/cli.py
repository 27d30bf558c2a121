"""`python -m bench`: the opening crowd, search, booking and the peak hour, through HTTP.

    python -m bench                 # every scenario, default sizes (about 15 minutes)
    python -m bench --quick         # smaller and shorter (under 3 minutes)
    python -m bench --scenarios crowd --crowds 1000x1x100
    python -m bench --scenarios search,peak --peak-duration 30 --profile

Starts its own Firestore and Pub/Sub emulators on free ports (or uses FIRESTORE_EMULATOR_HOST
and PUBSUB_EMULATOR_HOST when set) and serves every function behind the real gateway
(gunicorn workers) on a free port. Writes bench/results/latest.json and latest.md (quick
mode: quick.json and quick.md).
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
SCENARIOS = ("ceiling", "crowd", "search", "booking", "peak")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _crowds(text: str) -> tuple[tuple[int, int, int], ...]:
    """BOOKERSxPOINTSxSEATS_PER_POINT, comma-separated: 1000x1x100,5000x5x100."""
    crowds = []
    for item in text.split(","):
        bookers, points, seats = (int(x) for x in item.split("x"))
        crowds.append((bookers, points, seats))
    return tuple(crowds)


def _rates(text: str) -> dict[str, float]:
    """KIND=PER_S, comma-separated: search=950,book=34,reschedule=8.5,cancel=8.5."""
    rates = {}
    for item in text.split(","):
        kind, _, value = item.partition("=")
        rates[kind.strip()] = float(value)
    return rates


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small and short (under 3 min)")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    parser.add_argument("--crowds", type=_crowds, help="BOOKERSxPOINTSxSEATS,... e.g. 1000x1x100")
    parser.add_argument("--points", type=int, help="points of the country (search, booking, peak)")
    parser.add_argument("--connections", type=_ints, help="wrk connections, e.g. 8,64")
    parser.add_argument("--duration", type=float, help="seconds per search / booking phase")
    parser.add_argument("--clients", type=_ints, help="uncontended booking clients, e.g. 8,32")
    parser.add_argument("--peak-duration", type=float, help="seconds of the peak mix")
    parser.add_argument("--peak-rates", type=_rates, help="search=950,book=34,...")
    parser.add_argument(
        "--peak-search-gateway",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the peak's searches on a gateway of their own (default), as in production",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sample the gateway with py-spy (make bench-tools); on by default, off in --quick",
    )
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
    if args.crowds:
        changes["crowds"] = args.crowds
    if args.points:
        changes["country_points"] = args.points
    if args.connections:
        changes["search_connections"] = args.connections
    if args.duration:
        changes["search_s"] = args.duration
        changes["booking_s"] = args.duration
    if args.clients:
        changes["booking_clients"] = args.clients
    if args.peak_duration:
        changes["peak_s"] = args.peak_duration
    if args.peak_rates:
        changes["peak_rates"] = args.peak_rates
    if args.peak_search_gateway is not None:
        changes["peak_search_gateway"] = args.peak_search_gateway
    if args.profile is not None:
        changes["profile"] = args.profile
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
    from emulator.serve import ServeSettings

    gateway = ServeSettings()
    results["machine"]["gateway"] = f"{gateway.workers} workers x {gateway.threads} threads"
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
        results["notes"] = stack.notes
        results["folder"] = {
            "rounds": stack.folder.rounds,
            "deltas_folded": stack.folder.deltas,
            "errors": stack.folder.errors[:5],
        }
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
