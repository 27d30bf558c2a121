"""A cohort opening through HTTP, people and scripts, against the local stack (issue 12).

    python -m bench.opening            # 5,000 arrivals, 500 seats, the 10 minutes before the
                                       # opening and the first minute after (about 30 minutes)
    python -m bench.opening --quick    # 1,000 arrivals, 100 seats, a one-minute room (3 min)

An admin publishes an opening (PUT /v1/openings/{id}) whose waiting room opens when the
arrivals start. Arrivals are spread over the room's window and the first minute after the
moment; a tenth of them are scripts. Everyone behaves as the kind of client they are:

- A person joins the room (POST .../queue), then looks at their place (GET .../queue with the
  ticket): before the moment only at the moment (the page says when), after it every half of
  the estimated wait, between 1 and 10 s. Once admitted they search (GET /v1/slots) and book
  the first free slot with the ticket (X-Queue-Ticket), searching again if it was just taken,
  up to five times. 503/429 are retried as the client contract says (bench/crowd.py).
- A script arrives in the first tenth of the window, joins, and from then on sends a booking
  every 100 ms, with a fresh Idempotency-Key, to any of the slots, ignoring Retry-After and
  retrying at once on every refusal, until it has a seat or every slot says full (it never
  rejoins: once its turn has passed it asks until its patience ends, 30 minutes).

Reported (bench/results/opening.json and .md): the scripts' share of the seats against their
share of the arrivals with the bound of the sampling noise (`fairness_bound`: the number of
scripts among the winners if winning had nothing to do with being a script is
hypergeometric; the bound is its mean plus three standard deviations), everyone's time from
arrival to a definitive answer, the places and estimated waits people were told against when
they were really admitted, bookings before the moment (must be 0) and seats sold beyond
capacity (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.crowd import KeepAlivePool, request_bytes, until_answered

RESULTS = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"
OPENING_ID = "bench-opening"
SEARCH = "/v1/slots?postcode=31-001&product=jcovden&limit=10"


@dataclass(frozen=True)
class Plan:
    people: int = 5000
    seats: int = 500
    points: int = 5
    script_share: float = 0.10
    lead_s: float = 600.0  # arrivals from the room's opening, this long before the moment
    after_s: float = 60.0  # ... until this long after it
    # What this 2-core machine books under an opening's load, not more: admitting faster than
    # the system books makes the admitted race again, and scripts that retry at once win that
    # race (measured: at 1,200 a minute scripts held 3x their share of the seats).
    admit_per_minute: float = 300.0
    turn_minutes: int = 10
    script_every_s: float = 0.1
    patience_s: float = 1800.0  # nobody is followed longer than this
    seed: int = 7

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            people=1000, seats=100, points=1, lead_s=60.0, after_s=6.0, turn_minutes=2,
            admit_per_minute=600.0,
        )  # fmt: skip

    @property
    def scripts(self) -> int:
        return round(self.people * self.script_share)


# -- the statistics (pure) -------------------------------------------------------------------
def fairness_bound(population: int, scripts: int, winners: int, sigmas: float = 3.0) -> dict:
    """The scripts among `winners` if winning had nothing to do with being a script: drawn
    without replacement from `population` of whom `scripts` are scripts (hypergeometric)."""
    if population <= 1 or winners == 0:
        return {"expected": 0.0, "sd": 0.0, "bound": 0.0, "bound_share": 0.0}
    share = scripts / population
    mean = winners * share
    variance = winners * share * (1 - share) * (population - winners) / (population - 1)
    bound = mean + sigmas * math.sqrt(variance)
    return {
        "expected": round(mean, 2),
        "sd": round(math.sqrt(variance), 2),
        "bound": round(bound, 2),
        "bound_share": round(bound / winners, 4),
    }


def quantiles(values: list[float], qs: tuple[float, ...] = (0.5, 0.9, 0.99, 1.0)) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        f"p{round(q * 100)}": round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)
        for q in qs
    }


def estimate_errors(told: list[tuple[float, float, int]]) -> dict[str, Any]:
    """(predicted admission, real admission, position told) in seconds: how far off the
    estimate was, overall and by where in the queue the person stood."""
    errors = [real - predicted for predicted, real, _ in told]
    by_band: dict[str, list[float]] = {}
    for (predicted, real, position), error in zip(told, errors, strict=True):
        band = "1-100" if position <= 100 else "101-1000" if position <= 1000 else ">1000"
        by_band.setdefault(band, []).append(abs(error))
        del predicted, real
    return {
        "people": len(told),
        "late_by_s": quantiles(errors, (0.1, 0.5, 0.9)),
        "abs_error_s": quantiles([abs(e) for e in errors], (0.5, 0.9, 1.0)),
        "abs_error_s_by_position": {b: quantiles(v, (0.5, 0.9)) for b, v in by_band.items()},
    }


# -- the clients -------------------------------------------------------------------------------
@dataclass
class Story:
    """What happened to one arrival."""

    index: int
    script: bool
    arrival_s: float  # after the room opened
    outcome: str = "unanswered"  # booked, no_seats, turn_passed, refused:<code>, unanswered
    answered_after_s: float | None = None  # from arrival to the definitive answer
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    told: tuple[float, float, int] | None = None  # (predicted admission epoch, position)
    admitted_at: float | None = None  # the server's admission moment (epoch)
    slot_id: str | None = None


class Client:
    def __init__(self, port: int, pool: KeepAlivePool | None) -> None:
        self.port = port
        self.pool = pool

    def send(self, story: Story, method: str, path: str, **kw: Any):
        """The request, as a function of the seconds left that sends it once."""
        headers = kw.pop("headers", None)
        request = request_bytes(HOST, method, path, keep_alive=self.pool is not None, **kw)
        if headers:
            head, sep, rest = request.partition(b"\r\n\r\n")
            extra = "".join(f"\r\n{k}: {v}" for k, v in headers.items()).encode()
            request = head + extra + sep + rest

        async def once(left: float):
            story.requests += 1
            if self.pool is not None:
                async with self.pool.slots():
                    return await self.pool.send(request, min(left, 60.0))
            reader, writer = await asyncio.open_connection(HOST, self.port)
            try:
                writer.write(request)
                await writer.drain()
                from bench.crowd import _read_response

                return await asyncio.wait_for(_read_response(reader), min(left, 60.0))
            finally:
                writer.close()

        return once


async def _contract(story: Story, client: Client, rng: random.Random, method: str, path: str,
                    **kw: Any) -> tuple[int | None, dict[str, Any]]:  # fmt: skip
    once = client.send(story, method, path, **kw)
    answer = await until_answered(once, rng, patience_s=120.0)
    if answer.status is not None:
        story.statuses[answer.status] += 1
    return answer.status, answer.body


def _epoch(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


async def person(story: Story, token: str, world: World, rng: random.Random) -> None:
    client = Client(world.port, None)
    queue_path = f"/v1/openings/{OPENING_ID}/queue"
    status, body = await _contract(story, client, rng, "POST", queue_path, token=token, body={})
    if status != 200:
        story.outcome = f"refused:{status}"
        return
    ticket = body["ticket"]
    position = body.get("position") or {}
    while not position.get("admitted"):
        if position.get("expired"):
            story.outcome = "turn_passed"
            return
        now = time.time()
        if position.get("position") is None:  # before the moment: the page waits for it
            await asyncio.sleep(max(0.0, world.opens_at - now) + rng.uniform(0.2, 3.0))
        else:
            wait = float(position.get("estimated_wait_s") or 0)
            await asyncio.sleep(min(10.0, max(1.0, wait / 2)) + rng.uniform(0, 0.3))
        status, body = await _contract(
            story, client, rng, "GET", queue_path, token=token, headers={"X-Queue-Ticket": ticket}
        )
        if status != 200:
            story.outcome = f"refused:{status}"
            return
        position = body.get("position") or {}
        if story.told is None and position.get("position") is not None:
            predicted = time.time() + float(position.get("estimated_wait_s") or 0)
            story.told = (predicted, 0.0, int(position["position"]))
    story.admitted_at = _epoch(position.get("admitted_at"))
    if story.told is not None and story.admitted_at is not None:
        story.told = (story.told[0], story.admitted_at, story.told[2])
    for _ in range(5):
        status, body = await _contract(story, client, rng, "GET", SEARCH, token=token)
        free = [
            s["slot_id"]
            for item in (body.get("items") or [])
            for s in item.get("earliest_slots", [])
            if s.get("free", 0) > 0
        ]
        if status != 200 or not free:
            story.outcome = "no_seats" if status == 200 else f"refused:{status}"
            return
        status, answer = await _contract(
            story, client, rng, "POST", "/v1/appointments", token=token,
            body={"slot_id": free[0]}, key=uuid.uuid4().hex, headers={"X-Queue-Ticket": ticket},
        )  # fmt: skip
        if status == 201:
            story.outcome, story.slot_id = "booked", free[0]
            return
        code = (answer.get("error") or {}).get("code")
        if code != "slot_unavailable":
            story.outcome = f"refused:{code or status}"
            return
    story.outcome = "no_seats"


async def script(story: Story, token: str, world: World, rng: random.Random) -> None:
    client = Client(world.port, KeepAlivePool(HOST, world.port, 1))
    status, body = await _contract(
        story, client, rng, "POST", f"/v1/openings/{OPENING_ID}/queue", token=token, body={}
    )
    ticket = body.get("ticket") if status == 200 else None
    full: set[str] = set()
    headers = {"X-Queue-Ticket": ticket} if ticket else None
    deadline = time.monotonic() + world.plan.patience_s
    while time.monotonic() < deadline and len(full) < len(world.slot_ids):
        slot_id = rng.choice([s for s in world.slot_ids if s not in full])
        once = client.send(
            story, "POST", "/v1/appointments", token=token, body={"slot_id": slot_id},
            key=uuid.uuid4().hex, headers=headers,
        )  # fmt: skip
        try:
            reply = await once(30.0)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            reply = None
        if reply is not None:
            status, _, raw = reply
            story.statuses[status] += 1
            if status == 201:
                story.outcome, story.slot_id = "booked", slot_id
                return
            if status == 409 and b'"slot_unavailable"' in raw and b'"full"' in raw:
                full.add(slot_id)
        await asyncio.sleep(world.plan.script_every_s)  # at once: no Retry-After, no backoff
    story.outcome = "no_seats" if len(full) == len(world.slot_ids) else "unanswered"


@dataclass
class World:
    plan: Plan
    port: int
    room_opens_at: float  # epoch
    opens_at: float
    slot_ids: list[str]


async def _everyone(world: World, tokens: list[str], stories: list[Story]) -> None:
    rng = random.Random(world.plan.seed)

    async def one(story: Story) -> None:
        # Half a second into the room's time: an arrival is never early by a clock's hair.
        await asyncio.sleep(max(0.0, world.room_opens_at + 0.5 + story.arrival_s - time.time()))
        started = time.monotonic()
        act = script if story.script else person
        try:
            await asyncio.wait_for(
                act(story, tokens[story.index], world, random.Random(rng.random())),
                world.plan.patience_s,
            )
        except TimeoutError:
            story.outcome = "unanswered"
        if story.outcome != "unanswered":
            story.answered_after_s = time.monotonic() - started

    await asyncio.gather(*(one(s) for s in stories))


def arrivals(plan: Plan) -> list[Story]:
    """Who arrives when (seconds after the room opens): people over the window and the first
    `after_s` past the moment, scripts in the window's first tenth."""
    rng = random.Random(plan.seed)
    scripts = set(rng.sample(range(plan.people), plan.scripts))
    stories = []
    for n in range(plan.people):
        is_script = n in scripts
        span = plan.lead_s * 0.1 if is_script else plan.lead_s + plan.after_s
        stories.append(Story(n, is_script, rng.uniform(0, span)))
    return stories


