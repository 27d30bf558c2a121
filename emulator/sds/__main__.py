"""CLI: ``python -m emulator.sds --host 127.0.0.1 --port 8302 [--token T] [--state FILE]``."""

from __future__ import annotations

import argparse
import sys

from emulator.faults import add_common_arguments, configure_logging, run_cli
from emulator.sds.app import DEFAULT_TOKEN, make_app

DEFAULT_PORT = 8302


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.sds", description="SDS simulator")
    add_common_arguments(parser, DEFAULT_PORT, "SDS_TOKEN", DEFAULT_TOKEN)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    app = make_app(token=args.token, state_path=args.state, seed=args.seed)
    return run_cli("SDS", app, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
