"""Pull P1's e-referrals into `referrals/` and `patients/`, incrementally, by P1's cursor.

A run reads at most ``max_pages`` pages after the cursor kept in `sync_state/p1_referrals`.
Each page is ONE commit: the referrals, their patients and the new cursor together
(common/services/sync_cursor.py), so a crash replays at most the page in flight, and
replaying it changes nothing:

  set    referrals/{referral_id}   only when P1's `sequence` is newer than the stored one
                                   (precondition: the version read), so a duplicate or
                                   out-of-order page never rolls a status back
  set    patients/{patient_key}    merge: the PESEL is a field, never an id
  update sync_state/p1_referrals   cursor (precondition: the version read)

A referral that we closed ourselves (`used`, when a visit was completed) stays `used`: P1
only learns it from our report, and a status never goes back from `used`. Logs carry counts
and cursors, never a PESEL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from google.api_core import exceptions as gexc
from google.cloud import firestore

from common import structured_log as log
from common.adapters.firestore_store import PATIENTS, REFERRALS, RPC, get_many
from common.adapters.p1_client import P1Referral
from common.domain.calendar import WARSAW
from common.domain.errors import InvalidPeselError
from common.domain.pesel import parse_pesel, pesel_key
from common.services.sync_cursor import cursor_behind, load_cursor, write_cursor

CURSOR_NAME = "p1_referrals"
PAGE_SIZE = 100
MAX_PAGES = 20
MAX_COMMIT_ATTEMPTS = 5


class ReferralSource(Protocol):
    def referrals_since(
        self, cursor: str | None, limit: int = 100
    ) -> tuple[list[P1Referral], str]: ...


@dataclass
class SyncSummary:
    pages: int = 0
    received: int = 0
    written: int = 0
    stale: int = 0
    invalid: int = 0
    caught_up: bool = False
    refused_backwards: bool = False
    cursor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "received": self.received,
            "written": self.written,
            "stale": self.stale,
            "invalid": self.invalid,
            "caught_up": self.caught_up,
            "refused_backwards": self.refused_backwards,
            "cursor": self.cursor,
            **self.extra,
        }


def _newest_per_id(referrals: list[P1Referral]) -> list[P1Referral]:
    newest: dict[str, P1Referral] = {}
    for referral in referrals:
        known = newest.get(referral.referral_id)
        if known is None or referral.sequence > known.sequence:
            newest[referral.referral_id] = referral
    return list(newest.values())


class P1ReferralSync:
    def __init__(
        self,
        client: firestore.Client,
        p1: ReferralSource,
        pesel_secret: bytes,
        *,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self.db = client
        self.p1 = p1
        self.secret = pesel_secret
        self.page_size = page_size
        self.max_pages = max_pages

    def run(self, now: datetime) -> dict[str, Any]:
        summary = SyncSummary()
        for _ in range(self.max_pages):
            if not self._one_page(now, summary):
                break
        log.info("p1 referral sync", **summary.as_dict())
        return summary.as_dict()

    def _one_page(self, now: datetime, summary: SyncSummary) -> bool:
        """Sync one page; False when there is nothing more to do in this run."""
        for _ in range(MAX_COMMIT_ATTEMPTS):
            state = load_cursor(self.db, CURSOR_NAME)
            summary.cursor = state.cursor
            referrals, next_cursor = self.p1.referrals_since(state.cursor, self.page_size)
            if not referrals:
                summary.caught_up = True
                return False
            if cursor_behind(next_cursor, state.cursor):
                summary.refused_backwards = True
                log.error(
                    "P1 answered with a cursor behind ours: not followed",
                    stored=state.cursor,
                    offered=next_cursor,
                )
                return False
            batch = self.db.batch()
            counts = self._write_page(batch, _newest_per_id(referrals), now)
            write_cursor(batch, self.db, state, next_cursor, now, last_page_size=len(referrals))
            try:
                batch.commit(**RPC)
            except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound):
                continue  # another run (or a write of ours) moved first: read again
            summary.pages += 1
            summary.received += len(referrals)
            summary.written += counts["written"]
            summary.stale += counts["stale"]
            summary.invalid += counts["invalid"]
            summary.cursor = next_cursor
            return True
        log.warning("p1 referral sync: page kept conflicting, left for the next run")
        return False

    def _write_page(
        self, batch: firestore.WriteBatch, referrals: list[P1Referral], now: datetime
    ) -> dict[str, int]:
        today = now.astimezone(WARSAW).date()
        refs = {
            r.referral_id: self.db.collection(REFERRALS).document(r.referral_id) for r in referrals
        }
        snapshots = {s.reference.path: s for s in self.db.get_all(list(refs.values()), **RPC)}
        counts = {"written": 0, "stale": 0, "invalid": 0}
        for referral in referrals:
            try:
                pesel = parse_pesel(referral.pesel, today)
            except InvalidPeselError:
                counts["invalid"] += 1  # counted, never logged: the value is a PESEL
                continue
            ref = refs[referral.referral_id]
            snapshot = snapshots.get(ref.path)
            stored = snapshot.to_dict() if snapshot is not None and snapshot.exists else None
            if stored is not None and int(stored.get("sequence") or 0) >= referral.sequence:
                counts["stale"] += 1
                continue
            key = pesel_key(pesel, self.secret)
            body = referral.to_referral().model_dump(mode="json")
            if stored and (stored.get("referral") or {}).get("status") == "used":
                body["status"] = "used"  # closed by our own completed visit: terminal
            document = {
                "patient_key": key,
                "referral": body,
                "sequence": referral.sequence,
                "issued_at": referral.issued_at,
                "source": "p1",
                "synced_at": now,
            }
            if stored is None:
                batch.create(ref, document)
            else:
                batch.update(
                    ref,
                    document,
                    option=self.db.write_option(last_update_time=snapshot.update_time),
                )
            batch.set(
                self.db.collection(PATIENTS).document(key),
                {
                    "patient_key": key,
                    "pesel": pesel.value,
                    "birth_date": pesel.birth_date.isoformat(),
                    "sex": pesel.sex,
                },
                merge=True,
            )
            counts["written"] += 1
        return counts


def referral_documents(client: firestore.Client, referral_ids: list[str]) -> dict[str, Any]:
    """The stored referrals by id (tests and operators)."""
    refs = [client.collection(REFERRALS).document(r) for r in referral_ids]
    found = get_many(client, refs)
    return {ref.id: found[ref.path] for ref in refs}
