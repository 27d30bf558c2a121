"""Wiring: the clients and services of one function instance, built lazily, once.

Nothing here runs at import time: the first request of an instance builds what it needs
(`functools.cache`), and tests reset it with `reset()` after pointing the environment at
their own project.
"""

from __future__ import annotations

import functools
from datetime import datetime

from google.cloud import firestore

from common import clock
from common.adapters.pubsub_publisher import EventPublisher
from common.config import Settings
from common.domain.rulebook import RuleBook


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def firestore_client() -> firestore.Client:
    return firestore.Client(project=settings().project_id)


@functools.cache
def publisher() -> EventPublisher:
    return EventPublisher(settings().project_id)


@functools.cache
def rule_book() -> RuleBook:
    """Every version of the eligibility rules (common/domain/rules/index.yaml, or the folder
    named by RULES_DIR, to try a rule change locally). Services get the book, never one rule
    set: each decision is judged by `rule_book.rules_at(now)`, the version in force then."""
    import os
    from pathlib import Path

    from common.domain.rulebook import RULES_DIR, load_rule_book

    directory = os.environ.get("RULES_DIR")
    return load_rule_book(Path(directory) if directory else RULES_DIR)


@functools.cache
def units():
    """Every write path commits through a unit of work run by this (one retry policy)."""
    from common.services.unit_of_work import FirestoreUnitsOfWork

    return FirestoreUnitsOfWork(firestore_client(), publisher())


@functools.cache
def calendar_cache():
    from common.services.availability import CalendarCache

    return CalendarCache(firestore_client())


@functools.cache
def availability_folder():
    from common.services.availability import AvailabilityFolder

    return AvailabilityFolder(firestore_client())


@functools.cache
def booking_service():
    from common.services.booking import BookingService

    return BookingService(
        units(),
        calendar_cache(),
        rule_book(),
        settings().pesel_hash_key,
        # The nearest free slots for one who finds a slot full, from search's in-memory view
        # (loaded on the first refusal of an instance, then refreshed with what changed).
        alternatives=lambda ref, now: search_service().alternatives(ref, now),
        gate=opening_gate,
        quotas=quotas(),
        reservations=reservation_book(),
    )


def opening_gate(patient_key, birth_date, ref, ticket, now) -> None:
    """A booking governed by a cohort opening passes only on its holder's turn."""

    def region() -> str | None:  # looked up only if an opening names a region
        entry = search_service().directory.entry(ref.point_id)
        return entry.summary.get("voivodeship") if entry is not None else None

    waiting_room().require_turn(patient_key, birth_date, ref.product, region, ticket, now)


@functools.cache
def quota_policy():
    from common.services.quotas import PolicySource, firestore_override

    return PolicySource(firestore_override(firestore_client()))


@functools.cache
def quotas():
    """Strict per-identity counting in Firestore (writes, look-ups, callbacks, SMS, joins)."""
    from common.services.quotas import Quotas

    return Quotas(quota_policy())


@functools.cache
def local_quotas():
    """Per-instance counting in memory (searches)."""
    from common.services.quotas import LocalQuotas

    return LocalQuotas(quota_policy())


@functools.cache
def hold_service():
    from common.services.holds import HoldService

    return HoldService(booking_service())


@functools.cache
def queue_access():
    from common.services.waiting_room import QueueAccess

    return QueueAccess(waiting_room(), units(), quotas(), settings().pesel_hash_key)


@functools.cache
def quota_admin():
    from common.services.quotas import QuotaAdmin

    return QuotaAdmin(units(), quota_policy())


@functools.cache
def waiting_room():
    from common.services.waiting_room import WaitingRoom, queue_secret

    return WaitingRoom(units(), firestore_client(), queue_secret(settings().pesel_hash_key))


@functools.cache
def search_service():
    from common.services.search import SearchService

    return SearchService(
        firestore_client(),
        rule_book(),
        reservations=reservation_book(),
        expected_wait=expected_wait_service(),
    )


