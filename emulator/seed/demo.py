"""Demo data for the local stack: points over Poland's real towns, calendars, patients.

Everything is deterministic (seeded) and written with set(), so seeding twice, or over
persisted data, gives the same state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta

from google.cloud import firestore

from common import clock
from common.adapters.firestore_store import GUARDIANS, PATIENTS, REFERRALS, RPC
from common.adapters.vault import FieldVault
from common.config import Settings
from common.domain.calendar import WARSAW
from common.domain.pesel import make_pesel, parse_pesel, pesel_key
from common.services.directory import regular_calendar, write_calendars, write_points
from common.services.guardians import guardian_doc_id, guardian_document
from common.services.patients import new_patient_document
from emulator.seed.points import generate_points
from emulator.seed.users import DEMO_CHILDREN, DEMO_USERS

HORIZON_DAYS = 56
DEMO_PATIENTS = 200
Progress = Callable[[int, int, str], None]


def _quiet(done: int, total: int, what: str) -> None:
    return None


def demo_patients(count: int) -> list[str]:
    """PESELs of demo patients: the demo users first, then generated adults of all ages."""
    pesels = [u.pesel for u in DEMO_USERS if u.pesel] + [child for _, child in DEMO_CHILDREN]
    for index in range(count - len(pesels)):
        born = date(1935 + index % 70, 1 + index % 12, 1 + index % 28)
        pesels.append(make_pesel(born, "F" if index % 2 else "M", index % 5000))
    return pesels


def demo_phone(index: int) -> str:
    """The demo patient's fake mobile number (+48 600 NNN NNN), by position in demo_patients."""
    return f"+48600{index:06d}"


def demo_profiles(pesels: list[str]) -> list[dict[str, str]]:
    """The demo patients' IKP profiles for the P1 simulator (`POST /p1/v1/profiles:set`): where
    their phone numbers live, as real patients' do. Our own seed stores no number: the first
    confirmation fetches it from P1 (common/services/contacts.py)."""
    return [{"pesel": pesel, "phone": demo_phone(i)} for i, pesel in enumerate(pesels)]


def seed_patients(
    client: firestore.Client,
    secret: bytes,
    pesels: list[str],
    today: date,
    vault: FieldVault | None = None,
) -> None:
    vault = vault or FieldVault.from_env()
    batch = client.batch()
    for index, raw in enumerate(pesels):
        pesel = parse_pesel(raw, today)
        key = pesel_key(pesel, secret)
        # As the P1 sync writes a patient: birth date, sex, the PESEL encrypted; no phone (it
        # is in the patient's P1 profile: demo_profiles).
        batch.set(
            client.collection(PATIENTS).document(key), new_patient_document(pesel, key, vault)
        )
        referral = {
            "referral_id": f"ref-demo-{index:05d}",
            "kind": "primary",
            "valid_from": (today - timedelta(days=10)).isoformat(),
            "valid_to": (today + timedelta(days=80)).isoformat(),
            "status": "active",
            "booster_number": 0,
        }
        batch.set(
            client.collection(REFERRALS).document(referral["referral_id"]),
            {"patient_key": key, "referral": referral},
        )
        if index % 200 == 199:
            batch.commit(**RPC)
            batch = client.batch()
    batch.commit(**RPC)


def seed_guardians(client: firestore.Client, secret: bytes, today: date) -> None:
    """The demo parents and their children (P1's family data in production)."""
    pesel_of = {u.uid: u.pesel for u in DEMO_USERS if u.pesel}
    batch = client.batch()
    for guardian_uid, child_raw in DEMO_CHILDREN:
        guardian = pesel_key(parse_pesel(pesel_of[guardian_uid], today), secret)
        child = parse_pesel(child_raw, today)
        child_key = pesel_key(child, secret)
        batch.set(
            client.collection(GUARDIANS).document(guardian_doc_id(guardian, child_key)),
            guardian_document(guardian, child_key, child.birth_date),
        )
    batch.commit(**RPC)


def seed_demo(
    points: int = 300,
    patients: int = DEMO_PATIENTS,
    now: datetime | None = None,
    progress: Progress = _quiet,
    client: firestore.Client | None = None,
    settings: Settings | None = None,
) -> str:
    settings = settings or Settings.from_env()
    client = client or firestore.Client(project=settings.project_id)
    today = (now or clock.now()).astimezone(WARSAW).date()
    seeds = [p.to_dict() for p in generate_points(points, seed=2021)]
    write_points(client, seeds)
    progress(len(seeds), len(seeds), "points")
    calendars = []
    for index, point in enumerate(seeds):
        opens = time(8, 0) if index % 2 == 0 else time(12, 0)
        calendars.append(
            regular_calendar(
                point["point_id"],
                point["products"],
                today + timedelta(days=1),
                HORIZON_DAYS,
                opens=opens,
                capacity=2 + index % 3,
                weekends=point["kind"] == "mass_center",
            )
        )
    for start in range(0, len(calendars), 50):
        write_calendars(client, calendars[start : start + 50])
        progress(min(start + 50, len(calendars)), len(calendars), "calendars")
    seed_patients(client, settings.pesel_hash_key, demo_patients(patients), today)
    seed_guardians(client, settings.pesel_hash_key, today)
    progress(patients, patients, "patients")
    return (
        f"{len(seeds)} points, {len(calendars)} calendars ({HORIZON_DAYS} days), "
        f"{patients} patients"
    )
