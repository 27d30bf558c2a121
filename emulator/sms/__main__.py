"""CLI: ``python -m emulator.sms --host 127.0.0.1 --port 8303 [--webhook URL] [--token T]``."""

from __future__ import annotations

import argparse
import os
import sys

from emulator.faults import add_common_arguments, configure_logging, run_cli
from emulator.sms.app import DEFAULT_TOKEN, make_app

DEFAULT_PORT = 8303


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.sms", description="SMS simulator")
    add_common_arguments(parser, DEFAULT_PORT, "SMS_TOKEN", DEFAULT_TOKEN)
    parser.add_argument(
        "--webhook",
        default=os.environ.get("SMS_WEBHOOK_URL"),
        help="where incoming SMS are POSTed (env SMS_WEBHOOK_URL; or PUT /sms/v1/config)",
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("SMS_WEBHOOK_SECRET"),
        help="HMAC key for the X-Sms-Signature header (env SMS_WEBHOOK_SECRET)",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    app = make_app(
        token=args.token,
        state_path=args.state,
        seed=args.seed,
        webhook_url=args.webhook,
        webhook_secret=args.webhook_secret,
    )
    return run_cli("SMS", app, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
