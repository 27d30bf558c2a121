"""Print an ID token of a demo user of the running local stack, signed in for real:
`python -m emulator.token patient` (or agent, staff, admin, or a uid such as patient-jan).

A patient signs in through the login-node simulator and the Auth emulator (the identity
blocking function sets `role` and `pesel`); staff, agents and admins with their e-mail and the
demo password. The token comes from the Auth emulator, valid for an hour. Ports: the stack's
defaults, or AUTH_PORT, LOGIN_NODE_PORT (as `python -m emulator` takes them).
"""

from __future__ import annotations

import os
import sys

from emulator.seed.users import DEMO_PASSWORD, DEMO_USERS
from emulator.sign_in import SignInError, sign_in_patient, sign_in_with_password
from emulator.stack import LOGIN_NODE_CLIENT_ID


def main(argv: list[str]) -> int:
    wanted = argv[0] if argv else "patient"
    host = os.environ.get("LOCAL_HOST", "127.0.0.1")
    auth = f"{host}:{os.environ.get('AUTH_PORT', '9099')}"
    login_node = f"http://{host}:{os.environ.get('LOGIN_NODE_PORT', '8304')}"
    user = next((u for u in DEMO_USERS if wanted in (u.uid, u.role)), None)
    if user is None:
        names = ", ".join(u.uid for u in DEMO_USERS)
        print(f"no demo user {wanted!r}; try one of: {names}", file=sys.stderr)
        return 2
    try:
        if user.email is None:
            answer = sign_in_patient(auth, login_node, LOGIN_NODE_CLIENT_ID, user.uid)
        else:
            answer = sign_in_with_password(auth, user.email, DEMO_PASSWORD)
    except (SignInError, OSError) as err:
        print(f"sign-in failed (is `make run` up?): {err}", file=sys.stderr)
        return 1
    print(answer["idToken"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
