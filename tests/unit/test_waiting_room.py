"""The waiting room's pure parts: phases, the draw, admission by rate, positions, tickets."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from common.domain.waiting_room import (
    Opening,
    QueueTicketInvalidError,
    RateChange,
    Ticket,
    draw,
    position_of,
    rank_in,
    sort_key,
)

T0 = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)  # the moment (00:00 in Warsaw)
SECRET = b"k" * 32


def opening(per_minute: float = 60, **extra) -> Opening:
    return Opening(
        opening_id="op-1",
        opens_at=T0,
        rates=(RateChange(at=T0, per_minute=per_minute),),
        **extra,
    )


def test_phases_follow_the_clock() -> None:
    o = opening(window_minutes=30, queue_hours=2)
    assert o.phase(T0 - timedelta(minutes=31)) == "announced"
    assert o.phase(T0 - timedelta(minutes=30)) == "waiting_room"
    assert o.phase(T0 - timedelta(seconds=1)) == "waiting_room"
    assert o.phase(T0) == "queue"
    assert o.phase(T0 + timedelta(hours=2)) == "open"


def test_applies_to_the_cohort_product_and_region_it_names() -> None:
    o = opening(born_from=1970, born_to=1979, product="comirnaty", voivodeship="małopolskie")
    assert o.applies_to(date(1975, 1, 1), "comirnaty", "małopolskie")
    assert not o.applies_to(date(1969, 12, 31), "comirnaty", "małopolskie")
    assert not o.applies_to(date(1980, 1, 1), "comirnaty", "małopolskie")
    assert not o.applies_to(date(1975, 1, 1), "spikevax", "małopolskie")
    assert not o.applies_to(date(1975, 1, 1), "comirnaty", "mazowieckie")
    assert opening().applies_to(date(2001, 1, 1), "anything", None)


def test_admission_is_arithmetic_on_the_rate() -> None:
    o = opening(per_minute=60)  # one a second
    assert o.admitted_count(T0 - timedelta(seconds=1)) == 0
    assert o.admitted_count(T0) == 0
    assert o.admitted_count(T0 + timedelta(seconds=10)) == 10
    assert o.admitted_at(0) == T0 + timedelta(seconds=1)
    assert o.admitted_at(9) == T0 + timedelta(seconds=10)


def test_an_admin_can_change_the_rate_live_and_what_was_admitted_stays() -> None:
    o = opening(per_minute=60).model_copy(
        update={
            "rates": (
                RateChange(at=T0, per_minute=60),
                RateChange(at=T0 + timedelta(seconds=10), per_minute=600),  # 10 a second
            )
        }
    )
    assert o.admitted_count(T0 + timedelta(seconds=10)) == 10
    assert o.admitted_count(T0 + timedelta(seconds=11)) == 20
    assert o.admitted_at(9) == T0 + timedelta(seconds=10)
    assert o.admitted_at(19) == T0 + timedelta(seconds=11)
    assert o.current_rate(T0 + timedelta(seconds=30)) == 600


def test_early_arrivals_are_ordered_by_the_draw_and_later_ones_by_arrival() -> None:
    o = opening()
    early = sort_key(T0 - timedelta(minutes=20), o, 0.9)
    earlier_but_unlucky = sort_key(T0 - timedelta(minutes=29), o, 0.95)
    late = sort_key(T0 + timedelta(seconds=5), o, 0.01)
    later = sort_key(T0 + timedelta(seconds=6), o, 0.0)
    assert earlier_but_unlucky > early  # arriving earlier wins nothing
    assert early < late < later  # the room before the moment, then arrival order


def test_the_draw_is_fixed_per_person_and_unpredictable_without_the_secret() -> None:
    assert draw(SECRET, "op-1", "p1") == draw(SECRET, "op-1", "p1")
    assert draw(SECRET, "op-1", "p1") != draw(SECRET, "op-2", "p1")
    assert draw(SECRET, "op-1", "p1") != draw(b"another" * 5, "op-1", "p1")


def test_the_draw_is_uniform_and_independent_of_arrival_order() -> None:
    """10,000 people (a fixed seed): the draw's deciles hold 1,000 each within a chi-square
    bound, and who came first has no advantage (rank correlation with arrival near 0)."""
    rng = random.Random(2021)
    keys = [f"{rng.getrandbits(128):032x}" for _ in range(10_000)]  # in arrival order
    values = [draw(SECRET, "op-1", k) for k in keys]
    counts = [0] * 10
    for v in values:
        counts[int(v * 10)] += 1
    chi2 = sum((c - 1000) ** 2 / 1000 for c in counts)
    assert chi2 < 27.88, (chi2, counts)  # chi-square, 9 degrees of freedom, p = 0.001
    ranks = {v: r for r, v in enumerate(sorted(values))}
    n = len(values)
    mean = (n - 1) / 2
    cov = sum((i - mean) * (ranks[v] - mean) for i, v in enumerate(values)) / n
    spearman = cov / ((n * n - 1) / 12)
    assert abs(spearman) < 0.04, spearman  # 4 standard errors (1/sqrt(n) = 0.01)


def test_positions_before_and_after_the_moment() -> None:
    o = opening(per_minute=60, turn_minutes=10)
    joined = T0 - timedelta(minutes=5)
    before = position_of(o, rank_in([], (0, 0.5)), joined, 1200, T0 - timedelta(minutes=1))
    assert (before.rank, before.waiting, before.admitted) == (None, 1200, False)
    assert before.estimated_wait_s == 60  # until the moment: the draw is kept till then
    rank = 99  # a hundredth place: admitted after 100 s at one a second
    waiting = position_of(o, rank, joined, 1200, T0 + timedelta(seconds=40))
    assert (waiting.ahead, waiting.admitted, waiting.estimated_wait_s) == (59, False, 60)
    turn = position_of(o, rank, joined, 1200, T0 + timedelta(seconds=100))
    assert turn.admitted and turn.turn_ends_at == T0 + timedelta(seconds=100, minutes=10)
    gone = position_of(o, rank, joined, 1200, T0 + timedelta(seconds=100, minutes=10))
    assert gone.expired and not gone.admitted


def test_a_late_arrival_in_an_empty_queue_gets_a_full_turn() -> None:
    o = opening(per_minute=60, turn_minutes=10)
    arrived = T0 + timedelta(hours=1)  # place 5 was reached long ago
    position = position_of(o, 5, arrived, 6, arrived)
    assert position.admitted and not position.expired
    assert position.turn_ends_at == arrived + timedelta(minutes=10)


def test_a_ticket_is_bound_to_its_holder_and_cannot_be_forged() -> None:
    ticket = Ticket("op-1", "patient-a", T0 - timedelta(minutes=3))
    token = ticket.sign(SECRET)
    back = Ticket.verify(token, SECRET)
    assert back == ticket
    back.check_holder("op-1", "patient-a")
    with pytest.raises(QueueTicketInvalidError):
        back.check_holder("op-1", "patient-b")  # useless to anyone else
    with pytest.raises(QueueTicketInvalidError):
        back.check_holder("op-2", "patient-a")
    body, mac = token.split(".")
    forged = Ticket("op-1", "patient-b", T0 - timedelta(minutes=3)).sign(b"guess" * 8)
    for bad in (forged, f"{body}.{mac[:-2]}AA", "x.y", "", body, f"{forged.split('.')[0]}.{mac}"):
        with pytest.raises(QueueTicketInvalidError):
            Ticket.verify(bad, SECRET)


def test_an_opening_must_make_sense() -> None:
    with pytest.raises(ValueError):
        Opening(opening_id="op-1", opens_at=datetime(2026, 12, 8), rates=(
            RateChange(at=T0, per_minute=1),))  # fmt: skip
    with pytest.raises(ValueError):
        opening(born_from=1980, born_to=1970)
    with pytest.raises(ValueError):
        Opening(
            opening_id="op-1",
            opens_at=T0,
            rates=(RateChange(at=T0 + timedelta(seconds=1), per_minute=1),),
        )
