"""P1ReferralSync against the in-memory unit of work and a scripted P1.

Checked: a page and its cursor land in one commit; duplicate and out-of-order changes never
roll a referral back; our own `used` stays; the cursor never goes backwards; another run
moving the cursor while P1 answers; a referral changed under the commit; Firestore down (the
page and the cursor are both missing, then both land); P1 down (the 503-type error, nothing
written).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from common.adapters.firestore_store import PATIENTS, REFERRALS
from common.adapters.p1_client import P1Referral
from common.adapters.vault import FieldVault
from common.domain.errors import DependencyUnavailableError
from common.domain.pesel import make_pesel, parse_pesel, pesel_key
from common.services.p1_sync import CURSOR_NAME, P1ReferralSync
from common.services.patients import pesel_of
from common.services.sync_cursor import SYNC_STATE
from tests.support.fake_store import FakeFirestore, FakeUnitsOfWork

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECRET = b"unit-test-secret"
VAULT = FieldVault({"t": b"k" * 32}, "t")


def pesel(n: int) -> str:
    return make_pesel(date(1950 + n % 40, 1 + n % 12, 1 + n % 28), "F", n)


def referral(n: int, sequence: int, status: str = "active", who: int | None = None) -> P1Referral:
    return P1Referral(
        referral_id=f"R-{n}",
        pesel=pesel(n if who is None else who),
        kind="primary",
        valid_from=date(2026, 3, 1),
        valid_to=date(2026, 6, 1),
        status=status,
        issued_at=NOW,
        sequence=sequence,
    )


class ScriptedP1:
    """Answers pages from a script; `before_answer` runs once, as P1 answers."""

    def __init__(self, pages: list[tuple[list[P1Referral], str]]) -> None:
        self.pages = list(pages)
        self.asked: list[str | None] = []
        self.down = False
        self.before_answer: Any = None

    def referrals_since(self, cursor: str | None, limit: int = 100):
        self.asked.append(cursor)
        if self.down:
            raise DependencyUnavailableError("P1 is unavailable (connection)")
        if self.before_answer is not None:
            hook, self.before_answer = self.before_answer, None
            hook()
        return self.pages.pop(0) if self.pages else ([], cursor or "")


def sync(
    p1: ScriptedP1, store: FakeFirestore | None = None
) -> tuple[P1ReferralSync, FakeFirestore]:
    units = FakeUnitsOfWork(store or FakeFirestore(), now=lambda: NOW)
    return P1ReferralSync(units, p1, SECRET, page_size=2, vault=VAULT), units.store


def cursor(store: FakeFirestore) -> str | None:
    return (store.data(SYNC_STATE, CURSOR_NAME) or {}).get("cursor")


def key(n: int) -> str:
    return pesel_key(parse_pesel(pesel(n), NOW.date()), SECRET)


# -- the decisions ------------------------------------------------------------------------------
def test_each_page_lands_with_its_patients_and_its_cursor_in_one_commit():
    p1 = ScriptedP1([([referral(1, 1), referral(2, 2)], "2"), ([referral(3, 3)], "3")])
    service, store = sync(p1)
    summary = service.run(NOW)
    assert (summary["pages"], summary["written"], summary["caught_up"]) == (2, 3, True)
    assert store.commits == 2 and cursor(store) == "3"
    assert p1.asked == [None, "2", "3"]
    stored = store.data(REFERRALS, "R-1")
    assert stored["patient_key"] == key(1) and stored["sequence"] == 1
    patient = store.data(PATIENTS, key(1))
    # Never a clear PESEL (not an id, not a field): encrypted, for the P1 report only.
    assert "pesel" not in patient and pesel(1) not in str(patient)
    assert pesel_of(patient, key(1), VAULT, NOW.date()).value == pesel(1)
    assert (patient["birth_date"], patient["sex"]) == ("1951-02-02", "F")
    assert all(pesel(1) not in doc_id for doc_id in store.collection(PATIENTS))


def test_duplicates_and_older_changes_never_roll_a_status_back():
    newest, older = referral(1, 5, "cancelled"), referral(1, 2, "active")
    p1 = ScriptedP1([([older, newest, older], "5"), ([older], "6")])
    service, store = sync(p1)
    summary = service.run(NOW)
    assert summary["written"] == 1 and summary["stale"] == 1
    stored = store.data(REFERRALS, "R-1")
    assert stored["referral"]["status"] == "cancelled" and stored["sequence"] == 5
    assert cursor(store) == "6"


def test_a_referral_we_closed_stays_used():
    service, store = sync(
        ScriptedP1([([referral(1, 1)], "1"), ([referral(1, 2, "cancelled")], "2")])
    )
    service.max_pages = 1
    service.run(NOW)
    stored = store.data(REFERRALS, "R-1")
    store.put(REFERRALS, "R-1", {**stored, "referral": {**stored["referral"], "status": "used"}})
    assert service.run(NOW)["written"] == 1
    assert store.data(REFERRALS, "R-1")["referral"]["status"] == "used"
    assert store.data(REFERRALS, "R-1")["sequence"] == 2


def test_the_cursor_never_moves_backwards():
    service, store = sync(ScriptedP1([([referral(1, 9)], "9")]))
    service.run(NOW)
    service.p1 = ScriptedP1([([referral(2, 3)], "3")])
    summary = service.run(NOW)
    assert summary["refused_backwards"] is True and summary["pages"] == 0
    assert cursor(store) == "9" and store.data(REFERRALS, "R-2") is None


def test_an_invalid_pesel_is_counted_not_written():
    bad = referral(1, 1).model_copy(update={"pesel": "44051401358"})
    service, store = sync(ScriptedP1([([bad, referral(2, 2)], "2")]))
    summary = service.run(NOW)
    assert (summary["invalid"], summary["written"]) == (1, 1)
    assert store.data(REFERRALS, "R-1") is None and cursor(store) == "2"


# -- someone else got there first ---------------------------------------------------------------
def test_another_run_moving_the_cursor_while_p1_answers_wins_and_this_run_reads_on():
    """Two runs at once: the other commits its page and cursor between our call to P1 and our
    commit. Ours writes nothing of that page and asks P1 again from the new cursor."""
    store = FakeFirestore()
    p1 = ScriptedP1([([referral(1, 1, "active")], "1"), ([referral(2, 2)], "2")])
    p1.before_answer = lambda: (
        store.put(SYNC_STATE, CURSOR_NAME, {"cursor": "1"}),
        store.put(REFERRALS, "R-1", {"sequence": 1, "referral": {"status": "other run"}}),
    )
    service, _ = sync(p1, store)
    summary = service.run(NOW)
    assert p1.asked == [None, "1", "2"]
    assert summary["pages"] == 1 and summary["written"] == 1
    assert store.data(REFERRALS, "R-1")["referral"]["status"] == "other run"
    assert cursor(store) == "2"


def test_a_referral_changed_under_the_commit_is_read_again_not_overwritten():
    """Our visit closes the referral (`used`) between the page's read and its commit: the
    stale version fails the commit, the attempt runs again from its reads, `used` stays."""
    service, store = sync(ScriptedP1([([referral(1, 1)], "1")]))
    service.max_pages = 1
    service.run(NOW)
    service.p1 = ScriptedP1([([referral(1, 2, "cancelled")], "2")])
    real_commit = store.commit
    stored = store.data(REFERRALS, "R-1")

    def visit_first(writes, now):
        if store.data(REFERRALS, "R-1")["referral"]["status"] != "used":
            store.put(
                REFERRALS, "R-1", {**stored, "referral": {**stored["referral"], "status": "used"}}
            )
        return real_commit(writes, now)

    store.commit = visit_first  # type: ignore[method-assign]
    summary = service.run(NOW)
    assert summary["written"] == 1 and cursor(store) == "2"
    assert store.data(REFERRALS, "R-1")["referral"]["status"] == "used"
    assert store.data(REFERRALS, "R-1")["sequence"] == 2


# -- Firestore down, P1 down ------------------------------------------------------------------
def test_firestore_down_writes_neither_the_page_nor_the_cursor_and_the_next_run_does():
    pages = [([referral(1, 1), referral(2, 2)], "2")]
    service, store = sync(ScriptedP1(pages))
    store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        service.run(NOW)
    assert cursor(store) is None and store.collection(REFERRALS) == {}
    assert store.collection(PATIENTS) == {}
    service.p1 = ScriptedP1(pages)
    assert service.run(NOW)["written"] == 2 and cursor(store) == "2"


def test_p1_down_raises_the_retryable_error_with_nothing_written():
    p1 = ScriptedP1([([referral(1, 1)], "1")])
    p1.down = True
    service, store = sync(p1)
    with pytest.raises(DependencyUnavailableError):
        service.run(NOW)
    assert store.commits == 0 and cursor(store) is None
    p1.down = False
    assert service.run(NOW)["written"] == 1 and cursor(store) == "1"
