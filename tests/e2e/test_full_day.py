"""A full day in the local stack (`python -m emulator`), over HTTP only, as the outside sees it.

Referrals come in from P1's simulator; a patient books tomorrow's visit at whatever hour the
test runs; the SMS and, at 18:00 the day before, the reminder go out through the SMS simulator
(the reminder through a Cloud Task); the next morning staff check the patient in and complete
the visit; the vaccination reaches P1's simulator; an SDS delivery sets a point's bookable
capacity; and somebody books a slot by SMS (PESEL + postcode, then TAK).

Time passes for real in the stack: it runs with a clock file (common/clock.py) that this test
moves, so every process (gateway, Cloud Tasks emulator, simulators, scheduler) jumps together.
The day starts at the suite's own clock, so the shifted-clock runs start it at 00:10, 11:00,
18:30 and 23:50 as well.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from common import clock
from emulator.certs import Pki
from emulator.processes import free_port
from emulator.seed.demo import DEMO_PATIENTS, demo_patients, demo_phone
from emulator.seed.users import DEMO_USERS

ROOT = Path(__file__).resolve().parents[2]
WARSAW = ZoneInfo("Europe/Warsaw")
PROJECT = "demo-full-day"


def _p1_tls() -> ssl.SSLContext:
    """The stack's P1 speaks mutual TLS only: our client certificate, its CA (.local/pki)."""
    return Pki(ROOT / ".local" / "pki").client_context()


