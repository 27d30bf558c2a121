"""The opening minute through HTTP: a crowd of bookers, each behaving as the API tells clients to.

Every booker sends one booking with its own Idempotency-Key and keeps at it until it has a
definitive answer: 201 (booked) or 409 (full, or any other refusal). On 503 or 429 it waits the
`Retry-After` seconds plus a little random jitter, on a reset or a dropped connection a short
random pause, and sends the same request again with the same key; after `patience_s` (60 s, a
real person's patience) it gives up and counts as unanswered. This is the client contract of
api/openapi.yaml; the crowd benchmark (bench/) and the suite's opening test
(tests/e2e/test_opening_crowd.py) both use it.

The HTTP client is a small asyncio one (one connection per attempt, `Connection: close`), so a
thousand bookers cost one thread of the load generator, not a thousand. `until_answered` is the
contract on its own, over any way of sending: the benchmarks' open-loop peak mix (bench/openloop.py)
sends through a `KeepAlivePool` of kept-alive connections instead.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from google.cloud import firestore

from common.adapters.firestore_store import APPOINTMENTS, PATIENTS, REFERRALS, SEATS
from common.config import Settings
from common.domain.pesel import make_pesel, parse_pesel, pesel_key
from common.services.availability import AvailabilityFolder
from common.services.directory import calendar_document, write_calendars, write_points
from emulator.identities import mint_id_token

PATIENCE_S = 60.0
RESET_PAUSE_S = (0.05, 0.5)


@dataclass(frozen=True)
class Booker:
    uid: str
    pesel: str
    token: str
    key: str
    slot_id: str


@dataclass
class Answer:
    """One booker's story: its definitive status (or what stopped it) and how long it took."""

    status: int | None  # 201, 409, ... or None when it never got a definitive answer
    code: str | None
    seconds: float
    attempts: int
    resets: int
    retried_503: int
    retried_429: int
    answered_at: float  # time.time() when the definitive answer arrived
    body: dict[str, Any] = field(default_factory=dict)
    timeouts: int = 0  # sent, and no answer before the patience ran out (not a reset)


def request_bytes(
    host: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    key: str | None = None,
    keep_alive: bool = False,
) -> bytes:
    """One HTTP/1.1 request, encoded once and sent as often as the contract says."""
    data = json.dumps(body).encode() if body is not None else b""
    head = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
        "Accept: application/json",
    ]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    if key:
        head.append(f"Idempotency-Key: {key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def _request(host: str, booker: Booker) -> bytes:
    return request_bytes(
        host,
        "POST",
        "/v1/appointments",
        token=booker.token,
        body={"slot_id": booker.slot_id},
        key=booker.key,
    )


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes] | None:
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        return None
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers and len(body) < int(headers["content-length"]):
        return None
    return int(parts[1]), headers, body


async def _attempt(host: str, port: int, request: bytes, timeout_s: float):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return _parse(await asyncio.wait_for(reader.read(), timeout_s))
    finally:
        writer.close()


Reply = tuple[int, dict[str, str], bytes]
Send = Callable[[float], Awaitable[Reply | None]]


async def until_answered(
    send: Send,
    rng: random.Random,
    *,
    patience_s: float = PATIENCE_S,
    started: float | None = None,
    parse_ok: bool = True,
) -> Answer:
    """The client contract: `send(seconds_left)` again (the same request, the same key) after
    a 503 or 429 (waiting Retry-After plus jitter) or a reset (None, or a connection error:
    a short random pause), until a definitive answer or `patience_s` after `started`
    (time.monotonic(); default now: an open-loop caller passes the time it was due)."""
    started = time.monotonic() if started is None else started
    deadline = started + patience_s
    attempts = resets = r503 = r429 = timeouts = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return Answer(
                None,
                "gave_up",
                patience_s,
                attempts,
                resets,
                r503,
                r429,
                time.time(),
                timeouts=timeouts,
            )
        attempts += 1
        try:
            answer = await send(left)
        except TimeoutError:  # waited for an answer until the patience ran out
            timeouts += 1
            continue
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            answer = None
        if answer is None:
            resets += 1
            await asyncio.sleep(rng.uniform(*RESET_PAUSE_S))
            continue
        status, headers, body = answer
        if status in (429, 503):
            if status == 503:
                r503 += 1
            else:
                r429 += 1
            wait = float(headers.get("retry-after") or 1)
            await asyncio.sleep(wait + rng.uniform(0, 0.5 * wait + 0.1))
            continue
        payload: Any = {}
        if parse_ok or status >= 400:
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                payload = {}
        code = (payload.get("error") or {}).get("code") if isinstance(payload, dict) else None
        return Answer(
            status,
            code,
            time.monotonic() - started,
            attempts,
            resets,
            r503,
            r429,
            time.time(),
            payload if isinstance(payload, dict) else {},
            timeouts,
        )