# -- reserved capacity and the expected wait (issue 15, items 5 and 6) ---------------------
@functools.cache
def reservation_book():
    """The reservations in force, in this instance's memory (reloaded every 15 s at most)."""
    from common.services.reservations import ReservationBook

    return ReservationBook(units())


@functools.cache
def reservation_service():
    from common.services.reservations import ReservationService

    return ReservationService(units(), rule_book(), reservation_book())


@functools.cache
def expected_wait_service():
    from common.services.expected_wait import ExpectedWaitService

    # Lazy: search builds this, and this reads search's directory and view when asked.
    return ExpectedWaitService(units(), rule_book(), search_service, reservation_book())


@functools.cache
def booking_rate_meter():
    """The scheduled measurement of bookings per county, and of each county's waitlist
    (`waitlist_in_collection`: the entries still waiting, by their `county_id`)."""
    from common.services.expected_wait import BookingRateMeter

    return BookingRateMeter(
        units(), lambda: [e.summary for e in search_service().directory.entries()]
    )


@functools.cache
def idempotency():
    from common.services.idempotency import Idempotency

    return Idempotency(units())


@functools.cache
def staff_calendar_service():
    from common.services.staff_calendar import StaffCalendarService

    return StaffCalendarService(
        units(), rule_book(), search_service(), availability_folder(), calendars=calendar_cache()
    )


@functools.cache
def visit_service():
    from common.services.visits import VisitService

    return VisitService(units(), rule_book(), settings().pesel_hash_key, booking_service())


@functools.cache
def appointment_places():
    """The point's name, address and position on every appointment an answer carries."""
    from common.services.appointment_places import AppointmentPlaces

    return AppointmentPlaces(units(), rule_book())


@functools.cache
def eligible_products_service():
    from common.services.eligible_products import EligibleProductsService

    return EligibleProductsService(units(), rule_book(), settings().pesel_hash_key)


@functools.cache
def hotline_service():
    from common.services.hotline import HotlineService

    return HotlineService(units(), settings().pesel_hash_key, quotas=quotas())


@functools.cache
def callback_service():
    from common.services.callbacks import CallbackService

    return CallbackService(units(), rule_book(), settings().pesel_hash_key, quotas=quotas())


@functools.cache
def identity_admin():
    from common.adapters.identity_platform import IdentityPlatformAdmin

    settings()  # refuses an emulator host outside emulator mode before firebase-admin sees it
    return IdentityPlatformAdmin(settings().project_id)


@functools.cache
def accounts_service():
    from common.services.accounts import AccountsService

    return AccountsService(units(), identity_admin())


@functools.cache
def sign_in_service():
    """The identity blocking function's service: patients from the national login node."""
    from common.adapters.login_node import LoginNodeVerifier
    from common.services.sign_in import SignInService

    s = settings()
    return SignInService(
        units(),
        LoginNodeVerifier(s.login_node_issuer, s.login_node_client_id, s.login_node_jwks_url),
        s.login_node_provider_id,
    )


@functools.cache
def points_admin_service():
    from common.services.directory import rebuild_directory
    from common.services.points_admin import PointsAdminService

    return PointsAdminService(
        units(), rule_book(), lambda points: rebuild_directory(firestore_client(), points)
    )


# -- integrations: P1 and SDS (sync, reports, supply) ------------------------------------
@functools.cache
def p1_client():
    from common.adapters.p1_client import P1Client

    return P1Client.from_env()


@functools.cache
def sds_client():
    import os

    from common.adapters.sds_client import SdsClient

    # Production mounts the token as the secret SDS_API_TOKEN; the local stack sets SDS_TOKEN.
    env = dict(os.environ)
    env.setdefault("SDS_TOKEN", env.get("SDS_API_TOKEN", ""))
    return SdsClient.from_env(env)


