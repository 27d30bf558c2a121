"""CLI: ``python -m emulator.login_node --host 127.0.0.1 --port 8304 [--client-id ID]
[--redirect-prefix URL ...]``."""

from __future__ import annotations

import argparse
import sys

from emulator.faults import configure_logging, run_cli
from emulator.login_node.app import DEFAULT_CLIENT_ID, LoginNode, make_app

DEFAULT_PORT = 8304


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulator.login_node", description="login.gov.pl (OIDC) simulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument(
        "--redirect-prefix",
        action="append",
        default=None,
        help="a redirect_uri must start with one of these (default: http://127.0.0.1, "
        "http://localhost)",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    prefixes = tuple(args.redirect_prefix or ("http://127.0.0.1", "http://localhost"))
    node = LoginNode(f"http://{args.host}:{args.port}", args.client_id, prefixes)
    return run_cli("login node", make_app(node), args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