async def _book(host: str, port: int, booker: Booker, patience_s: float, rng: random.Random):
    request = _request(host, booker)
    return await until_answered(
        lambda left: _attempt(host, port, request, left), rng, patience_s=patience_s
    )


class KeepAlivePool:
    """Up to `size` kept-alive connections to one server, for an asyncio load generator.

    `send()` takes an idle connection (or opens one), writes the request, reads exactly one
    response (Content-Length or chunked) and keeps the connection unless the server said
    `Connection: close`. A connection idle longer than `max_idle_s` is closed rather than
    reused (the gateway closes idle ones after 5 s; reusing one it just closed would look
    like a reset). Any error closes the connection and is raised to `until_answered`, which
    counts it as a reset and retries.
    """

    def __init__(self, host: str, port: int, size: int, max_idle_s: float = 3.0) -> None:
        self.host = host
        self.port = port
        self.size = size
        self.max_idle_s = max_idle_s
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._slots: asyncio.Semaphore | None = None
        self.opened = 0

    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:  # made inside the running loop
            self._slots = asyncio.Semaphore(self.size)
        return self._slots

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        while self._idle:
            reader, writer, since = self._idle.pop()
            if now - since < self.max_idle_s and not reader.at_eof():
                return reader, writer
            writer.close()
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    async def send(self, request: bytes, timeout_s: float) -> Reply | None:
        """One exchange; the caller holds a slot (`async with pool.slots()`)."""
        reader, writer = await self._connection()
        try:
            writer.write(request)
            reply = await asyncio.wait_for(_read_response(reader), timeout_s)
        except BaseException:
            writer.close()
            raise
        _, headers, _ = reply
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self._idle.append((reader, writer, time.monotonic()))
        return reply

    def close(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()


async def _read_response(reader: asyncio.StreamReader) -> Reply:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP response: {status_line[:60]!r}")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(chunk[:-2])
        body = b"".join(chunks)
    else:
        body = await reader.read()
        headers["connection"] = "close"
    return int(parts[1]), headers, body


async def _run(host: str, port: int, bookers: Sequence[Booker], patience_s: float, seed: int):
    rng = random.Random(seed)
    return await asyncio.gather(
        *(_book(host, port, b, patience_s, random.Random(rng.random())) for b in bookers)
    )


def run_crowd(
    host: str, port: int, bookers: Sequence[Booker], patience_s: float = PATIENCE_S, seed: int = 1
) -> tuple[list[Answer], float]:
    """Every booker at once; (answers in booker order, wall seconds). Runs its own event loop
    in a thread of its own (the caller may already have one)."""
    result: list[Any] = []

    def main() -> None:
        started = time.monotonic()
        answers = asyncio.run(_run(host, port, bookers, patience_s, seed))
        result.append((list(answers), time.monotonic() - started))

    thread = threading.Thread(target=main, name="crowd")
    thread.start()
    thread.join()
    return result[0]


# -- the world of an opening ---------------------------------------------------------------------
@dataclass(frozen=True)
class Opening:
    point_ids: list[str]
    slot_ids: list[str]
    capacity: int  # seats in all
    bookers: list[Booker]


def seed_opening(
    db: firestore.Client,
    project_id: str,
    *,
    bookers: int,
    points: int = 1,
    seats_per_point: int = 100,
    day: date,
    run: str = "crowd",
) -> Opening:
    """`points` points near each other in Kraków, each with one slot of `seats_per_point`
    (Jcovden: one dose), and `bookers` patients with a valid e-referral, each holding a token
    and aiming at one of the slots (spread evenly)."""
    point_ids = [f"pt-{run}-{i:02d}" for i in range(points)]
    write_points(
        db,
        [
            {
                "point_id": pid,
                "name": f"Punkt {pid}",
                "kind": "clinic",
                "street": "ul. Długa 1",
                "postcode": "31-001",
                "place": "Kraków",
                "county": "Kraków",
                "voivodeship": "małopolskie",
                "lat": 50.0614 + 0.01 * i,
                "lon": 19.9366,
                "products": ["jcovden"],
                "accessible": True,
                "phone": "+48 12 555 00 00",
            }
            for i, pid in enumerate(point_ids)
        ],
    )
    from datetime import time as dtime

    write_calendars(
        db,
        [
            calendar_document(pid, [(day, dtime(10, 0), "jcovden", seats_per_point)])
            for pid in point_ids
        ],
    )
    slot_ids = [f"{pid}_{day:%Y%m%d}_1000_jcovden" for pid in point_ids]
    secret = Settings.from_env().pesel_hash_key
    today = day - timedelta(days=2)
    people: list[Booker] = []
    batch = db.batch()
    for n in range(bookers):
        born = date(1950, 1, 1) + timedelta(days=(n * 7) % 12000)
        pesel = make_pesel(born, "F" if n % 2 else "M", n % 1000)
        key = pesel_key(parse_pesel(pesel, today), secret)
        referral_id = f"ref-{run}-{n}"
        batch.set(db.collection(PATIENTS).document(key), {"patient_key": key})
        batch.set(
            db.collection(REFERRALS).document(referral_id),
            {
                "patient_key": key,
                "referral": {
                    "referral_id": referral_id,
                    "kind": "primary",
                    "valid_from": (today - timedelta(days=10)).isoformat(),
                    "valid_to": (today + timedelta(days=80)).isoformat(),
                    "status": "active",
                    "booster_number": 0,
                },
            },
        )
        if n % 200 == 199:
            batch.commit(timeout=120)
            batch = db.batch()
        uid = f"{run}-{n}"
        people.append(
            Booker(
                uid=uid,
                pesel=pesel,
                token=mint_id_token(project_id, uid, role="patient", pesel=pesel),
                key=f"{run}-book-{n}",
                slot_id=slot_ids[n % len(slot_ids)],
            )
        )
    batch.commit(timeout=120)
    return Opening(point_ids, slot_ids, points * seats_per_point, people)


@dataclass(frozen=True)
class Outcome:
    booked: int
    refused_full: int
    refused_other: Counter[str]
    unanswered: int
    resets: int  # connections reset or dropped before an answer (then retried)
    retries_503: int
    retries_429: int
    refused_while_free: int
    wall_s: float
    p50_s: float
    p99_s: float
    mean_attempts_of_winners: float
    seats_in_store: int
    booked_in_store: int
    patients_with_two: int
    free_after_fold: dict[str, int]
    timeouts: int = 0  # requests sent that got no answer before the patience ran out

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def judge(db: firestore.Client, opening: Opening, answers: list[Answer], wall_s: float) -> Outcome:
    """Count the answers and check them against the store (after folding the availability)."""
    AvailabilityFolder(db).fold_all()
    seats = {s.id: s for s in db.collection(SEATS).stream()}
    ours = [s for s in seats.values() if s.to_dict().get("slot_id") in opening.slot_ids]
    booked_docs = [
        a
        for a in (s.to_dict() for s in db.collection(APPOINTMENTS).stream())
        if a.get("status") == "booked" and a.get("slot_id") in opening.slot_ids
    ]
    per_patient = Counter(a["patient_key"] for a in booked_docs)
    # The moment each slot filled: the commit time of its last seat. A 409 "full" answered
    # before that moment was a refusal while a seat was still free (a defect).
    filled_at: dict[str, float] = {}
    for seat in ours:
        slot = seat.to_dict()["slot_id"]
        moment = seat.update_time.timestamp()
        filled_at[slot] = max(filled_at.get(slot, 0.0), moment)
    seats_per_slot = Counter(s.to_dict()["slot_id"] for s in ours)
    capacity_per_slot = opening.capacity // len(opening.slot_ids)
    refused_while_free = 0
    refused_other: Counter[str] = Counter()
    for booker, answer in zip(opening.bookers, answers, strict=True):
        if answer.status == 409 and answer.code == "slot_unavailable":
            slot = booker.slot_id
            full_after = seats_per_slot[slot] < capacity_per_slot or (
                answer.answered_at < filled_at.get(slot, float("inf"))
            )
            refused_while_free += int(full_after)
        elif answer.status not in (201, None):
            refused_other[f"{answer.status} {answer.code}"] += 1
    winners = [a for a in answers if a.status == 201]
    free = {}
    for pid in opening.point_ids:
        document = db.collection("availability").document(pid).get().to_dict() or {}
        for day in (document.get("days") or {}).values():
            for entry in day.values():
                free[pid] = free.get(pid, 0) + int(entry.get("free", 0))
    times = [a.seconds for a in answers if a.status is not None]
    return Outcome(
        booked=len(winners),
        refused_full=sum(1 for a in answers if a.status == 409 and a.code == "slot_unavailable"),
        refused_other=refused_other,
        unanswered=sum(1 for a in answers if a.status is None),
        resets=sum(a.resets for a in answers),
        retries_503=sum(a.retried_503 for a in answers),
        retries_429=sum(a.retried_429 for a in answers),
        refused_while_free=refused_while_free,
        wall_s=wall_s,
        p50_s=_quantile(times, 0.5),
        p99_s=_quantile(times, 0.99),
        mean_attempts_of_winners=(sum(a.attempts for a in winners) / len(winners))
        if winners
        else 0.0,
        seats_in_store=len(ours),
        booked_in_store=len(booked_docs),
        patients_with_two=sum(1 for n in per_patient.values() if n > 1),
        free_after_fold=free,
        timeouts=sum(a.timeouts for a in answers),
    )


def opening_day(now: datetime) -> date:
    return (now + timedelta(days=3)).date()