def _request(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Any = None,
    key: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if key:
        headers["Idempotency-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60, context=tls) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None


def _eventually(check: Callable[[], Any], what: str, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ports = {
        n: free_port()
        for n in ("firestore", "pubsub", "tasks", "gateway", "p1", "sds", "sms", "auth")
    }
    ports["login-node"] = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    env.pop("GOOGLE_CLOUD_PROJECT", None)
    # The stack's clock starts where the suite's is, and this test moves it.
    stack_clock = clock.FileClock(tmp_path_factory.mktemp("clock") / "clock.json")
    stack_clock.set_offset(clock.process_clock().offset_s)
    for name in clock.CLOCK_VARIABLES:
        env.pop(name, None)
    env[clock.FILE_VARIABLE] = str(stack_clock.path)
    argv = [sys.executable, "-m", "emulator", "--project", PROJECT, "--points", "30"]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Press Ctrl-C" in line:
            break
    else:
        os.killpg(process.pid, signal.SIGKILL)
    if not any("Press Ctrl-C" in line for line in lines):
        os.killpg(process.pid, signal.SIGKILL)  # the runner and every process it started
        pytest.fail("the stack did not come up:\n" + "".join(lines[-40:]))
    base = f"http://127.0.0.1:{ports['gateway']}"
    try:
        # Inside the try: a failed sign-in must not leave the whole stack running.
        tokens = _signed_in(ports)
        yield {
            "base": base,
            "ports": ports,
            "tokens": tokens,
            "clock": stack_clock,
        }
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _signed_in(ports: dict[str, int]) -> dict[str, str]:
    """Every demo user's ID token, signed in as they do: patients through the login node,
    staff, agents and admins with their password; the Auth emulator issues them all."""
    from emulator.seed.users import DEMO_PASSWORD, DEMO_USERS
    from emulator.sign_in import sign_in_patient, sign_in_with_password
    from emulator.stack import LOGIN_NODE_CLIENT_ID

    auth, node = f"127.0.0.1:{ports['auth']}", f"http://127.0.0.1:{ports['login-node']}"
    tokens = {}
    for user in DEMO_USERS:
        if user.email is None:
            answer = sign_in_patient(auth, node, LOGIN_NODE_CLIENT_ID, user.uid)
        else:
            answer = sign_in_with_password(auth, user.email, DEMO_PASSWORD)
        tokens[user.uid] = answer["idToken"]
    return tokens


def _sms_to(stack: dict[str, Any], phone: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{stack['ports']['sms']}/sms/v1/messages:query"
    status, body = _request("POST", url, token="local-sms-token", body={"to": phone})
    assert status == 200, body
    return body["messages"]


def _user(uid: str):
    return next(u for u in DEMO_USERS if u.uid == uid)


def test_a_full_day(stack: dict[str, Any]) -> None:
    base, tokens = stack["base"], stack["tokens"]
    stack_clock: clock.FileClock = stack["clock"]
    now = stack_clock.now().astimezone(WARSAW)
    # Tomorrow at 10:00, whatever the hour now: always bookable, reminded at 18:00 today.
    visit_day = now.date() + timedelta(days=1)
    opens = datetime.combine(visit_day, dtime(10, 0), tzinfo=WARSAW)
    reminder_due = datetime.combine(now.date(), dtime(18, 0), tzinfo=WARSAW)
    ewa, jan = _user("patient-ewa"), _user("patient-jan")

    # 1. Referrals synced from P1: the agent sees Ewa's referral, and P1 issued it.
    status, found = _request(
        "POST",
        f"{base}/v1/patients/lookup",
        token=tokens["agent-1"],
        body={"pesel": ewa.pesel, "reason": "full-day check"},
    )
    assert status == 200, found
    referral_ids = {r["referral_id"] for r in found["referrals"]}
    p1 = f"https://127.0.0.1:{stack['ports']['p1']}/p1/v1"
    _, feed = _request("GET", f"{p1}/referrals?limit=1000", tls=_p1_tls())
    assert referral_ids & {r["referral_id"] for r in feed["referrals"]}, "no referral from P1"

    # 2. Staff publish tomorrow's visit hour; Ewa books it through the API.
    _, point = _request("GET", f"{base}/v1/points/pt-00001", token=tokens["staff-1"])
    product = next(
        (p for p in point["point"]["products"] if p == "jcovden"), point["point"]["products"][0]
    )
    status, published = _request(
        "POST",
        f"{base}/v1/points/pt-00001/calendar/publish",
        token=tokens["staff-1"],
        key=uuid.uuid4().hex,
        body={
            "date_from": visit_day.isoformat(),
            "date_to": visit_day.isoformat(),
            "weekdays": list(range(7)),
            "opens": f"{opens:%H:%M}",
            "closes": f"{opens + timedelta(minutes=30):%H:%M}",
            "slot_minutes": 15,
            "capacity": 2,
            "product": product,
        },
    )
    assert status in (200, 201), published
    slot_id = f"pt-00001_{opens:%Y%m%d_%H%M}_{product}"
    status, booked = _request(
        "POST",
        f"{base}/v1/appointments",
        token=tokens["patient-ewa"],
        key=uuid.uuid4().hex,
        body={"slot_id": slot_id},
    )
    assert status == 201, booked
    visit = booked["appointments"][0]

    # 3. Its SMS at once; the reminder through Cloud Tasks at 18:00 the day before (at once
    # when the booking is made after 18:00).
    phone = _eventually(lambda: _patient_phone(stack, ewa.pesel), "Ewa's phone")
    booked_at = stack_clock.now()
    if booked_at < reminder_due - timedelta(seconds=30):
        confirmation = _eventually(lambda: _sms_to(stack, phone), "the booking SMS")
        time.sleep(3)  # the reminder is hours away: nothing else may arrive meanwhile
        assert len(_sms_to(stack, phone)) == 1, [m["text"] for m in _sms_to(stack, phone)]
        assert "zarezerwowano" in confirmation[0]["text"]
        stack_clock.move_to(reminder_due + timedelta(seconds=5))
    texts = _eventually(
        lambda: (m := _sms_to(stack, phone)) and len(m) >= 2 and m,
        "the booking SMS and the reminder",
    )
    time.sleep(2)  # one reminder, not two
    texts = _sms_to(stack, phone)
    assert len(texts) == 2, [m["text"] for m in texts]
    kinds = sorted("reminder" if "Przypomnienie" in m["text"] else "booked" for m in texts)
    assert kinds == ["booked", "reminder"], [m["text"] for m in texts]

    # The next morning, a few minutes before the visit, Ewa arrives.
    stack_clock.move_to(opens - timedelta(minutes=5))
    now = stack_clock.now().astimezone(WARSAW)

    # 4. Staff check Ewa in and complete the visit; the record reaches P1.
    appointment = f"{base}/v1/appointments/{visit['appointment_id']}"
    status, body = _request(
        "POST",
        f"{appointment}/check-in",
        token=tokens["staff-1"],
        key=uuid.uuid4().hex,
        body={"pesel": ewa.pesel},
    )
    assert status == 200, body
    status, body = _request(
        "POST",
        f"{appointment}/complete",
        token=tokens["staff-1"],
        key=uuid.uuid4().hex,
        body={"product": product, "lot_number": "FD-2026"},
    )
    assert status == 200, body
    records = _eventually(
        lambda: _request(
            "POST", f"{p1}/vaccinations:query", tls=_p1_tls(), body={"pesel": ewa.pesel}
        )[1]["vaccinations"],
        "the vaccination record in P1",
    )
    assert len(records) == 1 and records[0]["lot_number"] == "FD-2026"

    # 5. An SDS delivery sets the bookable capacity of a point's week.
    week_start = (now + timedelta(days=7 - now.weekday())).date()  # next Monday
    sds = f"http://127.0.0.1:{stack['ports']['sds']}/sds/v1"
    _, pt2 = _request("GET", f"{base}/v1/points/pt-00002", token=tokens["staff-1"])
    sds_product = pt2["point"]["products"][0]
    status, body = _request(
        "POST",
        f"{sds}/deliveries",
        token="local-sds-token",
        body={
            "delivery_id": "d-full-day",
            "point_id": "pt-00002",
            "product": sds_product,
            "doses": 5,
            "delivery_date": week_start.isoformat(),
        },
    )
    assert status in (200, 201), body
    status, body = _request("POST", f"{base}/_functions/sync_sds", body={})
    assert status == 200, body
    admin = tokens["admin-1"]
    week = [week_start + timedelta(days=i) for i in range(7)]
    status, calendar = _request(
        "GET",
        f"{base}/v1/points/pt-00002/calendar?date_from={week[0]}&date_to={week[-1]}",
        token=admin,
    )
    assert status == 200, calendar
    capacity = sum(s["capacity"] for s in _slots(calendar) if s["product"] == sds_product)
    assert capacity == 5, "the delivery's 5 doses are the week's bookable seats"

    # 6. Jan books by SMS from his own phone (the one in his P1 profile): PESEL and postcode,
    # an offer, TAK.
    sms = f"http://127.0.0.1:{stack['ports']['sms']}/sms/v1"
    jan_phone = demo_phone(demo_patients(DEMO_PATIENTS).index(jan.pesel))
    _request(
        "POST",
        f"{sms}/inbound",
        token="local-sms-token",
        body={"from": jan_phone, "text": f"{jan.pesel} 31-001"},
    )
    _eventually(lambda: len(_sms_to(stack, jan_phone)) >= 1, "the SMS offer")
    _request(
        "POST", f"{sms}/inbound", token="local-sms-token", body={"from": jan_phone, "text": "TAK"}
    )
    _eventually(lambda: len(_sms_to(stack, jan_phone)) >= 2, "the SMS confirmation")
    status, mine = _request("GET", f"{base}/v1/me/appointments", token=tokens["patient-jan"])
    assert status == 200, mine
    assert [a["channel"] for a in mine["appointments"] if a["dose_number"] == 1] == ["sms"]
    assert "44051401359" not in json.dumps(_sms_to(stack, jan_phone))


def _slots(calendar: dict[str, Any]) -> list[dict[str, Any]]:
    if "slots" in calendar:
        return calendar["slots"]
    return [s for day in calendar.get("days", []) for s in day.get("slots", [])]


def _patient_phone(stack: dict[str, Any], pesel: str) -> str | None:
    from google.cloud import firestore

    from common.domain.pesel import parse_pesel, pesel_key

    # The client reads the emulator's address from the environment: point it at the stack's
    # emulator for this one client, then give the test session its own emulator back.
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{stack['ports']['firestore']}"
    try:
        client = firestore.Client(project=PROJECT)
    finally:
        if previous is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous
    key = pesel_key(
        parse_pesel(pesel, clock.now().astimezone(WARSAW).date()),
        b"local-development-only-not-a-secret",
    )
    snapshot = client.collection("patients").document(key).get()
    return (snapshot.to_dict() or {}).get("phone") if snapshot.exists else None
