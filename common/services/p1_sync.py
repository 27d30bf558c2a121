"""Pull P1's e-referrals into `referrals/` and `patients/`, incrementally, by P1's cursor.

A run reads at most ``max_pages`` pages after the cursor kept in `sync_state/p1_referrals`.
Each page is ONE commit: the referrals, their patients and the new cursor together
(common/services/sync_cursor.py), so a crash replays at most the page in flight, and
replaying it changes nothing:

  set    referrals/{referral_id}   only when P1's `sequence` is newer than the stored one
                                   (precondition: the version read), so a duplicate or
                                   out-of-order page never rolls a status back
  set    patients/{patient_key}    merge: birth date, sex and the PESEL encrypted (pesel_enc,
                                   common/services/patients.py): never a clear PESEL, never
                                   an id
  update sync_state/p1_referrals   cursor (precondition: the version read)

The page is fetched from P1 first, outside any unit of work (an attempt may run more than
once; a call to P1 is not part of one); then the page's unit of work (common/services/
unit_of_work.py) reads the cursor again and stages nothing if another run moved it meanwhile:
this run then reads on from the new cursor. A referral changed under the attempt (a stale
version) makes the unit of work run the attempt again from its reads, under the one retry
policy; the page's P1 answer is still good, the cursor has not moved.

A referral that we closed ourselves (`used`, when a visit was completed) stays `used`: P1
only learns it from our report, and a status never goes back from `used`. Logs carry counts
and cursors, never a PESEL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from common import structured_log as log
from common.adapters.firestore_store import PATIENTS, REFERRALS
from common.adapters.p1_client import P1Referral
from common.adapters.vault import FieldVault
from common.domain.calendar import WARSAW
from common.domain.errors import InvalidPeselError
from common.domain.pesel import parse_pesel, pesel_key
from common.services.patients import identity_fields
from common.services.sync_cursor import cursor_behind, load_cursor, stage_cursor
from common.services.unit_of_work import UnitOfWork, UnitOfWorkRunner

CURSOR_NAME = "p1_referrals"
PAGE_SIZE = 100
MAX_PAGES = 20


class _PageContended(Exception):
    """The page's commit kept finding its reads stale: left for the next run."""


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
        units: UnitOfWorkRunner,
        p1: ReferralSource,
        pesel_secret: bytes,
        *,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
        vault: FieldVault | None = None,
    ) -> None:
        self.units = units
        self.p1 = p1
        self.secret = pesel_secret
        self.vault = vault
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
        state = load_cursor(self.units.reader(), CURSOR_NAME)
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
        page = _newest_per_id(referrals)

        def attempt(uow: UnitOfWork) -> dict[str, int] | None:
            if load_cursor(uow, CURSOR_NAME).version != state.version:
                return None  # another run moved the cursor since P1 was asked: not our page
            counts = self._stage_page(uow, page, now)
            stage_cursor(uow, state, next_cursor, now, last_page_size=len(referrals))
            return counts

        try:
            # A conflict (a referral or the cursor created meanwhile): run the attempt again,
            # from its reads; it sees what is there now.
            counts = self.units.run(attempt, on_conflict=lambda _uow: None, gave_up=_PageContended)
        except _PageContended:
            log.warning("p1 referral sync: page kept conflicting, left for the next run")
            return False
        if counts is None:
            return True  # read on from where the other run left the cursor
        summary.pages += 1
        summary.received += len(referrals)
        summary.written += counts["written"]
        summary.stale += counts["stale"]
        summary.invalid += counts["invalid"]
        summary.cursor = next_cursor
        return True

    def _stage_page(
        self, uow: UnitOfWork, referrals: list[P1Referral], now: datetime
    ) -> dict[str, int]:
        today = now.astimezone(WARSAW).date()
        stored_docs = uow.get_all([(REFERRALS, r.referral_id) for r in referrals])
        counts = {"written": 0, "stale": 0, "invalid": 0}
        for referral in referrals:
            try:
                pesel = parse_pesel(referral.pesel, today)
            except InvalidPeselError:
                counts["invalid"] += 1  # counted, never logged: the value is a PESEL
                continue
            found = stored_docs[(REFERRALS, referral.referral_id)]
            stored = found.data if found is not None else None
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
            if found is None:
                uow.create(REFERRALS, referral.referral_id, document)
            else:
                uow.update(REFERRALS, referral.referral_id, document, if_version=found.version)
            uow.set(PATIENTS, key, identity_fields(pesel, key, self.vault), merge=True)
            counts["written"] += 1
        return counts


def referral_documents(units: UnitOfWorkRunner, referral_ids: list[str]) -> dict[str, Any]:
    """The stored referrals by id (tests and operators)."""
    found = units.reader().get_all([(REFERRALS, r) for r in referral_ids])
    return {r: (d.data if (d := found[(REFERRALS, r)]) is not None else None) for r in referral_ids}
