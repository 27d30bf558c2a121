"""CLI: ``python -m emulator.p1 --host 127.0.0.1 --port 8301 [--token T] [--state FILE]``."""

from __future__ import annotations

import argparse
import sys

from emulator.faults import add_common_arguments, configure_logging, run_cli
from emulator.p1.app import DEFAULT_TOKEN, make_app

DEFAULT_PORT = 8301


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.p1", description="P1 simulator")
    add_common_arguments(parser, DEFAULT_PORT, "P1_TOKEN", DEFAULT_TOKEN)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    app = make_app(token=args.token, state_path=args.state, seed=args.seed)
    return run_cli("P1", app, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
