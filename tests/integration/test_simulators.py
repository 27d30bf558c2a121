"""P1, SDS and SMS simulators exercised through the production clients in common/adapters.

Every simulator runs in-process on a free port (werkzeug in a thread); no emulator, no
network beyond localhost. The fault switches are driven over HTTP exactly as an operator or
the e2e suite would drive them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, Response, request

from common import clock
from common.adapters.http_errors import (
    PeerAuthError,
    PeerConflictError,
    PeerNotFoundError,
    PeerRejectedError,
    parse_retry_after,
)
from common.adapters.p1_client import P1Client, P1VaccinationRecord
from common.adapters.sds_client import SdsClient
from common.adapters.sms_client import SIGNATURE_HEADER, SmsClient, SmsInbound, verify_signature
from common.domain.errors import DependencyUnavailableError
from common.domain.pesel import parse_pesel
from emulator.faults import RunningServer, serve_in_thread
from emulator.p1 import start_p1
from emulator.processes import free_port
from emulator.sds import start_sds
from emulator.sms import start_sms

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token"
PESEL_A = "44051401359"  # 1944-05-14
PESEL_B = "02270803624"  # 2002-07-08
PHONE = "+48600100200"
FAST = (1.0, 2.0)  # client timeouts: tests must not wait the production 5 s


def _admin(server: RunningServer, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(
        method,
        server.base_url + path,
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )


def _faults(server: RunningServer, **switches: Any) -> None:
    response = requests.put(f"{server.base_url}/_faults", json=switches, timeout=5)
    assert response.status_code == 200, response.text


@pytest.fixture
def p1() -> Iterator[RunningServer]:
    with start_p1(token=TOKEN) as server:
        yield server


@pytest.fixture
def sds() -> Iterator[RunningServer]:
    with start_sds(token=TOKEN) as server:
        yield server


@pytest.fixture
def sms() -> Iterator[RunningServer]:
    with start_sms(token=TOKEN) as server:
        yield server


def _p1_client(server: RunningServer, **kw: Any) -> P1Client:
    return P1Client(server.base_url, kw.pop("token", TOKEN), timeout=kw.pop("timeout", FAST))


def _sds_client(server: RunningServer, **kw: Any) -> SdsClient:
    return SdsClient(server.base_url, kw.pop("token", TOKEN), timeout=kw.pop("timeout", FAST))


def _sms_client(server: RunningServer, **kw: Any) -> SmsClient:
    return SmsClient(server.base_url, kw.pop("token", TOKEN), timeout=kw.pop("timeout", FAST))


def _issue(server: RunningServer, pesels: list[str], **extra: Any) -> list[dict[str, Any]]:
    response = _admin(server, "POST", "/p1/v1/referrals:issue", {"pesels": pesels, **extra})
    assert response.status_code == 201, response.text
    return response.json()["referrals"]


def _vaccination(vaccination_id: str, dose: int = 1, **changes: Any) -> P1VaccinationRecord:
    values: dict[str, Any] = {
        "vaccination_id": vaccination_id,
        "pesel": PESEL_A,
        "product": "comirnaty",
        "lot_number": "FE1234",
        "dose_number": dose,
        "dose_kind": "primary",
        "given_on": date(2021, 5, 1) + timedelta(days=35 * (dose - 1)),
        "point_id": "point-001",
    }
    return P1VaccinationRecord(**(values | changes))


# --- P1 ----------------------------------------------------------------------------------


def test_p1_pages_referrals_by_cursor_until_caught_up(p1: RunningServer) -> None:
    issued = _admin(
        p1, "POST", "/p1/v1/cohorts:issue", {"born_from": 1950, "born_to": 1955, "count": 25}
    )
    assert issued.status_code == 201 and issued.json()["issued"] == 25
    client = _p1_client(p1)
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = client.referrals_since(cursor, limit=10)
        if not page:
            break
        pages += 1
        seen += page
    assert pages == 3 and len(seen) == 25
    sequences = [r.sequence for r in seen]
    assert sequences == sorted(sequences) and len(set(sequences)) == 25
    today = clock.now().date()
    assert all(1950 <= parse_pesel(r.pesel, today).birth_date.year <= 1955 for r in seen)
    assert {(r.kind, r.status, (r.valid_to - r.valid_from).days) for r in seen} == {
        ("primary", "active", 90)
    }
    # Caught up: the cursor comes back unchanged.
    assert client.referrals_since(cursor, limit=10) == ([], cursor)


def test_p1_changed_referral_comes_again_after_the_cursor(p1: RunningServer) -> None:
    client = _p1_client(p1)
    first = _issue(p1, [PESEL_A, PESEL_B], valid_days=60)
    _, cursor = client.referrals_since(None, 100)
    cancelled = _admin(p1, "POST", f"/p1/v1/referrals/{first[0]['referral_id']}:cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    page, _ = client.referrals_since(cursor, 100)
    assert [(r.referral_id, r.status) for r in page] == [(first[0]["referral_id"], "cancelled")]
    assert page[0].to_referral().status == "cancelled"


def test_p1_does_not_issue_a_second_active_referral(p1: RunningServer) -> None:
    _issue(p1, [PESEL_A])
    again = _admin(p1, "POST", "/p1/v1/referrals:issue", {"pesels": [PESEL_A]}).json()
    assert (again["issued"], again["skipped"]) == (0, 1)
    booster = _issue(p1, [PESEL_A], kind="booster")
    assert booster[0]["booster_number"] == 1


def test_p1_cursor_survives_a_restart_with_a_state_file(tmp_path: Path) -> None:
    state = tmp_path / "p1.json"
    with start_p1(token=TOKEN, state_path=state) as server:
        _issue(server, [PESEL_A])
        _, cursor = _p1_client(server).referrals_since(None, 100)
    with start_p1(token=TOKEN, state_path=state) as server:
        client = _p1_client(server)
        assert client.referrals_since(cursor, 100) == ([], cursor)
        _issue(server, [PESEL_B])
        page, _ = client.referrals_since(cursor, 100)
        assert [r.pesel for r in page] == [PESEL_B]


def test_p1_refuses_a_cursor_from_a_lost_history(p1: RunningServer) -> None:
    with pytest.raises(PeerRejectedError) as caught:
        _p1_client(p1).referrals_since("999", 10)
    assert caught.value.code == "cursor_ahead" and caught.value.status == 400


def test_p1_opens_cohorts_by_the_rules_and_reissues_nothing(p1: RunningServer) -> None:
    body = {"rules_date": "2021-04-02", "count": 3, "seed": 7}
    first = _admin(p1, "POST", "/p1/v1/cohorts:open", body).json()
    # Open by 2021-04-02: <=1940, 1941-1950, 1951, 1952, 1953.
    assert len(first["cohorts"]) == 5
    assert first["issued"] == 15
    years = {c["born_from"]: c["born_to"] for c in first["cohorts"]}
    assert years[1951] == 1951 and years[1953] == 1953
    second = _admin(p1, "POST", "/p1/v1/cohorts:open", body).json()
    assert (second["issued"], second["skipped"]) == (0, 15)
    capped = _admin(p1, "POST", "/p1/v1/cohorts:open", body | {"seed": 8, "max_total": 4})
    assert capped.json()["issued"] <= 4


def test_p1_vaccination_report_is_idempotent_and_closes_the_referral(p1: RunningServer) -> None:
    client = _p1_client(p1)
    [referral] = _issue(p1, [PESEL_A])
    _, cursor = client.referrals_since(None, 100)

    first = client.report_vaccination(_vaccination("vac-1", dose=1))
    repeat = client.report_vaccination(_vaccination("vac-1", dose=1))
    assert not first.duplicate and repeat.duplicate
    assert repeat.p1_record_id == first.p1_record_id
    assert first.referral_id == referral["referral_id"]
    assert client.referrals_since(cursor, 100) == ([], cursor)  # dose 1 does not use it up

    client.report_vaccination(_vaccination("vac-2", dose=2))
    page, _ = client.referrals_since(cursor, 100)
    assert [(r.referral_id, r.status) for r in page] == [(referral["referral_id"], "used")]

    listed = _admin(p1, "POST", "/p1/v1/vaccinations:query", {"pesel": PESEL_A}).json()
    assert [v["vaccination_id"] for v in listed["vaccinations"]] == ["vac-1", "vac-2"]
    assert client.get_vaccination("vac-2").referral_id == referral["referral_id"]


def test_p1_same_vaccination_id_with_another_body_is_a_conflict(p1: RunningServer) -> None:
    client = _p1_client(p1)
    client.report_vaccination(_vaccination("vac-9"))
    with pytest.raises(PeerConflictError) as caught:
        client.report_vaccination(_vaccination("vac-9", lot_number="OTHER"))
    assert caught.value.status == 409 and caught.value.code == "vaccination_conflict"
    assert PESEL_A not in str(caught.value)


def test_p1_unknown_vaccination_is_not_found(p1: RunningServer) -> None:
    with pytest.raises(PeerNotFoundError):
        _p1_client(p1).get_vaccination("never-sent")


def test_p1_refuses_pesel_in_url_and_never_echoes_one(p1: RunningServer) -> None:
    response = _admin(p1, "GET", f"/p1/v1/vaccinations?pesel={PESEL_A}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "pesel_in_url"
    assert PESEL_A not in response.text
    bad = "44051401358"  # wrong check digit
    refused = _admin(p1, "POST", "/p1/v1/referrals:issue", {"pesels": [bad]})
    assert refused.status_code == 400 and bad not in refused.text
    invalid = _admin(p1, "POST", "/p1/v1/vaccinations", {"pesel": PESEL_A})
    assert invalid.status_code == 400 and PESEL_A not in invalid.text


# --- SDS ---------------------------------------------------------------------------------


def test_sds_pages_deliveries_and_dedupes_them(sds: RunningServer) -> None:
    for n in range(5):
        body = {
            "delivery_id": f"d-{n}",
            "point_id": "point-001",
            "product": "spikevax",
            "doses": 100 + n,
            "delivery_date": "2021-04-12",
        }
        assert _admin(sds, "POST", "/sds/v1/deliveries", body).status_code == 201
    again = _admin(sds, "POST", "/sds/v1/deliveries", body)
    assert again.status_code == 200
    clash = _admin(sds, "POST", "/sds/v1/deliveries", body | {"doses": 1})
    assert clash.status_code == 409
    client = _sds_client(sds)
    first, cursor = client.deliveries_since(None, 3)
    second, cursor = client.deliveries_since(cursor, 3)
    assert [d.delivery_id for d in first + second] == [f"d-{n}" for n in range(5)]
    assert client.deliveries_since(cursor, 3) == ([], cursor)


def test_sds_demand_is_an_idempotent_upsert(sds: RunningServer) -> None:
    client = _sds_client(sds)
    first = client.put_demand("point-001", "2021-W14", {"comirnaty": 120, "spikevax": 30})
    repeat = client.put_demand("point-001", "2021-W14", {"spikevax": 30, "comirnaty": 120})
    assert repeat == first  # same body: not even updated_at moves
    changed = client.put_demand("point-001", "2021-W14", {"comirnaty": 90})
    assert changed.doses == {"comirnaty": 90}
    assert client.get_demand("point-001", "2021-W14") == changed
    with pytest.raises(PeerNotFoundError):
        client.get_demand("point-001", "2021-W15")


@pytest.mark.parametrize(
    ("week", "doses", "code"),
    [
        ("2021-14", {"comirnaty": 1}, "invalid_iso_week"),
        ("2021-W54", {"comirnaty": 1}, "invalid_iso_week"),
        ("2021-W14", {"sputnik": 1}, "unknown_product"),
        ("2021-W14", {"comirnaty": -1}, "invalid_request"),
    ],
)
def test_sds_rejects_bad_demand(sds: RunningServer, week: str, doses: dict, code: str) -> None:
    with pytest.raises(PeerRejectedError) as caught:
        _sds_client(sds).put_demand("point-001", week, doses)
    assert caught.value.code == code


# --- SMS ---------------------------------------------------------------------------------


def test_sms_send_is_deduped_by_client_message_id(sms: RunningServer) -> None:
    client = _sms_client(sms)
    first = client.send(PHONE, "Wizyta jutro 10:00", "evt-1")
    assert client.send(PHONE, "Wizyta jutro 10:00", "evt-1") == first
    assert client.send(PHONE, "Inna", "evt-2") != first
    everything = _admin(sms, "GET", "/sms/v1/messages").json()["messages"]
    assert [m["client_message_id"] for m in everything] == ["evt-1", "evt-2"]
    with pytest.raises(PeerConflictError) as caught:
        client.send(PHONE, "changed text", "evt-1")
    assert PHONE not in str(caught.value)
    mine = _admin(sms, "POST", "/sms/v1/messages:query", {"to": PHONE}).json()["messages"]
    assert len(mine) == 2


def test_sms_refuses_phone_in_url(sms: RunningServer) -> None:
    response = _admin(sms, "GET", "/sms/v1/messages?to=%2B48600100200")
    assert response.status_code == 400 and response.json()["error"]["code"] == "phone_in_url"
    invalid = _admin(sms, "POST", "/sms/v1/messages", {"to": "12", "text": "x"})
    assert invalid.status_code == 400


@dataclass
class Receiver:
    """Our webhook, stubbed: records deliveries, fails the first ``fail_first`` of them."""

    fail_first: int = 0
    calls: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def app(self) -> Flask:
        app = Flask("webhook-receiver")

        @app.post("/hook")
        def hook() -> tuple[Response | str, int]:
            with self.changed:
                self.calls.append((request.get_data(), dict(request.headers)))
                self.changed.notify_all()
                failing = len(self.calls) <= self.fail_first
            return ("", 500) if failing else ("", 204)

        return app

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[tuple[bytes, dict[str, str]]]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.calls) >= count, timeout_s)
            return list(self.calls)


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[int], tuple[Receiver, str]]]:
    servers: list[RunningServer] = []

    def make(fail_first: int = 0) -> tuple[Receiver, str]:
        receiver = Receiver(fail_first)
        server = serve_in_thread(receiver.app())
        servers.append(server)
        return receiver, f"{server.base_url}/hook"

    yield make
    for server in servers:
        server.stop()


def _configure_webhook(sms: RunningServer, url: str, **extra: Any) -> None:
    body = {"webhook_url": url, "backoff_s": 0.01} | extra
    response = _admin(sms, "PUT", "/sms/v1/config", body)
    assert response.status_code == 200 and response.json()["webhook_secret_set"] == (
        "webhook_secret" in extra
    )


def _inbound_status(sms: RunningServer, message_id: str, want: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        record = _admin(sms, "GET", f"/sms/v1/inbound/{message_id}").json()
        if record["status"] == want or time.monotonic() > deadline:
            return record
        time.sleep(0.02)


def test_sms_inbound_reaches_the_webhook_signed(sms: RunningServer, receiver_factory) -> None:
    receiver, url = receiver_factory(0)
    _configure_webhook(sms, url, webhook_secret="s3cret")
    sent = _admin(sms, "POST", "/sms/v1/inbound", {"from": PHONE, "text": f"{PESEL_A} 00-950"})
    assert sent.status_code == 202
    [(body, headers)] = receiver.wait_for(1)
    assert verify_signature(body, headers.get(SIGNATURE_HEADER), "s3cret")
    assert not verify_signature(body, headers.get(SIGNATURE_HEADER), "other")
    inbound = SmsInbound.model_validate_json(body)
    assert (inbound.message_id, inbound.sender) == (sent.json()["message_id"], PHONE)
    assert inbound.text.startswith(PESEL_A)
    assert PHONE not in repr(inbound)
    record = _inbound_status(sms, inbound.message_id, "delivered")
    assert (record["status"], record["delivered"]) == ("delivered", 1)


def test_sms_inbound_retries_non_2xx_with_backoff(sms: RunningServer, receiver_factory) -> None:
    receiver, url = receiver_factory(2)
    _configure_webhook(sms, url)
    message_id = _admin(sms, "POST", "/sms/v1/inbound", {"from": PHONE, "text": "TAK"}).json()[
        "message_id"
    ]
    calls = receiver.wait_for(3)
    assert len(calls) == 3
    assert [h["X-Sms-Delivery-Attempt"] for _, h in calls] == ["1", "2", "3"]
    record = _inbound_status(sms, message_id, "delivered")
    assert [a["status"] for a in record["attempts"]] == [500, 500, 204]


def test_sms_inbound_gives_up_after_max_attempts(sms: RunningServer, receiver_factory) -> None:
    receiver, url = receiver_factory(99)
    _configure_webhook(sms, url, max_attempts=2)
    message_id = _admin(sms, "POST", "/sms/v1/inbound", {"from": PHONE, "text": "NIE"}).json()[
        "message_id"
    ]
    record = _inbound_status(sms, message_id, "failed")
    assert record["status"] == "failed" and len(record["attempts"]) == 2
    assert len(receiver.wait_for(2)) == 2


@pytest.mark.parametrize("how", ["request_flag", "duplicate_rate"])
def test_sms_inbound_can_be_delivered_twice(sms: RunningServer, receiver_factory, how: str) -> None:
    receiver, url = receiver_factory(0)
    _configure_webhook(sms, url)
    body: dict[str, Any] = {"from": PHONE, "text": "TAK"}
    if how == "request_flag":
        body["duplicate"] = True
    else:
        _faults(sms, duplicate_rate=1.0)
    accepted = _admin(sms, "POST", "/sms/v1/inbound", body).json()
    assert accepted["copies"] == 2
    calls = receiver.wait_for(2)
    ids = {json.loads(raw)["message_id"] for raw, _ in calls}
    assert len(calls) == 2 and ids == {accepted["message_id"]}


# --- fault switches, seen through the clients ---------------------------------------------

# One harmless public call per client, so every switch is checked against all three.
CALLS: dict[str, Callable[[RunningServer, str, tuple[float, float]], object]] = {
    "p1": lambda s, tok, t: _p1_client(s, token=tok, timeout=t).referrals_since(None, 10),
    "sds": lambda s, tok, t: _sds_client(s, token=tok, timeout=t).deliveries_since(None, 10),
    "sms": lambda s, tok, t: _sms_client(s, token=tok, timeout=t).send(
        PHONE, "x", f"c-{time.monotonic_ns()}"
    ),
}
STARTERS: dict[str, Callable[..., RunningServer]] = {
    "p1": start_p1,
    "sds": start_sds,
    "sms": start_sms,
}


@dataclass
class Sim:
    name: str
    server: RunningServer

    def call(self, timeout: tuple[float, float] = FAST, token: str = TOKEN) -> object:
        return CALLS[self.name](self.server, token, timeout)


@pytest.fixture(params=sorted(CALLS))
def any_sim(request: pytest.FixtureRequest) -> Iterator[Sim]:
    with STARTERS[request.param](token=TOKEN) as server:
        yield Sim(request.param, server)


def test_fail_next_fails_exactly_n_calls_then_recovers(any_sim: Sim) -> None:
    server, call = any_sim.server, any_sim.call
    _faults(server, fail_next=2, retry_after_s=9)
    for _ in range(2):
        with pytest.raises(DependencyUnavailableError) as caught:
            call()
        assert caught.value.retry_after_s == 9
        assert caught.value.details["reason"] == "http_503"
    call()
    assert requests.get(f"{server.base_url}/_faults", timeout=5).json()["fail_next"] == 0


@pytest.mark.parametrize("status", [503, 500, 429])
def test_error_rate_maps_to_dependency_unavailable(any_sim: Sim, status: int) -> None:
    server, call = any_sim.server, any_sim.call
    _faults(server, error_rate=1.0, error_status=status, retry_after_s=3)
    with pytest.raises(DependencyUnavailableError) as caught:
        call()
    assert caught.value.details["status"] == status and caught.value.retry_after_s == 3
    requests.delete(f"{server.base_url}/_faults", timeout=5)
    call()


def test_latency_beyond_the_read_timeout_is_unavailable(any_sim: Sim) -> None:
    server, call = any_sim.server, any_sim.call
    _faults(server, latency_ms=400)
    with pytest.raises(DependencyUnavailableError) as caught:
        call(timeout=(1.0, 0.1))
    assert caught.value.details["reason"] == "timeout"
    call(timeout=(1.0, 2.0))  # slow but within the timeout: fine


@pytest.mark.parametrize("mode", ["close", "503"])
def test_down_is_unavailable_while_operator_paths_still_answer(any_sim: Sim, mode: str) -> None:
    server, call = any_sim.server, any_sim.call
    _faults(server, down=True, down_mode=mode)
    with pytest.raises(DependencyUnavailableError) as caught:
        call()
    assert caught.value.details["reason"] == ("connection" if mode == "close" else "http_503")
    assert requests.get(f"{server.base_url}/_health", timeout=5).status_code == 200
    assert requests.get(f"{server.base_url}/_faults", timeout=5).json()["down"] is True
    assert requests.delete(f"{server.base_url}/_faults", timeout=5).json()["down"] is False
    call()


def test_connection_refused_is_unavailable() -> None:
    client = P1Client(f"http://127.0.0.1:{free_port()}", TOKEN, timeout=FAST)
    with pytest.raises(DependencyUnavailableError) as caught:
        client.referrals_since(None, 10)
    assert caught.value.details == {
        "peer": "P1",
        "reason": "connection",
        "error": "ConnectionError",
    }
    assert caught.value.http_status == 503


def test_wrong_or_missing_token_is_refused(any_sim: Sim) -> None:
    with pytest.raises(PeerAuthError) as caught:
        any_sim.call(token="wrong")
    assert caught.value.status == 401 and caught.value.code == "unauthenticated"
    anonymous = requests.get(f"{any_sim.server.base_url}/{any_sim.name}/v1/x", timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    health = requests.get(f"{any_sim.server.base_url}/_health", timeout=5)
    assert health.json() == {"status": "ok", "service": any_sim.name}


def test_simulation_endpoints_ignore_faults(p1: RunningServer) -> None:
    _faults(p1, fail_next=1)
    _issue(p1, [PESEL_A])  # set-up must not eat the injected failure
    with pytest.raises(DependencyUnavailableError):
        _p1_client(p1).referrals_since(None, 10)
    assert len(_p1_client(p1).referrals_since(None, 10)[0]) == 1


def test_fault_config_is_validated(p1: RunningServer) -> None:
    response = requests.put(f"{p1.base_url}/_faults", json={"error_rate": 2}, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2021, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("30") == 30
    assert parse_retry_after("Sat, 01 May 2021 12:00:45 GMT", now) == 45
    assert parse_retry_after("Sat, 01 May 2021 11:00:00 GMT", now) == 0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("999999") == 3600


# --- the CLIs ------------------------------------------------------------------------------


def test_clis_print_one_ready_line_serve_and_stop_cleanly() -> None:
    # All three at once: start-up is mostly imports, and in parallel it costs one.
    names = ["p1", "sds", "sms"]
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"emulator.{name}", "--port", "0", "--token", TOKEN],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    }
    try:
        for name, process in processes.items():
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            assert line.startswith(f"{name.upper()} simulator listening on http://127.0.0.1:")
            base_url = line.rsplit(" ", 1)[1]
            assert requests.get(f"{base_url}/_health", timeout=5).json()["service"] == name
    finally:
        for process in processes.values():
            process.terminate()
        codes = [process.wait(timeout=10) for process in processes.values()]
    assert codes == [0, 0, 0]
