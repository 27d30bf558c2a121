"""Print a demo user's ID token: `python -m emulator.token patient` (or agent, staff, admin,
or a uid such as patient-jan)."""

from __future__ import annotations

import os
import sys

from emulator.seed.users import DEMO_USERS, demo_tokens
from emulator.stack import DEFAULT_PROJECT


def main(argv: list[str]) -> int:
    wanted = argv[0] if argv else "patient"
    project = os.environ.get("GOOGLE_CLOUD_PROJECT", DEFAULT_PROJECT)
    tokens = demo_tokens(project)
    for user in DEMO_USERS:
        if wanted in (user.uid, user.role):
            print(tokens[user.uid]["token"])
            return 0
    print(
        f"no demo user {wanted!r}; try one of: {', '.join(u.uid for u in DEMO_USERS)}",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
