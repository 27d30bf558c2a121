"""Consented re-planning (issue 15, item 2): move the bookings a change affects, with consent.

`POST /v1/admin/replans` names a finished impact dry run (common/services/impact.py): the
change is previewed there, and its cases are what this job works on. Bookings the dry run did
not list are never read, let alone touched. For each case (one series) the worker:

1. finds the best valid alternative (common/domain/replan.py: nearest point, nearest day;
   both doses of a series at one point, dose 2 in the product's window);
2. holds its seats, as a timed hold does (seat documents with `hold_id` and `held_until`:
   taken to everyone else, the free count down by one) and writes the offer, in one commit;
3. tells the patient: an SMS to their verified number (answered TAK / NIE), the portal
   (`GET /v1/offers`, `POST /v1/offers/{id}`), and with no number on file the offer is on the
   hotline's call list (`GET /v1/offers?list=hotline`), where an agent answers for the caller.

TAK (`accept`): the series moves to the held seats and its old seats are freed, in one commit
(as a reschedule: same appointment ids, `appointment.rescheduled` events). NIE or silence past
`expires_at`: the seats are released and the next alternative offered, up to `max_offers`;
then the case is `escalated` to the hotline's list. A booking that changed meanwhile (moved or
cancelled by the patient) ends its offer as `gone`.

The job is resumable: offers have deterministic ids (job, series), created with a
precondition, so a worker killed mid-page and run again skips what it had offered; the
cursor (the dry run's page) moves after each page with the job's version as precondition. It
runs at `rate` cases a second (default 20), the booking path's headroom. Progress is counted
from the offers themselves (Firestore count queries), so no document is written per answer
but the offer's own. The audit log has the admin's start and every agent's answer (the
roles audited, common/services/audit.py); the job's own steps and a patient's answers are kept
on the offer itself (`history`: each answer, when and which; `answered_by`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common import structured_log as log
from common.adapters.firestore_store import APPOINTMENTS, SEATS
from common.domain.appointments import Appointment
from common.domain.calendar import WARSAW, SlotRef
from common.domain.errors import (
    DependencyUnavailableError,
    DomainError,
    InvalidStateTransitionError,
    NotFoundError,
    OverloadedError,
    ValidationFailedError,
)
from common.domain.events import AppointmentRescheduled
from common.domain.impact import AffectedCase
from common.domain.replan import (
    ACCEPTED,
    DEFAULT_MAX_OFFERS,
    DEFAULT_OFFER_HOURS,
    ESCALATED,
    GONE,
    NEXT,
    OFFER_STATUSES,
    OFFERED,
    Candidate,
    Window,
    after_no,
    has_alternative,
    offer_id,
    rank,
    window,
)
from common.domain.vaccines import second_dose_window
from common.services.availability import stage_free_changes
from common.services.impact import ImpactJobs, _birth_date, parse_change
from common.services.search import SearchQuery
from common.services.seats import SlotChoice, hold_seat_document, seat_document
from common.services.unit_of_work import ONCE, Document, StoredResponse, UnitOfWork

REPLAN_JOBS = "replan_jobs"
OFFERS = "replan_offers"
SLICE_S = 240.0
LEASE = timedelta(minutes=5)
KEEP = timedelta(days=60)  # offers and jobs (Firestore TTL on `purge_at`)
SEARCH_RADIUS_KM = 100
SEARCH_POINTS = 10
CANDIDATES_PER_POINT = 40  # the earliest free slots of a point considered for a case
CANDIDATE_DAYS = 30  # from the earliest allowed day, as search looks ahead
_ID = re.compile(r"^[0-9a-f]{32}$")


class ReplanJobNotFoundError(NotFoundError):
    """No re-plan job (or no dry run) with this id."""

    code = "replan_job_not_found"


class OfferNotFoundError(NotFoundError):
    """No offer with this id (for this patient)."""

    code = "offer_not_found"


class OfferClosedError(InvalidStateTransitionError):
    """The offer is no longer open: answered, lapsed, or its booking changed."""

    code = "offer_closed"


class ReplanConflictError(InvalidStateTransitionError):
    """The dry run has not finished, or is being re-planned already."""

    code = "replan_conflict"


class _Lost(Exception):
    """Another worker moved the job on."""


def _busy() -> Exception:
    return OverloadedError("the re-plan is busy right now; try again shortly")


class CreateReplanJob(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    impact_job_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    offer_hours: int = Field(default=DEFAULT_OFFER_HOURS, ge=1, le=48)
    max_offers: int = Field(default=DEFAULT_MAX_OFFERS, ge=1, le=5)
    rate: float = Field(default=20.0, gt=0, le=200)  # cases a second


class AnswerOffer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    answer: str = Field(pattern=r"^(accept|decline)$")
    reason: str | None = Field(default=None, max_length=200)  # an agent's, audited


@dataclass(frozen=True)
class Seats:
    """The seats found for an offer, one per visit of the case (dose order)."""

    choices: list[SlotChoice]

    def release(self) -> None:
        for choice in self.choices:
            choice.release()


class ReplanService:
    """Offers, answers and expiry (the job below feeds it cases)."""

    def __init__(
        self,
        units: Any,
        booking: Any,
        search: Callable[[], Any],
        notify: Callable[[dict[str, Any], datetime], str] | None = None,
    ) -> None:
        self.units = units
        self.booking = booking
        self._search = search
        self.notify = notify or (lambda offer, now: "portal")

    # -- finding an alternative --------------------------------------------------------------
    def _appointments(self, reader: UnitOfWork, ids: Iterable[str]) -> dict[str, Document]:
        keys = [(APPOINTMENTS, i) for i in ids]
        found = reader.get_all(keys)
        return {key[1]: doc for key, doc in found.items() if doc is not None}

    def find(
        self, offer: dict[str, Any], appointments: list[Appointment], now: datetime
    ) -> Seats | None:
        """Seats for the case's visits at one point (picked, not yet written), or None."""
        today = now.astimezone(WARSAW).date()
        first = appointments[0]
        rules = self.booking.rules_at(now)
        product = rules.catalogue.get(first.product)
        dose_window = None
        if len(appointments) == 1 and first.dose_number == 2 and offer.get("dose1_day"):
            earliest, latest, _ = second_dose_window(
                product, date.fromisoformat(offer["dose1_day"])
            )
            dose_window = (earliest, latest)
        opens = offer.get("cohort_opens")
        limits = window(
            reasons=offer["reasons"],
            today=today,
            original_slots=[(a.point_id, a.slot_id, a.day) for a in appointments],
            offered_before=offer.get("offered_slots") or [],
            cohort_opens=date.fromisoformat(opens) if opens else None,
            dose_window=dose_window,
        )
        for candidate in self._candidates(first, limits, now):
            seats = self._seats(candidate, appointments, product, limits, now)
            if seats is not None:
                return seats
        return None

    def _candidates(self, first: Appointment, limits: Window, now: datetime) -> list[Candidate]:
        search = self._search()
        entry = search.directory.entry(first.point_id)
        if entry is None:
            return []
        query = SearchQuery(
            lat=entry.location.lat,
            lon=entry.location.lon,
            product=first.product,
            radius_km=SEARCH_RADIUS_KM,
            date_from=limits.date_from,
            date_to=limits.date_to,
            limit=SEARCH_POINTS,
        )
        try:
            items = search.search(query, now)["items"]
        except DependencyUnavailableError:
            raise
        except DomainError:
            return []  # e.g. the cohort opens beyond the searchable horizon: the hotline's
        # The candidates come from search's in-memory view (no read per point and case); only
        # the point finally chosen is read, with its seats, when its seats are picked.
        indexes = search.view.indexes
        # Looked at from a week before the booked day (not from tomorrow): the days nearest the
        # one booked are among a point's earliest free slots, as `rank` prefers them.
        # A bounded window (a lone dose 2's interval) is looked at whole.
        start = max(limits.date_from, first.day - timedelta(days=7))
        if limits.date_to is not None:
            start = limits.date_from
        date_to = limits.date_to or start + timedelta(days=CANDIDATE_DAYS)
        found: list[Candidate] = []
        for item in items:
            point_id = item["point"]["point_id"]
            index = indexes.get(point_id)
            if index is None:
                continue
            _, free = index.free_in(
                not_before=now,
                date_from=start,
                date_to=date_to,
                product=first.product,
                earliest=CANDIDATES_PER_POINT,
            )
            for slot in free:
                if limits.allows(point_id, slot.ref.slot_id, slot.ref.day):
                    found.append(
                        Candidate(point_id, slot.ref.slot_id, slot.ref.day, item["distance_km"])
                    )
        return rank(found, first.day)

    def _seats(
        self,
        candidate: Candidate,
        appointments: list[Appointment],
        product: Any,
        limits: Window,
        now: datetime,
    ) -> Seats | None:
        calendar = self.booking.calendar(candidate.point_id)
        slot = calendar.get(SlotRef.parse(candidate.slot_id))
        if slot is None:
            return None
        reader = self.units.reader()
        choices = [SlotChoice([slot], self.booking.broker, self.booking.rng, now=now)]
        if not choices[0].pick(reader):
            return None
        if len(appointments) == 2:  # the series' dose 2, at the same point, in its window
            earliest, latest, planned = second_dose_window(product, slot.ref.day)
            second = [
                s
                for s in calendar.second_dose_candidates(product.code, earliest, latest, planned)
                if s.ref.slot_id not in limits.avoid_slots
            ]
            choice = SlotChoice(second, self.booking.broker, self.booking.rng, now=now)
            choices.append(choice)
            if not second or not choice.pick(reader):
                Seats(choices).release()
                return None
        return Seats(choices)

    # -- opening a case (the job) --------------------------------------------------------------
    def open_case(
        self, job: dict[str, Any], case: AffectedCase, context: dict[str, Any], now: datetime
    ) -> str:
        """The case's first offer, or its escalation; 'exists' when a worker did it before."""
        the_id = offer_id(job["job_id"], case.series_id)
        reader = self.units.reader()
        if reader.get(OFFERS, the_id) is not None:
            return "exists"
        docs = self._appointments(reader, case.appointment_ids)
        live = [
            Appointment.model_validate(docs[i].data)
            for i in case.appointment_ids
            if i in docs and docs[i].data.get("status") == "booked"
        ]
        reasons = sorted({r for v in case.visits for r in v.reasons if r != "unknown"})
        offer: dict[str, Any] = {
            "offer_id": the_id,
            "job_id": job["job_id"],
            "series_id": case.series_id,
            "patient_key": case.patient_key,
            "appointment_ids": list(case.appointment_ids),
            "reasons": reasons,
            "product": case.product,
            "from": [_visit(a) for a in live],
            "attempt": 0,
            "offered_slots": [],
            "declined": 0,
            "expired": 0,
            "max_offers": job["max_offers"],
            "offer_hours": job["offer_hours"],
            "created_at": now,
            "purge_at": now + KEEP,
            "history": [],
        }
        if len(live) == 1 and live[0].dose_number == 2 and live[0].linked_appointment_id:
            dose1 = reader.get(APPOINTMENTS, live[0].linked_appointment_id)
            offer["dose1_day"] = dose1.data.get("day") if dose1 is not None else None
        birth = _birth_date(docs[live[0].appointment_id].data) if live else None
        opening = context.get("cohort_opens")
        if birth is not None and opening is not None:
            opens = opening(birth, live[0].channel)
            offer["cohort_opens"] = opens.isoformat() if opens else None
        if len(live) != len(case.appointment_ids):
            return self._first(offer, None, now, status=GONE)
        if not has_alternative(reasons):
            return self._first(offer, None, now, status=ESCALATED)
        seats = self.find(offer, live, now)
        try:
            return self._first(offer, seats, now, status=OFFERED if seats else ESCALATED)
        finally:
            if seats is not None:
                seats.release()

    def _first(
        self, offer: dict[str, Any], seats: Seats | None, now: datetime, *, status: str
    ) -> str:
        def attempt(uow: UnitOfWork) -> str:
            document = dict(offer, status=status, updated_at=now)
            if seats is not None:
                document |= self._stage_hold(uow, offer, seats, 1, now)
            uow.create(OFFERS, offer["offer_id"], document)
            uow.audit(_SYSTEM, f"replan.{status}", [], now, offer_id=offer["offer_id"])
            return status

        outcome = self.units.run(attempt, on_conflict=lambda _uow: "exists", gave_up=_busy)
        if outcome == OFFERED:
            self._tell(offer["offer_id"], now)
        return outcome

    def _stage_hold(
        self, uow: UnitOfWork, offer: dict[str, Any], seats: Seats, attempt: int, now: datetime
    ) -> dict[str, Any]:
        until = now + timedelta(hours=int(offer["offer_hours"]))
        held = []
        for choice in seats.choices:
            slot = choice.slot
            choice.stage(
                uow,
                hold_seat_document(
                    slot, choice.seat, offer["offer_id"], offer["patient_key"], until, now
                ),
            )
            held.append(
                {
                    "seat_id": choice.seat_id,
                    "slot_id": slot.ref.slot_id,
                    "point_id": slot.ref.point_id,
                    "day": slot.ref.day.isoformat(),
                    "starts_at": slot.ref.starts_at,
                }
            )
        stage_free_changes(uow, [(s["slot_id"], -1) for s in held], now)
        return {
            "attempt": attempt,
            "seats": held,
            "expires_at": until,
            "offered_slots": [*(offer.get("offered_slots") or []), held[0]["slot_id"]],
        }

    def _tell(self, the_id: str, now: datetime) -> None:
        """After the commit: the SMS (or the hotline's list). A failure leaves the offer in the
        portal and on the list; it is never a reason to undo the hold."""
        found = self.units.reader().get(OFFERS, the_id)
        if found is None:
            return
        try:
            told = self.notify(found.data, now)
        except (DependencyUnavailableError, DomainError) as err:
            log.warning("re-plan offer not sent", offer_id=the_id, reason=err.code)
            told = "hotline"
        fields = told if isinstance(told, dict) else {"channel": told}

        def attempt(uow: UnitOfWork) -> None:
            uow.update(OFFERS, the_id, fields)

        try:
            self.units.run(attempt, gave_up=_busy, policy=ONCE)
        except DomainError:
            pass  # the channel is a hint for the hotline's list; the offer stands

    # -- answers -----------------------------------------------------------------------------
    def _load(
        self, reader: UnitOfWork, the_id: str, actor: Any, patient_key: str | None
    ) -> tuple[dict[str, Any], Any]:
        if not _ID.fullmatch(the_id or ""):
            raise OfferNotFoundError()
        found = reader.get(OFFERS, the_id)
        if found is None:
            raise OfferNotFoundError()
        if actor.role == "patient" and found.data["patient_key"] != patient_key:
            raise OfferNotFoundError()  # 404: nobody learns another's offer exists
        if actor.role == "agent" and not getattr(actor, "reason", None):
            raise ValidationFailedError("an agent answering for a patient must give a 'reason'")
        return found.data, found.version

    def answer(
        self,
        the_id: str,
        body: AnswerOffer,
        actor: Any,
        patient_key: str | None,
        now: datetime,
        idem: Any = None,
    ) -> StoredResponse:
        if body.answer == "accept":
            return self.accept(the_id, actor, patient_key, now, idem)
        return self.decline(the_id, actor, patient_key, now, idem, why="declined")

    def accept(
        self, the_id: str, actor: Any, patient_key: str | None, now: datetime, idem: Any = None
    ) -> StoredResponse:
        """TAK: the series moves to the held seats and the old ones are freed, in one commit."""

        def attempt(uow: UnitOfWork) -> StoredResponse:
            offer, version = self._load(uow, the_id, actor, patient_key)
            if offer["status"] == ACCEPTED:
                return uow.respond(StoredResponse(200, {"offer": offer_view(offer)}))
            if offer["status"] != OFFERED or offer["expires_at"] <= now:
                raise OfferClosedError(details={"status": offer["status"]})
            docs = self._appointments(uow, offer["appointment_ids"])
            held = uow.get_all([(SEATS, s["seat_id"]) for s in offer["seats"]])
            olds = []
            for appointment_id in offer["appointment_ids"]:
                doc = docs.get(appointment_id)
                if doc is None or doc.data.get("status") != "booked":
                    raise OfferClosedError("the booking changed meanwhile")
                olds.append((Appointment.model_validate(doc.data), doc.version))
            moved = []
            for (old, old_version), seat in zip(olds, offer["seats"], strict=True):
                document = held[(SEATS, seat["seat_id"])]
                if document is None or document.data.get("hold_id") != the_id:
                    raise OfferClosedError()  # not before expiry: kept honest
                new = old.moved_to(
                    seat["slot_id"],
                    seat["seat_id"],
                    seat["point_id"],
                    seat["starts_at"],
                    date.fromisoformat(seat["day"]),
                    now,
                )
                moved.append((old, new))
                uow.update(
                    SEATS,
                    seat["seat_id"],
                    _unhold() | seat_document(new, now),
                    if_version=document.version,
                )
                uow.delete(SEATS, old.seat_id)
                uow.update(
                    APPOINTMENTS, old.appointment_id, new.to_document(), if_version=old_version
                )
            stage_free_changes(uow, [(old.slot_id, +1) for old, _ in moved], now)
            uow.publish(
                AppointmentRescheduled(
                    event_id=f"{the_id}-{new.appointment_id}",
                    occurred_at=now,
                    appointment_id=new.appointment_id,
                    series_id=new.series_id,
                    patient_key=new.patient_key,
                    product=new.product,
                    dose_number=new.dose_number,
                    from_slot_id=old.slot_id,
                    to_slot_id=new.slot_id,
                    from_point_id=old.point_id,
                    to_point_id=new.point_id,
                    starts_at=new.starts_at,
                    channel="replan",
                )
                for old, new in moved
            )
            fields = {
                "status": ACCEPTED,
                "answered_at": now,
                "updated_at": now,
                "answered_by": actor.role,
            }
            uow.update(OFFERS, the_id, fields, if_version=version)
            uow.audit(actor, "replan.accept", [n for _, n in moved], now, offer_id=the_id)
            return uow.respond(StoredResponse(200, {"offer": offer_view(offer | fields)}))

        return self.units.run(attempt, idem=idem, gave_up=_busy)

    def decline(
        self,
        the_id: str,
        actor: Any,
        patient_key: str | None,
        now: datetime,
        idem: Any = None,
        *,
        why: str,
    ) -> StoredResponse:
        """NIE (or silence, `why="expired"`): the seats go back, the next offer follows."""

        def attempt(uow: UnitOfWork) -> StoredResponse:
            offer, version = self._load(uow, the_id, actor, patient_key)
            if offer["status"] != OFFERED:
                return uow.respond(StoredResponse(200, {"offer": offer_view(offer)}))
            if why == "expired" and offer["expires_at"] > now:
                return uow.respond(StoredResponse(200, {"offer": offer_view(offer)}))
            self._stage_release(uow, offer, now)
            fields = {
                "status": NEXT,
                why: int(offer.get(why, 0)) + 1,
                "history": [
                    *(offer.get("history") or []),
                    {
                        "attempt": offer["attempt"],
                        "answer": why,
                        "at": now,
                        "slot_id": offer["seats"][0]["slot_id"],
                    },
                ],
                "seats": [],
                "updated_at": now,
            }
            uow.update(OFFERS, the_id, fields, if_version=version)
            uow.audit(actor, f"replan.{why}", [], now, offer_id=the_id)
            uow.after_commit(lambda: self._follow_up_soon(the_id, now))
            return uow.respond(StoredResponse(200, {"offer": offer_view(offer | fields)}))

        return self.units.run(attempt, idem=idem, gave_up=_busy)

    def _stage_release(self, uow: UnitOfWork, offer: dict[str, Any], now: datetime) -> None:
        seats = uow.get_all([(SEATS, s["seat_id"]) for s in offer["seats"]])
        for held in offer["seats"]:
            seat = seats[(SEATS, held["seat_id"])]
            if seat is not None and seat.data.get("hold_id") == offer["offer_id"]:
                uow.delete(SEATS, held["seat_id"], if_version=seat.version)
            # else: a booker took the expired seat over and counted it; the +1 still holds.
        stage_free_changes(uow, [(s["slot_id"], +1) for s in offer["seats"]], now)

    def _follow_up_soon(self, the_id: str, now: datetime) -> None:
        """After the answer's commit: the next offer now; if Firestore or search fails here,
        the answer stands and the minute's sweep (`expire`) carries the offer on from `next`."""
        try:
            self.follow_up(the_id, now)
        except DomainError as err:
            log.warning("re-plan next offer deferred", offer_id=the_id, reason=err.code)

    def follow_up(self, the_id: str, now: datetime) -> str:
        """After a NIE or silence: the next alternative, or the hotline's list."""
        reader = self.units.reader()
        found = reader.get(OFFERS, the_id)
        if found is None or found.data["status"] != NEXT:
            return "settled"
        offer = found.data
        docs = self._appointments(reader, offer["appointment_ids"])
        live = [
            Appointment.model_validate(docs[i].data)
            for i in offer["appointment_ids"]
            if i in docs and docs[i].data.get("status") == "booked"
        ]
        seats = None
        if len(live) != len(offer["appointment_ids"]):
            status = GONE
        elif after_no(int(offer["attempt"]), int(offer["max_offers"])) == "escalate":
            status = ESCALATED
        else:
            seats = self.find(offer, live, now)
            status = OFFERED if seats else ESCALATED

        def attempt(uow: UnitOfWork) -> str:
            current = uow.get(OFFERS, the_id)
            if current is None or current.data["status"] != NEXT:
                return "settled"
            fields: dict[str, Any] = {"status": status, "updated_at": now}
            if seats is not None:
                fields |= self._stage_hold(uow, offer, seats, int(offer["attempt"]) + 1, now)
            uow.update(OFFERS, the_id, fields, if_version=current.version)
            uow.audit(_SYSTEM, f"replan.{status}", [], now, offer_id=the_id)
            return status

        try:
            outcome = self.units.run(attempt, gave_up=_busy)
        finally:
            if seats is not None:
                seats.release()
        if outcome == OFFERED:
            self._tell(the_id, now)
        return outcome

    def answer_by_sms(self, phone_key: str, yes: bool, now: datetime) -> tuple[str, str] | None:
        """TAK / NIE from the number an offer was sent to (the patient's verified number, by
        its keyed hash): the reply and the outcome; None when no offer waits for this number."""
        from common.adapters.firestore_store import POINTS
        from common.domain import sms_texts

        waiting = self.units.reader().query(
            OFFERS, ("phone_key", "==", phone_key), ("status", "==", OFFERED), limit=1
        )
        if not waiting:
            return None
        offer = waiting[0].data
        actor = _Actor("sms", "patient")
        try:
            if not yes:
                self.decline(offer["offer_id"], actor, offer["patient_key"], now, why="declined")
                return sms_texts.replan_next(), "replan_declined"
            self.accept(offer["offer_id"], actor, offer["patient_key"], now)
        except OfferClosedError:
            return sms_texts.replan_closed(), "replan_closed"
        seat = offer["seats"][0]
        point = self.units.reader().get(POINTS, seat["point_id"])
        text = sms_texts.replan_moved(seat["starts_at"], point.data if point else None)
        return text, "replan_accepted"

    # -- the minute's sweep (with expire_holds) ---------------------------------------------
    def expire(self, now: datetime, limit: int = 200) -> dict[str, int]:
        """Offers past their time are declined by silence; an offer left in `next` by a crash
        after its NIE is carried on."""
        reader = self.units.reader()
        lapsed = reader.query(
            OFFERS, ("status", "==", OFFERED), ("expires_at", "<=", now), limit=limit
        )
        stuck = reader.query(
            OFFERS,
            ("status", "==", NEXT),
            ("updated_at", "<=", now - timedelta(minutes=1)),
            limit=limit,
        )
        for doc in lapsed:
            self.decline(doc.id, _SYSTEM, None, now, why="expired")
        for doc in stuck:
            self.follow_up(doc.id, now)
        return {"expired": len(lapsed), "resumed": len(stuck)}

    # -- what a patient, an agent or an admin sees ---------------------------------------------
    def listing(self, actor: Any, patient_key: str | None, hotline: bool) -> dict[str, Any]:
        reader = self.units.reader()
        if actor.role == "patient":
            found = reader.query(
                OFFERS, ("patient_key", "==", patient_key), ("status", "==", OFFERED), limit=20
            )
        elif hotline:
            # The hotline's call list: escalated cases, and offers nobody could be told of.
            found = reader.query(OFFERS, ("status", "==", ESCALATED), limit=100) + reader.query(
                OFFERS, ("status", "==", OFFERED), ("channel", "==", "hotline"), limit=100
            )
        else:
            raise ValidationFailedError("staff of the hotline list the call list: ?list=hotline")
        return {"offers": [offer_view(doc.data) for doc in found]}


