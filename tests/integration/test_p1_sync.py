"""P1 referral sync against the Firestore emulator and the P1 simulator.

The cursor survives restarts and crashes, pages are replayed idempotently, duplicate and
out-of-order pages change nothing, the cursor never moves backwards, status changes land.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import requests

from common.adapters.firestore_store import PATIENTS, REFERRALS
from common.adapters.p1_client import P1Client, P1Referral
from common.adapters.vault import FieldVault
from common.config import Settings
from common.domain.errors import DependencyUnavailableError
from common.domain.pesel import make_pesel, parse_pesel, pesel_key
from common.services.p1_sync import CURSOR_NAME, P1ReferralSync
from common.services.patients import pesel_of
from common.services.sync_cursor import SYNC_STATE
from common.services.unit_of_work import FirestoreUnitsOfWork
from emulator.p1 import start_p1
from tests.support.stack import firestore_client

TOKEN = "p1-test-token"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def p1():
    with start_p1(token=TOKEN) as server:
        yield server


def _issue(server, pesels: list[str]) -> list[dict]:
    response = requests.post(
        f"{server.base_url}/p1/v1/referrals:issue",
        json={"pesels": pesels, "valid_days": 90},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return response.json()["referrals"]


def _pesels(count: int, start: int = 0) -> list[str]:
    return [
        make_pesel(date(1950 + i % 40, 1 + i % 12, 1 + i % 28), "F", i)
        for i in range(start, start + count)
    ]


def _units(db) -> FirestoreUnitsOfWork:
    return FirestoreUnitsOfWork(db, None)


def _sync(db, server, **options) -> P1ReferralSync:
    secret = Settings.from_env().pesel_hash_key
    return P1ReferralSync(
        _units(db), P1Client(server.base_url, TOKEN), secret, vault=FieldVault.from_env(), **options
    )


def _cursor(db) -> str | None:
    snapshot = db.collection(SYNC_STATE).document(CURSOR_NAME).get()
    return snapshot.to_dict()["cursor"] if snapshot.exists else None


def _key(pesel: str) -> str:
    return pesel_key(parse_pesel(pesel, NOW.date()), Settings.from_env().pesel_hash_key)


class CrashAfter:
    """Wraps a P1 client: the process 'dies' when asked for page number `n` (1-based)."""

    def __init__(self, inner, n: int) -> None:
        self.inner, self.n, self.calls = inner, n, 0

    def referrals_since(self, cursor, limit=100):
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("process killed")
        return self.inner.referrals_since(cursor, limit)


def test_pages_land_with_patients_and_the_cursor(project, p1):
    db = firestore_client(project)
    pesels = _pesels(25)
    issued = _issue(p1, pesels)
    summary = _sync(db, p1, page_size=10).run(NOW)
    assert summary["pages"] == 3 and summary["written"] == 25 and summary["caught_up"]
    assert _cursor(db) == str(issued[-1]["sequence"])
    stored = db.collection(REFERRALS).document(issued[0]["referral_id"]).get().to_dict()
    assert stored["patient_key"] == _key(pesels[0])
    assert stored["referral"]["status"] == "active" and stored["sequence"] == issued[0]["sequence"]
    patient = db.collection(PATIENTS).document(_key(pesels[0])).get().to_dict()
    # Never a clear PESEL (not an id, not a field): encrypted, read back for P1 reports only.
    assert "pesel" not in patient and pesels[0] not in str(patient)
    opened = pesel_of(patient, _key(pesels[0]), FieldVault.from_env(), NOW.date())
    assert opened is not None and opened.value == pesels[0]
    assert all(pesels[0] not in ref.id for ref in db.collection(PATIENTS).list_documents())
    # Run again: caught up, nothing written.
    again = _sync(db, p1, page_size=10).run(NOW)
    assert again["pages"] == 0 and again["written"] == 0 and _cursor(db) == summary["cursor"]


def test_cursor_survives_a_crash_and_a_restart_without_rewriting(project, p1):
    db = firestore_client(project)
    _issue(p1, _pesels(30))
    secret = Settings.from_env().pesel_hash_key
    crashing = P1ReferralSync(
        _units(db), CrashAfter(P1Client(p1.base_url, TOKEN), 3), secret, page_size=10
    )
    with pytest.raises(RuntimeError):
        crashing.run(NOW)
    # Two pages were committed with their cursor before the crash.
    assert _cursor(db) == "20"
    versions = {s.id: s.update_time for s in db.collection(REFERRALS).stream()}
    assert len(versions) == 20
    # A new process (fresh objects): resumes at the cursor and never rewrites a stored page.
    summary = _sync(db, p1, page_size=10).run(NOW)
    assert summary["written"] == 10 and summary["stale"] == 0
    after = {s.id: s.update_time for s in db.collection(REFERRALS).stream()}
    assert len(after) == 30
    assert all(after[i] == v for i, v in versions.items())


def test_a_crash_before_the_commit_replays_the_page_idempotently(project, p1, monkeypatch):
    db = firestore_client(project)
    _issue(p1, _pesels(10))
    sync = _sync(db, p1, page_size=10)
    real_batch = db.batch

    def dying_batch():
        batch = real_batch()
        batch.commit = lambda **_: (_ for _ in ()).throw(RuntimeError("killed before commit"))
        return batch

    monkeypatch.setattr(db, "batch", dying_batch)
    with pytest.raises(RuntimeError):
        sync.run(NOW)
    assert _cursor(db) is None and not list(db.collection(REFERRALS).stream())
    monkeypatch.setattr(db, "batch", real_batch)
    assert sync.run(NOW)["written"] == 10
    assert _cursor(db) == "10"


class ScriptedP1:
    """Answers pages from a script: duplicates, out-of-order and backwards cursors."""

    def __init__(self, pages: list[tuple[list[P1Referral], str]]) -> None:
        self.pages = list(pages)

    def referrals_since(self, cursor, limit=100):
        return self.pages.pop(0) if self.pages else ([], cursor or "")


def _referral(referral_id: str, pesel: str, sequence: int, status: str = "active") -> P1Referral:
    return P1Referral(
        referral_id=referral_id,
        pesel=pesel,
        kind="primary",
        valid_from=date(2026, 3, 1),
        valid_to=date(2026, 6, 1),
        status=status,
        issued_at=NOW,
        sequence=sequence,
    )


def test_duplicate_and_out_of_order_pages_never_roll_a_status_back(project):
    db = firestore_client(project)
    pesel = _pesels(1)[0]
    secret = Settings.from_env().pesel_hash_key
    newest = _referral("R-1", pesel, 5, "cancelled")
    older = _referral("R-1", pesel, 2, "active")
    pages = [
        ([older, newest, older], "5"),  # the same referral twice in a page, out of order
        ([older], "6"),  # an old change delivered again later
    ]
    P1ReferralSync(_units(db), ScriptedP1(pages), secret).run(NOW)
    stored = db.collection(REFERRALS).document("R-1").get().to_dict()
    assert stored["referral"]["status"] == "cancelled" and stored["sequence"] == 5
    assert _cursor(db) == "6"


def test_the_cursor_never_moves_backwards(project):
    db = firestore_client(project)
    pesel = _pesels(1)[0]
    secret = Settings.from_env().pesel_hash_key
    P1ReferralSync(_units(db), ScriptedP1([([_referral("R-1", pesel, 9)], "9")]), secret).run(NOW)
    summary = P1ReferralSync(
        _units(db), ScriptedP1([([_referral("R-2", pesel, 3)], "3")]), secret
    ).run(NOW)
    assert summary["refused_backwards"] is True
    assert _cursor(db) == "9"
    assert not db.collection(REFERRALS).document("R-2").get().exists


def test_changed_referrals_update_status_and_our_used_stays_used(project, p1):
    db = firestore_client(project)
    first, second = _issue(p1, _pesels(2))
    sync = _sync(db, p1)
    sync.run(NOW)
    # Our own completed visit closed the first referral locally (VisitService does this).
    db.collection(REFERRALS).document(first["referral_id"]).update({"referral.status": "used"})
    for referral in (first, second):
        requests.post(
            f"{p1.base_url}/p1/v1/referrals/{referral['referral_id']}:cancel",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        ).raise_for_status()
    summary = sync.run(NOW)
    assert summary["written"] == 2
    statuses = {
        r["referral_id"]: db.collection(REFERRALS).document(r["referral_id"]).get().to_dict()
        for r in (first, second)
    }
    assert statuses[second["referral_id"]]["referral"]["status"] == "cancelled"
    assert statuses[first["referral_id"]]["referral"]["status"] == "used"


def test_p1_down_gives_a_retryable_error_and_nothing_half_written(project, p1):
    db = firestore_client(project)
    _issue(p1, _pesels(5))
    requests.put(f"{p1.base_url}/_faults", json={"down": True}, timeout=5).raise_for_status()
    with pytest.raises(DependencyUnavailableError):
        _sync(db, p1).run(NOW)
    assert _cursor(db) is None and not list(db.collection(REFERRALS).stream())
    requests.delete(f"{p1.base_url}/_faults", timeout=5).raise_for_status()
    assert _sync(db, p1).run(NOW)["written"] == 5


def test_the_scheduled_function_answers_503_while_p1_is_down(project, p1, monkeypatch):
    from werkzeug.test import Client

    from common import wiring
    from tests.support.stack import gateway

    monkeypatch.setenv("P1_BASE_URL", p1.base_url)
    monkeypatch.setenv("P1_TOKEN", TOKEN)
    wiring.reset()
    _issue(p1, _pesels(3))
    requests.put(f"{p1.base_url}/_faults", json={"down": True}, timeout=5).raise_for_status()
    response = Client(gateway()).post("/_functions/sync_p1_referrals", json={})
    assert response.status_code == 503 and response.headers.get("Retry-After")
    requests.delete(f"{p1.base_url}/_faults", timeout=5).raise_for_status()
    response = Client(gateway()).post("/_functions/sync_p1_referrals", json={})
    assert response.status_code == 200 and response.get_json()["written"] == 3
