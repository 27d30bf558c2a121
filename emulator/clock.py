"""Move the local stack's clock: `python -m emulator.clock --file .local/clock.json --at ...`.

The stack started with `--clock-file FILE` (or CLOCK_FILE=FILE) reads its time offset from that
file in every process (common/clock.py), so writing it moves the time of the whole running
stack at once: book in the evening, jump to 18:00 the day before the visit and watch the
reminder go out, then to the visit's morning and check the patient in.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from common import clock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.clock", description=__doc__)
    parser.add_argument("--file", type=Path, default=Path(".local/clock.json"))
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", help="HH:MM (Warsaw time today) or an ISO datetime")
    when.add_argument("--offset", type=float, help="seconds added to the real time")
    when.add_argument("--real", action="store_true", help="back to the real time")
    args = parser.parse_args(argv)
    if args.real:
        offset = 0.0
    elif args.offset is not None:
        offset = args.offset
    else:
        real_now = datetime.now(UTC)
        try:
            offset = (clock.parse_clock_at(args.at, real_now) - real_now).total_seconds()
        except ValueError as err:
            parser.error(str(err))
    clock.write_clock_file(args.file, offset)
    moment = clock.FileClock(args.file).now().astimezone(clock.WARSAW)
    print(f"{args.file}: it is now {moment:%Y-%m-%d %H:%M:%S} in Warsaw (offset {offset:+.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
