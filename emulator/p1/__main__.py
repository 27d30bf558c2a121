"""CLI: ``python -m emulator.p1 --port 8301 [--token T | --pki DIR] [--state FILE]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emulator.certs import Pki
from emulator.faults import add_common_arguments, configure_logging, run_cli
from emulator.p1.app import DEFAULT_TOKEN, make_app

DEFAULT_PORT = 8301


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.p1", description="P1 simulator")
    add_common_arguments(parser, DEFAULT_PORT, "P1_TOKEN", DEFAULT_TOKEN)
    parser.add_argument(
        "--pki",
        type=Path,
        default=None,
        help="serve HTTPS with mutual TLS: the folder of emulator/certs.py (ca.pem, server.pem, "
        "server.key); clients must show a certificate of that CA, and no token is asked",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    pki = Pki(args.pki) if args.pki is not None else None
    app = make_app(
        token=None if pki is not None else args.token, state_path=args.state, seed=args.seed
    )
    context = pki.server_context(require_client_cert=True) if pki is not None else None
    return run_cli("P1", app, args.host, args.port, context)


if __name__ == "__main__":
    sys.exit(main())
