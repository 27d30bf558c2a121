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
    )


@functools.cache
def search_service():
    from common.services.search import SearchService

    return SearchService(firestore_client(), rule_book())


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
def hotline_service():
    from common.services.hotline import HotlineService

    return HotlineService(units(), settings().pesel_hash_key)


@functools.cache
def callback_service():
    from common.services.callbacks import CallbackService

    return CallbackService(units(), rule_book(), settings().pesel_hash_key)


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

    return P1ReferralSync(units(), p1_client(), settings().pesel_hash_key)


@functools.cache
def p1_reporter():
    from common.services.p1_reporting import P1Reporter

    return P1Reporter(units(), p1_client, publisher())


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

    return SmsSender(units(), sms_client())


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

    return NotificationService(units(), rule_book(), sms_sender(), reminder_scheduler())


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
        settings,
        process_clock,
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
        hotline_service,
        callback_service,
        points_admin_service,
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
    ):
        cached.cache_clear()
