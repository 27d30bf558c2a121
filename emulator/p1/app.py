"""The P1 simulator: e-referrals out (by a change cursor), vaccination records in (idempotent).

State is in memory, optionally snapshotted to a JSON file (``state_path``) so that a cursor
held by our system stays meaningful across a simulator restart. See README.md for the API.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common import clock as common_clock
from common.domain.eligibility import CohortRules, DoseKind, load_cohort_rules
from common.domain.errors import InvalidPeselError
from common.domain.pesel import make_pesel, parse_pesel
from common.domain.rulebook import RuleBook, load_rule_book
from common.domain.vaccines import VaccineCatalogue, load_catalogue
from emulator.faults import (
    ApiError,
    StateFile,
    install_simulator,
    parse_body,
    parse_cursor,
    parse_limit,
    simulation_only,
)

DEFAULT_TOKEN = "local-p1-token"  # noqa: S105 (documented local default, not a secret)
API = "/p1/v1"
DEFAULT_PAGE = 100
MAX_PAGE = 1000
_MAX_SERIAL = 4999
# A cohort without a bound is clamped to people aged 5..100 on the rules date.
_OLDEST_AGE = 100
_YOUNGEST_AGE = 5

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return common_clock.now()  # the one clock, shifted with the rest of the stack


class _Body(BaseModel):
    # hide_input_in_errors: a validation error must not echo a PESEL back.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class IssueReferrals(_Body):
    pesels: list[str] = Field(min_length=1, max_length=1000)
    kind: DoseKind = "primary"
    valid_days: int = Field(default=90, ge=1, le=365)
    valid_from: date | None = None
    booster_number: int = Field(default=0, ge=0, le=9)


class IssueCohort(_Body):
    born_from: int = Field(ge=1900, le=2299)
    born_to: int = Field(ge=1900, le=2299)
    count: int = Field(ge=1, le=10_000)
    valid_days: int = Field(default=90, ge=1, le=365)
    valid_from: date | None = None
    kind: DoseKind = "primary"
    seed: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> IssueCohort:
        if self.born_from > self.born_to:
            raise ValueError("born_from must not be after born_to")
        return self


class OpenCohorts(_Body):
    rules_date: date
    count: int = Field(default=10, ge=1, le=1000, description="patients per open cohort")
    max_total: int = Field(default=1000, ge=1, le=10_000)
    valid_days: int = Field(default=90, ge=1, le=365)
    seed: int = 0


class VaccinationReport(_Body):
    vaccination_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    pesel: str
    product: str = Field(min_length=1, max_length=64)
    lot_number: str = Field(min_length=1, max_length=64)
    dose_number: int = Field(ge=1, le=10)
    dose_kind: DoseKind
    given_on: date
    point_id: str = Field(min_length=1, max_length=128)


class PeselQuery(_Body):
    pesel: str


class ProfileEntry(_Body):
    pesel: str
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9]{9,15}$")


class SetProfiles(_Body):
    profiles: list[ProfileEntry] = Field(min_length=1, max_length=10_000)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


class P1State:
    """All P1 data behind one lock. Records are kept as JSON-ready dicts (cheap snapshots)."""

    def __init__(
        self,
        clock: Clock,
        catalogue: VaccineCatalogue,
        cohorts: CohortRules,
        state_file: StateFile,
    ) -> None:
        self.clock = clock
        self.catalogue = catalogue
        self.cohorts = cohorts
        self.rule_book: RuleBook | None = None
        self._file = state_file
        self._lock = threading.Lock()
        self.sequence = 0
        self.referral_counter = 0
        self.record_counter = 0
        self.referrals: dict[str, dict[str, Any]] = {}
        self.vaccinations: dict[str, dict[str, Any]] = {}
        # The patients' IKP contact data, by PESEL (the phone they verified in IKP).
        self.profiles: dict[str, dict[str, Any]] = {}
        self._restore(state_file.load())

    # --- persistence ---

    def _restore(self, data: dict[str, Any] | None) -> None:
        if not data:
            return
        self.sequence = int(data["sequence"])
        self.referral_counter = int(data["referral_counter"])
        self.record_counter = int(data["record_counter"])
        self.referrals = dict(data["referrals"])
        self.vaccinations = dict(data["vaccinations"])
        self.profiles = dict(data.get("profiles") or {})

    def _save(self) -> None:
        self._file.save(
            {
                "sequence": self.sequence,
                "referral_counter": self.referral_counter,
                "record_counter": self.record_counter,
                "referrals": self.referrals,
                "vaccinations": self.vaccinations,
                "profiles": self.profiles,
            }
        )

    # --- referrals ---

    def _touch(self, referral: dict[str, Any]) -> None:
        # Every change takes a new sequence number: that is what the cursor follows.
        self.sequence += 1
        referral["sequence"] = self.sequence

    def _has_active(self, pesel: str, kind: str, booster_number: int) -> bool:
        return any(
            r["pesel"] == pesel
            and r["kind"] == kind
            and r["booster_number"] == booster_number
            and r["status"] == "active"
            for r in self.referrals.values()
        )

    def _next_booster_number(self, pesel: str) -> int:
        earlier = [
            r["booster_number"]
            for r in self.referrals.values()
            if r["pesel"] == pesel and r["kind"] == "booster" and r["status"] != "cancelled"
        ]
        return max(earlier, default=0) + 1

    def issue(
        self,
        pesels: list[str],
        kind: str,
        valid_from: date,
        valid_days: int,
        booster_number: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """Issue one referral per PESEL unless an equivalent active one exists (P1 issues
        one per person); returns (issued, skipped)."""
        today = self.clock().date()
        for raw in pesels:
            _require_pesel(raw, today)
        issued: list[dict[str, Any]] = []
        skipped = 0
        with self._lock:
            for pesel in pesels:
                number = 0
                if kind == "booster":
                    number = booster_number or self._next_booster_number(pesel)
                if self._has_active(pesel, kind, number):
                    skipped += 1
                    continue
                issued.append(self._new_referral(pesel, kind, valid_from, valid_days, number))
            if issued:
                self._save()
        return issued, skipped

    def _new_referral(
        self, pesel: str, kind: str, valid_from: date, valid_days: int, booster_number: int
    ) -> dict[str, Any]:
        self.referral_counter += 1
        referral: dict[str, Any] = {
            "referral_id": f"P1-REF-{self.referral_counter:08d}",
            "pesel": pesel,
            "kind": kind,
            "valid_from": valid_from.isoformat(),
            "valid_to": (valid_from + timedelta(days=valid_days)).isoformat(),
            "status": "active",
            "booster_number": booster_number,
            "issued_at": _iso(self.clock()),
        }
        self._touch(referral)
        self.referrals[referral["referral_id"]] = referral
        return referral

    def changes_since(self, since: int, limit: int) -> tuple[list[dict[str, Any]], int, bool]:
        with self._lock:
            if since > self.sequence:
                raise ApiError(
                    400,
                    "cursor_ahead",
                    "The cursor is ahead of this server's history (was its state lost?); "
                    "restart from an empty cursor.",
                )
            changed = sorted(
                (r for r in self.referrals.values() if r["sequence"] > since),
                key=lambda r: r["sequence"],
            )
        page = [dict(r) for r in changed[:limit]]
        next_cursor = page[-1]["sequence"] if page else since
        return page, next_cursor, len(changed) > limit

    def get_referral(self, referral_id: str) -> dict[str, Any]:
        with self._lock:
            referral = self.referrals.get(referral_id)
            if referral is None:
                raise ApiError(404, "referral_not_found", "No such referral.")
            return dict(referral)

    def cancel(self, referral_id: str) -> dict[str, Any]:
        with self._lock:
            referral = self.referrals.get(referral_id)
            if referral is None:
                raise ApiError(404, "referral_not_found", "No such referral.")
            if referral["status"] == "used":
                raise ApiError(409, "referral_used", "A used referral cannot be cancelled.")
            if referral["status"] == "active":
                referral["status"] = "cancelled"
                self._touch(referral)
                self._save()
            return dict(referral)

    # --- patients' profiles ---

    def set_profiles(self, entries: list[ProfileEntry]) -> int:
        today = self.clock().date()
        for entry in entries:
            _require_pesel(entry.pesel, today)
        with self._lock:
            for entry in entries:
                self.profiles[entry.pesel] = {
                    "phone": entry.phone,
                    "phone_verified_at": _iso(self.clock()) if entry.phone else None,
                }
            self._save()
        return len(entries)

    def profile(self, pesel: str) -> dict[str, Any]:
        """The IKP contact data of a patient P1 knows (a profile, or a referral); 404 else."""
        _require_pesel(pesel, self.clock().date())
        with self._lock:
            found = self.profiles.get(pesel)
            known = found is not None or any(r["pesel"] == pesel for r in self.referrals.values())
        if not known:
            raise ApiError(404, "patient_not_found", "P1 knows no such patient.")
        return dict(found or {"phone": None, "phone_verified_at": None})

    # --- vaccinations ---

    def report(self, report: VaccinationReport) -> tuple[dict[str, Any], bool]:
        """Record a vaccination; (record, created). Same id + same body replays the record,
        same id + another body is a conflict: P1 dedupes on our vaccination id."""
        _require_pesel(report.pesel, self.clock().date())
        if report.product not in self.catalogue:
            raise ApiError(400, "unknown_product", "Unknown vaccine product.")
        submitted = report.model_dump(mode="json")
        with self._lock:
            known = self.vaccinations.get(report.vaccination_id)
            if known is not None:
                if known["request"] != submitted:
                    raise ApiError(
                        409,
                        "vaccination_conflict",
                        "This vaccination_id was already reported with different data.",
                    )
                return dict(known["record"]), False
            referral = self._matching_referral(report.pesel, report.dose_kind)
            if referral is not None and self._completes_series(report):
                referral["status"] = "used"
                self._touch(referral)
            self.record_counter += 1
            record = submitted | {
                "p1_record_id": f"P1-VAC-{self.record_counter:08d}",
                "referral_id": referral["referral_id"] if referral else None,
                "received_at": _iso(self.clock()),
            }
            self.vaccinations[report.vaccination_id] = {"request": submitted, "record": record}
            self._save()
            return dict(record), True

    def _matching_referral(self, pesel: str, kind: str) -> dict[str, Any] | None:
        active = [
            r
            for r in self.referrals.values()
            if r["pesel"] == pesel and r["kind"] == kind and r["status"] == "active"
        ]
        return min(active, key=lambda r: r["sequence"], default=None)

    def _completes_series(self, report: VaccinationReport) -> bool:
        # A booster is one dose; a primary series ends with the product's last dose.
        if report.dose_kind == "booster":
            return True
        return report.dose_number >= self.catalogue.get(report.product).doses

    def get_vaccination(self, vaccination_id: str) -> dict[str, Any]:
        with self._lock:
            known = self.vaccinations.get(vaccination_id)
            if known is None:
                raise ApiError(404, "vaccination_not_found", "No such vaccination.")
            return dict(known["record"])

    def vaccinations_of(self, pesel: str) -> list[dict[str, Any]]:
        with self._lock:
            records = [
                dict(v["record"])
                for v in self.vaccinations.values()
                if v["record"]["pesel"] == pesel
            ]
        return sorted(records, key=lambda r: (r["given_on"], r["dose_number"]))


def _require_pesel(raw: str, today: date) -> None:
    try:
        parse_pesel(raw, today)
    except InvalidPeselError as exc:
        # The domain message never echoes the number.
        raise ApiError(400, exc.code, exc.message) from None


# --- generated patients ----------------------------------------------------------------


def generate_pesels(
    rng: random.Random, born_from: int, born_to: int, count: int, latest_birth: date
) -> list[str]:
    """``count`` distinct valid PESELs born in ``born_from..born_to``, none after
    ``latest_birth``; fewer only if the range is (nearly) empty."""
    first = date(born_from, 1, 1)
    last = min(date(born_to, 12, 31), latest_birth)
    if last < first:
        return []
    span = (last - first).days
    found: dict[str, None] = {}  # dict keeps insertion order: deterministic output
    for _ in range(count * 5):
        if len(found) == count:
            break
        birth = first + timedelta(days=rng.randint(0, span))
        found[make_pesel(birth, rng.choice("FM"), rng.randint(0, _MAX_SERIAL))] = None
    return list(found)


def _cohort_bounds(born_from: int | None, born_to: int | None, on: date) -> tuple[int, int]:
    lo = born_from if born_from is not None else on.year - _OLDEST_AGE
    hi = born_to if born_to is not None else on.year - _YOUNGEST_AGE
    return max(lo, on.year - _OLDEST_AGE), min(hi, on.year - _YOUNGEST_AGE)


# --- the HTTP app ----------------------------------------------------------------------


def make_app(
    *,
    token: str | None = DEFAULT_TOKEN,
    state_path: Path | None = None,
    seed: int = 0,
    clock: Clock = _utc_now,
    catalogue: VaccineCatalogue | None = None,
    cohorts: CohortRules | None = None,
) -> Flask:
    """The P1 simulator as a WSGI app; its state is ``app.extensions["p1"]``.

    ``token=None`` when it is served over mutual TLS (``start_p1(pki=...)``): the client
    certificate is the credential, as with the real P1."""
    app = Flask("p1-simulator")
    state = P1State(
        clock,
        catalogue or load_catalogue(),
        cohorts or load_cohort_rules(),
        StateFile(state_path),
    )
    # Without pinned cohorts, P1 issues referrals by the rules in force on the rules date
    # (common/domain/rules/index.yaml), as the real P1 followed each announcement.
    state.rule_book = None if cohorts is not None else load_rule_book()
    app.extensions["p1"] = state
    install_simulator(app, name="p1", api_prefix=f"{API}/", token=token, seed=seed)
    _add_referral_routes(app, state)
    _add_vaccination_routes(app, state)
    _add_profile_routes(app, state)
    return app


def _add_profile_routes(app: Flask, state: P1State) -> None:
    @app.post(f"{API}/patients:profile")
    def patient_profile() -> Response:
        # POST: the PESEL travels in the body, never in a URL.
        return jsonify(state.profile(parse_body(PeselQuery).pesel))

    @app.post(f"{API}/profiles:set")
    @simulation_only
    def set_profiles() -> Response:
        return jsonify({"updated": state.set_profiles(parse_body(SetProfiles).profiles)})


def _issued_body(issued: list[dict[str, Any]], skipped: int) -> dict[str, Any]:
    return {"issued": len(issued), "skipped": skipped, "referrals": issued}


def _add_referral_routes(app: Flask, state: P1State) -> None:
    @app.get(f"{API}/referrals")
    def list_referrals() -> Response:
        since = parse_cursor(request.args.get("since"))
        limit = parse_limit(request.args.get("limit"), DEFAULT_PAGE, MAX_PAGE)
        page, next_cursor, has_more = state.changes_since(since, limit)
        return jsonify({"referrals": page, "next_cursor": str(next_cursor), "has_more": has_more})

    @app.get(f"{API}/referrals/<referral_id>")
    def get_referral(referral_id: str) -> Response:
        return jsonify(state.get_referral(referral_id))

    @app.post(f"{API}/referrals:issue")
    @simulation_only
    def issue_referrals() -> tuple[Response, int]:
        body = parse_body(IssueReferrals)
        valid_from = body.valid_from or state.clock().date()
        issued, skipped = state.issue(
            body.pesels, body.kind, valid_from, body.valid_days, body.booster_number
        )
        return jsonify(_issued_body(issued, skipped)), 201

    @app.post(f"{API}/referrals/<referral_id>:cancel")
    @simulation_only
    def cancel_referral(referral_id: str) -> Response:
        return jsonify(state.cancel(referral_id))

    @app.post(f"{API}/cohorts:issue")
    @simulation_only
    def issue_cohort() -> tuple[Response, int]:
        body = parse_body(IssueCohort)
        today = state.clock().date()
        rng = random.Random(f"{body.seed}:{body.born_from}:{body.born_to}")
        pesels = generate_pesels(rng, body.born_from, body.born_to, body.count, today)
        if not pesels:
            raise ApiError(400, "empty_cohort", "No birth dates in that range are in the past.")
        issued, skipped = state.issue(pesels, body.kind, body.valid_from or today, body.valid_days)
        return jsonify(_issued_body(issued, skipped)), 201

    @app.post(f"{API}/cohorts:open")
    @simulation_only
    def open_cohorts() -> tuple[Response, int]:
        body = parse_body(OpenCohorts)
        latest_birth = min(body.rules_date, state.clock().date())
        budget = body.max_total
        issued: list[dict[str, Any]] = []
        skipped = 0
        opened: list[dict[str, Any]] = []
        rules = (
            state.rule_book.cohorts_for(body.rules_date)
            if state.rule_book is not None
            else state.cohorts
        )
        for index, cohort in enumerate(rules.cohorts):
            if cohort.opens_at.date() > body.rules_date or budget <= 0:
                continue
            lo, hi = _cohort_bounds(cohort.born_from, cohort.born_to, body.rules_date)
            if lo > hi:
                continue
            rng = random.Random(f"{body.seed}:cohort:{index}")
            pesels = generate_pesels(rng, lo, hi, min(body.count, budget), latest_birth)
            budget -= len(pesels)
            # valid_from is the rules date, not the historic opening: the simulation wants
            # referrals usable "now" in its own timeline.
            new, dup = state.issue(pesels, "primary", body.rules_date, body.valid_days)
            issued += new
            skipped += dup
            opened.append({"born_from": lo, "born_to": hi, "issued": len(new)})
        body_out = _issued_body(issued, skipped) | {"cohorts": opened}
        return jsonify(body_out | {"rules_version": rules.version}), 201


def _add_vaccination_routes(app: Flask, state: P1State) -> None:
    @app.post(f"{API}/vaccinations")
    def report_vaccination() -> tuple[Response, int]:
        record, created = state.report(parse_body(VaccinationReport))
        return jsonify(record), 201 if created else 200

    @app.get(f"{API}/vaccinations")
    def refuse_listing_by_url() -> Response:
        # A PESEL in a query string ends up in access logs and proxies: refuse the shape.
        raise ApiError(
            400,
            "pesel_in_url",
            f"Do not put a PESEL in a URL; POST {API}/vaccinations:query with {{pesel}}.",
        )

    @app.post(f"{API}/vaccinations:query")
    def query_vaccinations() -> Response:
        body = parse_body(PeselQuery)
        _require_pesel(body.pesel, state.clock().date())
        return jsonify({"vaccinations": state.vaccinations_of(body.pesel)})

    @app.get(f"{API}/vaccinations/<vaccination_id>")
    def get_vaccination(vaccination_id: str) -> Response:
        return jsonify(state.get_vaccination(vaccination_id))
