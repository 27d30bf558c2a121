"""The demo users of the local stack and their unsigned ID tokens.

The PESEL numbers are the public examples of the documentation (valid checksums, no real
people behind them as far as anyone can tell) plus generated ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from common.domain.pesel import make_pesel
from emulator.identities import mint_id_token

DEMO_STAFF_POINT = "pt-00001"


@dataclass(frozen=True)
class DemoUser:
    uid: str
    role: str
    label: str
    pesel: str | None = None
    point_id: str | None = None


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
    """uid → {label, role, token}: what the web apps and the README's curl examples use."""
    tokens = {}
    for user in DEMO_USERS:
        token = mint_id_token(
            project_id,
            user.uid,
            role=user.role,
            pesel=user.pesel,
            point_id=user.point_id,
            lifetime_s=30 * 24 * 3600,
        )
        tokens[user.uid] = {"label": user.label, "role": user.role, "token": token}
    return tokens