def offer_sms(
    offer: dict[str, Any], now: datetime, contacts: Any, units: Any, secret: bytes
) -> dict[str, Any]:
    """Tell the patient of an offer: an SMS to their verified number ('sms'), or, with none on
    file, the hotline's call list ('hotline'). The portal shows every open offer either way.
    One SMS per offer and attempt, whatever the retries (SmsSender.send_once)."""
    from common.adapters.firestore_store import POINTS
    from common.domain import sms_texts
    from common.services.notifications import phone_key, short_hash

    phone = contacts.phone_of(offer["patient_key"], now)
    if phone is None:
        return {"channel": "hotline"}
    seat = offer["seats"][0]
    point = units.reader().get(POINTS, seat["point_id"])
    text = sms_texts.replan_offer(
        offer["product"],
        offer["from"][0]["starts_at"] if offer.get("from") else seat["starts_at"],
        seat["starts_at"],
        point.data if point is not None else None,
        offer["expires_at"],
    )
    notification_id = f"replan-{short_hash(offer['offer_id'])}-{offer['attempt']}"
    meta = {"kind": "replan_offer", "offer_id": offer["offer_id"]}
    contacts.sender.send_once(notification_id, phone, lambda: text, meta, now)
    # The keyed number the answer will come from (TAK / NIE: SmsDialogService).
    return {"channel": "sms", "phone_key": phone_key(phone, secret)}


