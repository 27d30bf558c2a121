"""Helpers for emulator-backed tests: the gateway in-process, demo points, tokens."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from google.cloud import firestore, pubsub_v1
from werkzeug.test import Client

from common import clock
from common.adapters.firestore_store import PATIENTS, REFERRALS
from common.adapters.vault import FieldVault
from common.config import Settings
from common.declarations import load_declarations
from common.domain.calendar import WARSAW
from common.domain.pesel import make_pesel, parse_pesel, pesel_key
from common.services.directory import calendar_document, write_calendars, write_points
from common.services.patients import new_patient_document
from tests.support.identity import claims_of, id_token


@functools.cache
def gateway():
    """Every function behind the dev gateway, in this process (built once per test run)."""
    from emulator.gateway import build_gateway

    return build_gateway()


@dataclass
class Api:
    """A thin HTTP client of the public API, in-process through the real gateway."""

    project_id: str

    def client(self) -> Client:
        return Client(gateway())

    def token(
        self,
        uid: str,
        role: str,
        pesel: str | None = None,
        point_id: str | None = None,
        **claims: Any,
    ) -> str:
        """An ID token issued by the Auth emulator to `uid`, with these claims."""
        claims = claims_of(role, pesel=pesel, point_id=point_id, **claims)
        return id_token(self.project_id, uid, claims)

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        key: str | None = None,
        query: dict[str, Any] | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ):
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        if key:
            all_headers["Idempotency-Key"] = key
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is not None:
            all_headers.setdefault("Content-Type", "application/json")
        return self.client().open(
            path, method=method, headers=all_headers, data=data, query_string=query
        )


def firestore_client(project_id: str) -> firestore.Client:
    return firestore.Client(project=project_id)


def today_warsaw(now: datetime | None = None) -> date:
    return (now or clock.now()).astimezone(WARSAW).date()


def add_point(
    db: firestore.Client,
    point_id: str = "pt-00001",
    *,
    lat: float = 50.0614,
    lon: float = 19.9366,
    products: tuple[str, ...] = ("comirnaty", "jcovden"),
    slots: list[tuple[date, time, str, int]] | None = None,
) -> dict[str, Any]:
    point = {
        "point_id": point_id,
        "name": f"Punkt {point_id}",
        "kind": "clinic",
        "street": "ul. Długa 1",
        "postcode": "31-001",
        "place": "Kraków",
        "county": "Kraków",
        "voivodeship": "małopolskie",
        "lat": lat,
        "lon": lon,
        "products": list(products),
        "accessible": True,
        "phone": "+48 12 555 00 00",
    }
    write_points(db, [point])
    write_calendars(db, [calendar_document(point_id, slots or [])])
    return point


def add_points(
    db: firestore.Client, points: list[dict[str, Any]], calendars: list[dict[str, Any]]
) -> None:
    write_points(db, points)
    write_calendars(db, calendars)


def add_patient(
    db: firestore.Client,
    *,
    born: date = date(1980, 5, 17),
    sex: str = "F",
    serial: int = 1,
    referral_days: tuple[int, int] = (-10, 80),
    kind: str = "primary",
    today: date | None = None,
    status: str = "active",
) -> str:
    """A patient with a referral; returns the PESEL."""
    today = today or today_warsaw()
    pesel = make_pesel(born, sex, serial)
    parsed = parse_pesel(pesel, today)
    key = pesel_key(parsed, Settings.from_env().pesel_hash_key)
    # As the P1 sync writes it: birth date, sex, the PESEL encrypted (never in clear).
    db.collection(PATIENTS).document(key).set(
        new_patient_document(parsed, key, FieldVault.from_env())
    )
    referral_id = f"ref-{key[:8]}-{kind}"
    db.collection(REFERRALS).document(referral_id).set(
        {
            "patient_key": key,
            "referral": {
                "referral_id": referral_id,
                "kind": kind,
                "valid_from": (today + timedelta(days=referral_days[0])).isoformat(),
                "valid_to": (today + timedelta(days=referral_days[1])).isoformat(),
                "status": status,
                "booster_number": 0,
            },
        }
    )
    return pesel


def provision_topics(project_id: str, push_base_url: str | None = None) -> None:
    """Create the declared topics (and, given a push base URL, the push subscriptions)."""
    from emulator.provision import provision_pubsub

    declarations = load_declarations()
    if push_base_url is None:
        declarations = declarations.model_copy(update={"subscriptions": {}})
    provision_pubsub(
        project_id,
        push_base_url or "http://127.0.0.1:9/_functions",
        declarations,
        pubsub_v1.PublisherClient(),
        pubsub_v1.SubscriberClient(),
    )


@contextmanager
def folding(db: firestore.Client, every_s: float = 0.2) -> Iterator[None]:
    """The availability folder running in the background, as Cloud Scheduler runs it in
    production (fold_availability): search's free seats catch up with the bookings."""
    from common.services.availability import AvailabilityFolder

    folder = AvailabilityFolder(db)
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every_s):
            folder.fold_all()

    thread = threading.Thread(target=run, name="folder", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        folder.fold_all()