@functools.cache
def p1_referral_sync():
    from common.services.p1_sync import P1ReferralSync

    return P1ReferralSync(units(), p1_client(), settings().pesel_hash_key, vault=vault())


@functools.cache
def p1_reporter():
    from common.services.p1_reporting import P1Reporter

    return P1Reporter(units(), p1_client, publisher(), vault=vault())


@functools.cache
def sds_sync():
    from common.services.sds_sync import SdsSync

    return SdsSync(units(), sds_client(), staff_calendar_service(), availability_folder())


@functools.cache
def sms_client():
    """The SMS gateway client. Production names the token after its secret (SMS_GATEWAY_TOKEN);
    the local stack may set SMS_TOKEN, as the simulator's README does."""
    import os

    from common.adapters.sms_client import SmsClient

    env = dict(os.environ)
    if not env.get("SMS_TOKEN") and env.get("SMS_GATEWAY_TOKEN"):
        env["SMS_TOKEN"] = env["SMS_GATEWAY_TOKEN"]
    return SmsClient.from_env(env)


@functools.cache
def tasks_client():
    import os

    from common.adapters.cloud_tasks import make_tasks_client

    return make_tasks_client(os.environ.get("CLOUD_TASKS_EMULATOR_HOST"))


@functools.cache
def sms_sender():
    from common.services.notifications import SmsSender

    return SmsSender(units(), sms_client(), vault())


@functools.cache
def reminder_scheduler():
    from common.services.reminders import ReminderScheduler

    s = settings()
    return ReminderScheduler(
        tasks_client(),
        s.project_id,
        s.tasks_location,
        s.send_reminder_url,
        s.tasks_invoker_service_account,
    )


@functools.cache
def notification_service():
    from common.services.notifications import NotificationService

    return NotificationService(
        units(),
        rule_book(),
        sms_sender(),
        reminder_scheduler(),
        contacts=contact_service(),
        secret=settings().pesel_hash_key,
    )


@functools.cache
def reminder_service():
    from common.services.reminders import ReminderService

    return ReminderService(units(), notification_service(), sms_sender())


@functools.cache
def sms_dialog_service():
    from datetime import timedelta

    from common.services.sms_dialog import SmsDialogService

    return SmsDialogService(
        units(),
        rule_book(),
        booking_service(),
        search_service(),
        idempotency(),
        sms_sender(),
        settings().pesel_hash_key,
        timedelta(minutes=settings().sms_offer_ttl_minutes),
        vault=vault(),
        contacts=contact_service(),
        limits=phone_limits(),
        room=waiting_room(),
        replan=replan_service(),
        waitlist=waitlist_service(),
    )


# -- contact data, retention, nothing stuck (issue 13) -------------------------------------
@functools.cache
def vault():
    """AES-GCM for the fields kept encrypted (FIELD_ENCRYPTION_KEY; common/adapters/vault.py)."""
    from common.adapters.vault import FieldVault

    return FieldVault.from_env()


@functools.cache
def phone_limits():
    from common.services.phone_limits import PhoneLimits, limits_of

    policy = quota_policy()
    return PhoneLimits(settings().pesel_hash_key, lambda: limits_of(policy.policy()))


def p1_profiles():
    """P1 as the source of patients' phone numbers, where this function may reach P1 (its
    P1_BASE_URL is set); None elsewhere: a stored number is then the only one."""
    import os

    return p1_client() if os.environ.get("P1_BASE_URL") else None


@functools.cache
def contact_service():
    from common.services.contacts import ContactService

    return ContactService(
        units(),
        vault(),
        settings().pesel_hash_key,
        phone_limits(),
        sender=sms_sender,
        profiles=p1_profiles,
    )


@functools.cache
def stuck_work_sweeper():
    import os

    from common.services.sweeper import StuckWorkSweeper

    return StuckWorkSweeper(
        units(),
        sms_sender(),
        p1_reporter() if os.environ.get("P1_BASE_URL") else None,
        phone_of=lambda patient_key, now: contact_service().phone_of(patient_key, now),
    )