# -- the run -----------------------------------------------------------------------------------
def run(plan: Plan, out: Path) -> dict[str, Any]:
    from bench.crowd import opening_day, seed_opening
    from bench.harness import Stack, new_project
    from bench.progress import Progress
    from common import clock, wiring
    from emulator.identities import mint_id_token

    progress = Progress()
    stack = Stack(progress)
    stack.start()
    try:
        project = new_project("opening")
        stack.use_project(project, topics=True)
        db = wiring.firestore_client()
        progress.update(f"seeding {plan.people:,} people and {plan.seats} seats", force=True)
        seeded = seed_opening(
            db, project, bookers=plan.people, points=plan.points,
            seats_per_point=plan.seats // plan.points, day=opening_day(clock.now()), run="open",
        )  # fmt: skip
        tokens = [b.token for b in seeded.bookers]
        admin = mint_id_token(project, "bench-admin", role="admin")
        room_opens_at = time.time() + 20.0  # time to publish and start the clients
        opens_at = room_opens_at + plan.lead_s
        window_minutes = math.ceil(plan.lead_s / 60)
        opens = datetime.fromtimestamp(opens_at, UTC).replace(microsecond=0)
        opens_at = opens.timestamp()
        room_opens_at = opens_at - window_minutes * 60
        body = {  # the seed's people are born 1950-1982
            "born_from": 1940, "born_to": 1990, "opens_at": opens.isoformat(),
            "window_minutes": window_minutes, "turn_minutes": plan.turn_minutes,
            "admit_per_minute": plan.admit_per_minute,
        }  # fmt: skip
        _publish(stack.base_port, admin, body)
        stories = arrivals(plan)
        world = World(plan, stack.base_port, room_opens_at, opens_at, seeded.slot_ids)
        progress.update(
            f"the room opens in {room_opens_at - time.time():.0f} s, the moment "
            f"{opens.isoformat()}; {plan.people:,} arrivals, {plan.scripts} scripts",
            force=True,
        )
        started = time.monotonic()

        def tick() -> None:  # a line every 30 s: a 20-minute run must show it is alive
            outcomes = Counter(s.outcome for s in stories)
            arrived = sum(1 for s in stories if time.time() >= room_opens_at + s.arrival_s)
            progress.update(
                f"{arrived:,} of {plan.people:,} arrived; {outcomes['booked']:,} booked, "
                f"{len(stories) - outcomes['unanswered']:,} answered",
                force=True,
            )

        _in_a_thread(lambda: asyncio.run(_everyone(world, tokens, stories)), tick)
        wall_s = time.monotonic() - started
        time.sleep(2.5)  # the folder's last round
        service = wiring.booking_service()
        keys = [service.patient_key(b.pesel, clock.now()) for b in seeded.bookers]
        report = judge(db, plan, world, stories, wall_s, keys)
    finally:
        stack.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    Path(f"{out}.md").write_text(render(report))
    progress.done(f"wrote {out}.json and {out}.md")
    return report