@dataclass(frozen=True)
class _Actor:
    """Who acts without an ID token: the job itself, or the patient answering by SMS from
    their verified number (what the audit log records as the actor)."""

    uid: str
    role: str
    reason: str | None = None


_SYSTEM = _Actor("replan", "system", "re-plan")


def _unhold() -> dict[str, Any]:
    from google.cloud import firestore

    return {k: firestore.DELETE_FIELD for k in ("hold_id", "holder", "held_until")}


def _visit(appointment: Appointment) -> dict[str, Any]:
    return {
        "appointment_id": appointment.appointment_id,
        "point_id": appointment.point_id,
        "slot_id": appointment.slot_id,
        "starts_at": appointment.starts_at,
        "dose_number": appointment.dose_number,
    }


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value


def offer_view(offer: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of an offer: no keyed patient id, no birth date."""
    return {
        "offer_id": offer["offer_id"],
        "job_id": offer["job_id"],
        "status": offer["status"],
        "attempt": offer.get("attempt", 0),
        "max_offers": offer.get("max_offers"),
        "reasons": offer.get("reasons", []),
        "product": offer.get("product"),
        "appointment_ids": offer.get("appointment_ids", []),
        "from": [{k: _iso(v) for k, v in visit.items()} for visit in offer.get("from") or []],
        "to": [
            {k: _iso(v) for k, v in seat.items() if k != "seat_id"}
            for seat in offer.get("seats") or []
        ],
        "expires_at": _iso(offer.get("expires_at")) if offer.get("seats") else None,
        "channel": offer.get("channel"),
    }


# -- the job ------------------------------------------------------------------------------------


@dataclass
class _Run:
    started: float
    cases: int = 0
    last: float | None = None


class ReplanJobs:
    """The jobs: create (POST), run a slice (the task), view, resume."""

    def __init__(
        self,
        units: Any,
        impact: ImpactJobs,
        service: ReplanService,
        queue: Any,
        *,
        slice_s: float = SLICE_S,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.units = units
        self.impact = impact
        self.service = service
        self.queue = queue
        self.slice_s = slice_s
        self.monotonic = monotonic
        self.sleep = sleep

    def create(
        self, actor: Any, body: CreateReplanJob, now: datetime, idem: Any = None
    ) -> StoredResponse:
        """One re-plan per dry run: its id is the dry run's."""
        job_id = body.impact_job_id

        def attempt(uow: UnitOfWork) -> StoredResponse:
            from common.services.impact import IMPACT_JOBS

            impact = uow.get(IMPACT_JOBS, job_id)
            if impact is None:
                raise ReplanJobNotFoundError("no such impact dry run")
            if impact.data["status"] != "done":
                raise ReplanConflictError(
                    "the dry run has not finished: re-plan once it is done",
                    details={"status": impact.data["status"]},
                )
            if uow.get(REPLAN_JOBS, job_id) is not None:
                raise ReplanConflictError(
                    "this dry run is being re-planned already", details={"job_id": job_id}
                )
            document = {
                "job_id": job_id,
                "kind": impact.data["kind"],
                "status": "running",
                "cursor": 0,  # the dry run's next page
                "pages": int(impact.data.get("pages", 0)),
                "cases_done": 0,
                "offer_hours": body.offer_hours,
                "max_offers": body.max_offers,
                "rate": body.rate,
                "created_by": actor.uid,
                "created_at": now,
                "updated_at": now,
                "retry_after": now + LEASE,
                "purge_at": now + KEEP,
            }
            uow.create(REPLAN_JOBS, job_id, document)
            uow.audit(actor, "replan.create", [], now, job_id=job_id)
            uow.after_commit(lambda: self._kick(job_id, "0"))
            return uow.respond(StoredResponse(202, {"job": self._view(document, {})}))

        return self.units.run(attempt, idem=idem, gave_up=_busy)

    def _kick(self, job_id: str, suffix: str) -> None:
        try:
            self.queue.enqueue(job_id, suffix)
        except DependencyUnavailableError as err:
            log.warning("re-plan job not queued yet", job_id=job_id, reason=err.message)

    def view(self, job_id: str) -> dict[str, Any]:
        if not _ID.fullmatch(job_id or ""):
            raise ReplanJobNotFoundError()
        reader = self.units.reader()
        found = reader.get(REPLAN_JOBS, job_id)
        if found is None:
            raise ReplanJobNotFoundError()
        counts = {
            status: reader.count(OFFERS, ("job_id", "==", job_id), ("status", "==", status))
            for status in OFFER_STATUSES
        }
        for answer in ("declined", "expired"):
            counts[answer] = reader.count(OFFERS, ("job_id", "==", job_id), (answer, ">", 0))
        return self._view(found.data, counts)

    @staticmethod
    def _view(job: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
        return {
            "job_id": job["job_id"],
            "kind": job["kind"],
            "status": job["status"],
            "progress": {
                "pages": job["pages"],
                "pages_done": job["cursor"],
                "cases_done": job["cases_done"],
            },
            "counts": counts,
            "offer_hours": job["offer_hours"],
            "max_offers": job["max_offers"],
            "rate": job["rate"],
            "created_at": _iso(job["created_at"]),
        }

    def run(
        self, job_id: str, now: datetime, *, max_cases: int | None = None, queue_next: bool = True
    ) -> dict[str, Any]:
        """Pages of the dry run's cases from the job's cursor, for one slice."""
        reader = self.units.reader()
        state = reader.get(REPLAN_JOBS, job_id)
        if state is None:
            return {"job_id": job_id, "outcome": "no_such_job"}
        if state.data["status"] == "done":
            return {"job_id": job_id, "outcome": "done"}
        context = self._context(job_id)
        run = _Run(self.monotonic())
        while True:
            page = int(state.data["cursor"])
            if page >= int(state.data["pages"]):
                state = self._advance(state, page, 0, now, done=True)
                return {"job_id": job_id, "outcome": "done", "cases": run.cases}
            cases = [c for c in self.impact.page_cases(job_id, page) if _certain(c)]
            for case in cases:
                self._pace(run, float(state.data["rate"]))
                moment = now + timedelta(seconds=self.monotonic() - run.started)
                self.service.open_case(state.data, case, context, moment)
                run.cases += 1
                run.last = self.monotonic()
            try:
                state = self._advance(state, page + 1, len(cases), now)
            except _Lost:
                return {"job_id": job_id, "outcome": "yielded", "cases": run.cases}
            if max_cases is not None and run.cases >= max_cases:
                break
            if self.monotonic() - run.started >= self.slice_s:
                break
        if queue_next:
            self.queue.enqueue(job_id, str(state.data["cursor"]))
        return {"job_id": job_id, "outcome": "continues", "cases": run.cases}

    def _context(self, job_id: str) -> dict[str, Any]:
        """What a case's first offer needs from the change: for a rules change, when each
        birth date's cohort opens under the new rules; a lone dose 2's dose-1 day."""
        from common.services.impact import IMPACT_JOBS

        impact = self.units.reader().get(IMPACT_JOBS, job_id)
        context: dict[str, Any] = {}
        if impact is not None and impact.data["kind"] == "rules":
            change = parse_change(impact.data["change"])
            scanner = self.impact.scanner
            rules = scanner.context(change, impact.data["as_of"]).rules
            if rules is not None:
                context["cohort_opens"] = lambda birth, channel: _day(
                    rules.cohorts.opens_at(birth, channel)
                )
        return context

    def _pace(self, run: _Run, rate: float) -> None:
        if run.last is None:
            return
        wait = run.last + 1.0 / rate - self.monotonic()
        if wait > 0:
            self.sleep(wait)

    def _advance(
        self, state: Document, cursor: int, cases: int, now: datetime, *, done: bool = False
    ) -> Document:
        fields = {
            "cursor": cursor,
            "cases_done": int(state.data["cases_done"]) + cases,
            "status": "done" if done else "running",
            "updated_at": now,
            "retry_after": now + LEASE,
        }

        def attempt(uow: UnitOfWork) -> None:
            uow.update(REPLAN_JOBS, state.data["job_id"], fields, if_version=state.version)

        self.units.run(attempt, gave_up=_Lost, policy=ONCE)
        fresh = self.units.reader().get(REPLAN_JOBS, state.data["job_id"])
        if fresh is None:
            raise _Lost()
        return fresh

    def resume_stalled(self, now: datetime) -> dict[str, int]:
        stalled = self.units.reader().query(
            REPLAN_JOBS, ("status", "==", "running"), ("retry_after", "<=", now), limit=50
        )
        queued = 0
        for doc in stalled:
            try:
                self.queue.enqueue(doc.id, f"{doc.data['cursor']}-r{int(now.timestamp()) // 60}")
            except DependencyUnavailableError:
                continue

            def attempt(uow: UnitOfWork, doc: Document = doc) -> None:
                uow.update(
                    REPLAN_JOBS, doc.id, {"retry_after": now + LEASE}, if_version=doc.version
                )

            try:
                self.units.run(attempt, gave_up=_Lost, policy=ONCE)
            except _Lost:
                pass
            queued += 1
        return {"stalled": len(stalled), "queued": queued}


def _certain(case: AffectedCase) -> bool:
    return all(v.certain for v in case.visits)


def _day(moment: datetime | None) -> date | None:
    return moment.astimezone(WARSAW).date() if moment is not None else None
