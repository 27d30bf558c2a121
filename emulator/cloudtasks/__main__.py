"""CLI: ``python -m emulator.cloudtasks --host 127.0.0.1 --port 8123``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from emulator.cloudtasks import CloudTasksEmulator, EmulatorBindError

EXIT_BIND_ERROR = 2


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emulator.cloudtasks", description="Local Cloud Tasks v2 emulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    parser.add_argument(
        "--name-reuse-window",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how long a used task name is refused (production: about an hour)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    emulator = CloudTasksEmulator(args.host, args.port, args.name_reuse_window)
    try:
        emulator.start()
    except EmulatorBindError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BIND_ERROR

    stop_requested = threading.Event()

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    print(f"Cloud Tasks emulator listening on {emulator.address}", flush=True)
    # Event.wait with a timeout keeps the main thread responsive to signals.
    while not stop_requested.wait(0.5):
        pass
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