def _publish(port: int, token: str, body: dict[str, Any]) -> None:
    import requests

    response = requests.put(
        f"http://{HOST}:{port}/v1/openings/{OPENING_ID}",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
        timeout=60,
    )
    if response.status_code not in (200, 201):
        raise RuntimeError(f"publishing the opening: {response.status_code} {response.text}")


def _in_a_thread(work: Any, tick: Any = None, every_s: float = 30.0) -> None:
    errors: list[BaseException] = []

    def main() -> None:
        try:
            work()
        except BaseException as err:  # noqa: BLE001 (raised again in the caller)
            errors.append(err)

    thread = threading.Thread(target=main, name="opening")
    thread.start()
    thread.join(every_s)
    while thread.is_alive():
        if tick is not None:
            tick()
        thread.join(every_s)
    if errors:
        raise errors[0]


def judge(
    db: Any,
    plan: Plan,
    world: World,
    stories: list[Story],
    wall_s: float,
    patient_keys: list[str] | None = None,
) -> dict:
    """The outcome, from the store where it can be: a booking whose answer a script never saw
    (it timed out and moved on with a new key) is still a seat the scripts won."""
    from common.adapters.firestore_store import APPOINTMENTS, SEATS
    from common.services.availability import AvailabilityFolder

    AvailabilityFolder(db).fold_all()
    slots = set(world.slot_ids)
    seats = Counter(
        s.to_dict().get("slot_id")
        for s in db.collection(SEATS).stream()
        if s.to_dict().get("slot_id") in slots
    )
    booked = [
        a
        for a in (s.to_dict() for s in db.collection(APPOINTMENTS).stream())
        if a.get("slot_id") in slots and a.get("status") == "booked"
    ]
    per_slot = plan.seats // plan.points
    early = [a for a in booked if a["created_at"].timestamp() < world.opens_at]
    winners = [s for s in stories if s.outcome == "booked"]
    script_winners = sum(1 for s in winners if s.script)
    seen_script_winners = script_winners
    if patient_keys is not None:  # who holds the seats, by the store
        is_script = {patient_keys[s.index]: s.script for s in stories}
        holders = [is_script.get(a.get("patient_key")) for a in booked]
        script_winners = sum(1 for h in holders if h)
    people = [s for s in stories if not s.script]
    scripts = [s for s in stories if s.script]
    told = [s.told for s in people if s.told is not None and s.told[1]]
    report = {
        "plan": asdict(plan),
        "moment": datetime.fromtimestamp(world.opens_at, UTC).isoformat(),
        "wall_s": round(wall_s, 1),
        "seats": plan.seats,
        "booked": len(winners),
        "booked_in_store": len(booked),
        "seats_in_store": sum(seats.values()),
        "oversold": sum(max(0, n - per_slot) for n in seats.values()),
        "bookings_before_the_moment": len(early),
        "outcomes": {
            "people": dict(Counter(s.outcome for s in people)),
            "scripts": dict(Counter(s.outcome for s in scripts)),
        },
        "scripts": {
            "share_of_arrivals": round(plan.scripts / plan.people, 4),
            "seats": script_winners,
            "seats_seen_by_scripts": seen_script_winners,
            "share_of_seats": round(script_winners / len(booked), 4) if booked else None,
            "fair_draw": fairness_bound(plan.people, plan.scripts, len(booked)),
            "requests": sum(s.requests for s in scripts),
            "answers": dict(sum((s.statuses for s in scripts), Counter())),
        },
        "people_requests": sum(s.requests for s in people),
        "time_to_answer_s": {
            "people": quantiles([s.answered_after_s for s in people if s.answered_after_s]),
            "people_booked": quantiles(
                [s.answered_after_s for s in people if s.outcome == "booked" and s.answered_after_s]
            ),
            "scripts": quantiles([s.answered_after_s for s in scripts if s.answered_after_s]),
        },
        "estimates": estimate_errors(told),  # type: ignore[arg-type]
    }
    bound = report["scripts"]["fair_draw"]["bound"]
    report["checks"] = {
        "no_booking_before_the_moment": not early,
        "not_oversold": report["oversold"] == 0 and len(booked) == sum(seats.values()),
        "scripts_within_the_noise": script_winners <= bound,
        # People: a script that never stops asking (it ignores "your turn has passed") is
        # answered all the same; its outcomes are reported as they are.
        "every_person_answered": all(s.outcome != "unanswered" for s in people),
    }
    return report


