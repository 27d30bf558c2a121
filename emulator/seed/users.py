"""The demo users of the local stack.

Patients sign in through the login-node simulator (emulator/login_node: it knows them by
`uid`); agents, staff and admins are managed accounts the stack creates at start through the
accounts service (the admin API's), with the documented local password below. The PESEL numbers
are the public examples of the documentation (valid checksums, no real people behind them as
far as anyone can tell) plus generated ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from common.domain.pesel import make_pesel

DEMO_STAFF_POINT = "pt-00001"
# Local demo accounts only (the Auth emulator): a documented password, not a secret.
DEMO_PASSWORD = "demo-haslo-2021"  # noqa: S105


@dataclass(frozen=True)
class DemoUser:
    uid: str
    role: str
    label: str
    pesel: str | None = None
    point_id: str | None = None

    @property
    def email(self) -> str | None:
        """Managed accounts sign in with this address and DEMO_PASSWORD."""
        return None if self.role == "patient" else f"{self.uid}@demo.e-rejestracja.example"


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("patient-anna", "patient", "Antoni, born 1944 (patient)", pesel="44051401359"),
    DemoUser("patient-jan", "patient", "Janina, born 2002 (patient)", pesel="02270803624"),
    DemoUser(
        "patient-ewa",
        "patient",
        "Ewa, born 1980 (patient)",
        pesel=make_pesel(date(1980, 3, 1), "F", 123),
    ),
    DemoUser("agent-1", "agent", "Hotline agent 989"),
    DemoUser("staff-1", "staff", f"Staff of point {DEMO_STAFF_POINT}", point_id=DEMO_STAFF_POINT),
    DemoUser("admin-1", "admin", "Administrator"),
)


# Children the demo patients may book for (guardians/{guardian_key}_{child_key}): Ewa's son,
# born 2015, has a referral of his own (seeded like every demo patient's).
DEMO_CHILDREN: tuple[tuple[str, str], ...] = (
    ("patient-ewa", make_pesel(date(2015, 6, 1), "M", 7)),
)


def demo_tokens(project_id: str) -> dict[str, dict[str, str]]:
    """uid -> {label, role, token}, each token issued by the Auth emulator (a custom token with
    the user's claims, signed in): what the browser tests' gateway serves at /dev/tokens. The
    stack itself signs its users in through the login node and passwords (emulator/sign_in.py)."""
    import os

    from firebase_admin import auth

    from common.adapters.firebase_app import firebase_app
    from emulator.sign_in import _client_call

    app = firebase_app(f"demo-tokens-{project_id}", project_id)
    host = os.environ["FIREBASE_AUTH_EMULATOR_HOST"]
    tokens = {}
    for user in DEMO_USERS:
        claims = {"role": user.role, "pesel": user.pesel, "point_id": user.point_id}
        custom = auth.create_custom_token(
            user.uid, {k: v for k, v in claims.items() if v is not None}, app=app
        )
        answer = _client_call(
            host,
            "accounts:signInWithCustomToken",
            {"token": custom.decode(), "returnSecureToken": True},
            project_id,
        )
        tokens[user.uid] = {"label": user.label, "role": user.role, "token": answer["idToken"]}
    return tokens