# -- impact of a change before it is made (issue 15; common/services/impact.py) -------------
@functools.cache
def impact_queue():
    """Tasks for run_impact_job: Cloud Tasks deployed, the Cloud Tasks emulator in the local
    stack; the tests' emulator mode without one queues nothing (resume_impact_jobs, or the
    test itself, drives the job)."""
    import os

    from common.services.impact import ImpactQueue

    s = settings()
    client = tasks_client if (s.cloud_tasks_emulator_host or not s.is_local) else None
    # Deployed: run_impact_job's deterministic Cloud Run URL (terraform/stack/main.tf).
    target = os.environ.get("RUN_IMPACT_JOB_URL") or f"{s.functions_base_url}/run_impact_job"
    return ImpactQueue(
        client, s.project_id, s.tasks_location, target, s.tasks_invoker_service_account
    )


@functools.cache
def impact_jobs():
    from common.services.impact import ImpactJobs

    return ImpactJobs(units(), firestore_client(), rule_book(), impact_queue())


@functools.cache
def replan_queue():
    """Tasks for run_replan_job, on the impact queue (its low rate is the re-plan's too)."""
    import os

    from common.services.impact import ImpactQueue

    s = settings()
    client = tasks_client if (s.cloud_tasks_emulator_host or not s.is_local) else None
    target = os.environ.get("RUN_REPLAN_JOB_URL") or f"{s.functions_base_url}/run_replan_job"
    return ImpactQueue(
        client, s.project_id, s.tasks_location, target, s.tasks_invoker_service_account,
        task_prefix="replan",
    )  # fmt: skip


@functools.cache
def replan_service():
    from common.services.replan import ReplanService, offer_sms

    return ReplanService(
        units(),
        booking_service(),
        search_service,
        notify=lambda offer, now: offer_sms(
            offer, now, contact_service(), units(), settings().pesel_hash_key
        ),
    )


@functools.cache
def replan_jobs():
    from common.services.replan import ReplanJobs

    return ReplanJobs(units(), impact_jobs(), replan_service(), replan_queue())


@functools.cache
def waitlist_service():
    from common.services.waitlist import WaitlistService, waitlist_sms

    secret = settings().pesel_hash_key
    return WaitlistService(
        units(),
        hold_service(),
        search_service,
        vault(),
        secret,
        notify=lambda entry, hold, now: waitlist_sms(entry, hold, now, contact_service(), secret),
        county=expected_wait_service().county_of,
    )


@functools.cache
def process_clock() -> clock.Clock:
    settings()  # refuses a shifted clock outside the emulators
    return clock.process_clock()


def now() -> datetime:
    """The one clock of the entry points (common/clock.py); services get `now` as a parameter."""
    return process_clock().now()


def reset() -> None:
    for cached in (
        reservation_book,
        reservation_service,
        expected_wait_service,
        booking_rate_meter,
        settings,
        process_clock,
        quota_policy,
        quotas,
        local_quotas,
        waiting_room,
        queue_access,
        quota_admin,
        hold_service,
        units,
        calendar_cache,
        availability_folder,
        firestore_client,
        publisher,
        rule_book,
        booking_service,
        search_service,
        idempotency,
        staff_calendar_service,
        visit_service,
        appointment_places,
        eligible_products_service,
        hotline_service,
        callback_service,
        points_admin_service,
        identity_admin,
        accounts_service,
        sign_in_service,
        p1_client,
        sds_client,
        p1_referral_sync,
        p1_reporter,
        sds_sync,
        sms_client,
        tasks_client,
        sms_sender,
        reminder_scheduler,
        notification_service,
        reminder_service,
        sms_dialog_service,
        vault,
        phone_limits,
        contact_service,
        stuck_work_sweeper,
        impact_queue,
        impact_jobs,
        replan_queue,
        replan_service,
        replan_jobs,
        waitlist_service,
    ):
        cached.cache_clear()