def render(report: dict[str, Any]) -> str:
    plan, scripts = report["plan"], report["scripts"]
    fair = scripts["fair_draw"]
    lines = [
        "# An opening through HTTP (`python -m bench.opening`)",
        "",
        f"{plan['people']:,} arrivals ({scripts['share_of_arrivals']:.0%} scripts) over the "
        f"{plan['lead_s'] / 60:g} minutes before the moment and {plan['after_s']:g} s after, "
        f"for {plan['seats']} seats; admitted {plan['admit_per_minute']:g} a minute, turns of "
        f"{plan['turn_minutes']} minutes. Ran {report['wall_s']} s.",
        "",
        "| check | result |",
        "|---|---|",
        *[
            f"| {k.replace('_', ' ')} | {'yes' if v else '**NO**'} |"
            for k, v in report["checks"].items()
        ],
        "",
        f"- Answered as booked: {report['booked']} of {report['seats']} seats (store: "
        f"{report['booked_in_store']} bookings, {report['seats_in_store']} seats, "
        f"{report['oversold']} oversold); {report['bookings_before_the_moment']} before the "
        "moment.",
        f"- Scripts hold {scripts['seats']} of the seats booked, by the store "
        f"({(scripts['share_of_seats'] or 0):.1%}; answered as booked to them: "
        f"{scripts.get('seats_seen_by_scripts', scripts['seats'])}); a "
        f"draw blind to who is a script gives {fair['expected']} ± {fair['sd']} (bound, mean + "
        f"3 sd: {fair['bound']}, {fair['bound_share']:.1%}). Scripts sent {scripts['requests']:,} "
        f"requests: {scripts['answers']}.",
        f"- Outcomes: people {report['outcomes']['people']}; scripts "
        f"{report['outcomes']['scripts']}.",
        "- Time from arrival to a definitive answer (s): people "
        f"{report['time_to_answer_s']['people']}, "
        f"people who booked {report['time_to_answer_s']['people_booked']}, scripts "
        f"{report['time_to_answer_s']['scripts']}.",
        f"- Estimated against real admission (s, real minus told): {report['estimates']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.opening", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="1,000 arrivals, a one-minute room")
    parser.add_argument("--people", type=int)
    parser.add_argument("--seats", type=int)
    parser.add_argument("--admit-per-minute", type=float)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    changes = {
        k: v
        for k, v in (("people", args.people), ("seats", args.seats),
                     ("admit_per_minute", args.admit_per_minute))
        if v is not None
    }  # fmt: skip
    if changes:
        from dataclasses import replace

        plan = replace(plan, **changes)
    out = args.out or RESULTS / ("opening-quick" if args.quick else "opening")
    report = run(plan, out)
    print(render(report))
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
