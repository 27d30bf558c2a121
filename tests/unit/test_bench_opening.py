"""The opening benchmark's arithmetic (bench/opening.py): the fairness bound, the arrivals."""

from __future__ import annotations

import math
import random

import pytest

from bench.opening import Plan, arrivals, estimate_errors, fairness_bound


def test_the_bound_is_the_hypergeometric_mean_plus_three_sd() -> None:
    found = fairness_bound(population=5000, scripts=500, winners=500)
    variance = 500 * 0.1 * 0.9 * 4500 / 4999
    assert found["expected"] == 50.0
    assert found["sd"] == pytest.approx(math.sqrt(variance), abs=0.01)
    assert found["bound"] == pytest.approx(50 + 3 * math.sqrt(variance), abs=0.01)
    # Every seat to a fixed share of everyone: no noise at all.
    assert fairness_bound(100, 10, 100)["sd"] == 0.0


def test_the_bound_holds_for_a_blind_draw_nearly_always() -> None:
    """Simulated: winners drawn blind to who is a script exceed the bound about 0.1% of the
    time (3 sd of a near-normal count); scripts with 1.6 times the chance exceed it mostly."""
    rng = random.Random(3)
    people, scripts, winners = 5000, 500, 500
    bound = fairness_bound(people, scripts, winners)["bound"]
    everyone = [True] * scripts + [False] * (people - scripts)
    over = sum(sum(rng.sample(everyone, winners)) > bound for _ in range(2000))
    assert over <= 10
    weights = [1.6 if s else 1.0 for s in everyone]
    favoured = [sum(rng.choices(everyone, weights, k=winners)) for _ in range(200)]
    assert sum(f > bound for f in favoured) > 150


def test_arrivals_spread_people_over_the_window_and_scripts_early() -> None:
    plan = Plan(people=2000, lead_s=600.0, after_s=60.0)
    stories = arrivals(plan)
    scripts = [s for s in stories if s.script]
    assert len(scripts) == 200
    assert max(s.arrival_s for s in scripts) <= 60.0
    people = [s.arrival_s for s in stories if not s.script]
    assert max(people) <= 660.0 and sum(a > 600 for a in people) > 100  # some after the moment
    assert [s.arrival_s for s in arrivals(plan)] == [s.arrival_s for s in stories]  # seeded


def test_estimate_errors_signed_and_by_position() -> None:
    told = [(100.0, 101.0, 5), (200.0, 199.0, 500), (300.0, 310.0, 5000)]
    found = estimate_errors(told)
    assert found["people"] == 3
    assert found["late_by_s"]["p50"] == 1.0
    assert found["abs_error_s"]["p100"] == 10.0
    assert set(found["abs_error_s_by_position"]) == {"1-100", "101-1000", ">1000"}
