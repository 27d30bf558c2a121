"""Wiring: the clients and services of one function instance, built lazily, once.

Nothing here runs at import time: the first request of an instance builds what it needs
(`functools.cache`), and tests reset it with `reset()` after pointing the environment at
their own project.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from google.cloud import firestore

from common.adapters.pubsub_publisher import EventPublisher
from common.config import Settings
from common.domain.eligibility import CohortRules, load_cohort_rules
from common.domain.vaccines import VaccineCatalogue, load_catalogue


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
def catalogue() -> VaccineCatalogue:
    return load_catalogue()


@functools.cache
def cohorts() -> CohortRules:
    return load_cohort_rules()


@functools.cache
def booking_service():
    from common.services.booking import BookingService

    return BookingService(
        firestore_client(), catalogue(), cohorts(), settings().pesel_hash_key, publisher()
    )


@functools.cache
def search_service():
    from common.services.search import SearchService

    return SearchService(firestore_client(), catalogue())


@functools.cache
def idempotency():
    from common.services.idempotency import Idempotency

    return Idempotency(firestore_client())


@functools.cache
def staff_calendar_service():
    from common.services.staff_calendar import StaffCalendarService

    return StaffCalendarService(firestore_client(), catalogue(), search_service(), publisher())


@functools.cache
def visit_service():
    from common.services.visits import VisitService

    return VisitService(
        firestore_client(),
        catalogue(),
        cohorts(),
        settings().pesel_hash_key,
        booking_service(),
        publisher(),
    )


@functools.cache
def hotline_service():
    from common.services.hotline import HotlineService

    return HotlineService(firestore_client(), booking_service(), settings().pesel_hash_key)


@functools.cache
def callback_service():
    from common.services.callbacks import CallbackService

    return CallbackService(firestore_client(), catalogue(), settings().pesel_hash_key)


@functools.cache
def points_admin_service():
    from common.services.points_admin import PointsAdminService

    return PointsAdminService(firestore_client(), catalogue())


def now() -> datetime:
    """The one clock of the entry points; services get `now` as a parameter."""
    return datetime.now(UTC)


def reset() -> None:
    for cached in (
        settings,
        firestore_client,
        publisher,
        catalogue,
        cohorts,
        booking_service,
        search_service,
        idempotency,
        staff_calendar_service,
        visit_service,
        hotline_service,
        callback_service,
        points_admin_service,
    ):
        cached.cache_clear()
