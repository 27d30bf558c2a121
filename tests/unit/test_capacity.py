"""The capacity model (common/capacity.py) and the instance settings Terraform deploys."""

from __future__ import annotations

import pytest

from common.capacity import CapacityInputs, inputs_of, settings_for
from common.declarations import load_declarations

DECLARED = load_declarations().functions
BUSY = ("search_slots", "book_appointment", "cancel_appointment", "reschedule_appointment")


def test_the_model_sizes_instances_for_the_cpu_they_have() -> None:
    # 2 ms a request on one vCPU at 60 %: 300 requests/s an instance; 20 ms of waiting keeps
    # 300 x 22 ms = 6.6 requests in flight; 1,000 requests/s need 1000 / 300 x 1.5 instances.
    s = settings_for(CapacityInputs(peak_rps=1000, cpu_ms=2, wait_ms=20))
    assert (s.rps_per_instance, s.concurrency, s.max_instances) == (300, 7, 5)
    # Two vCPUs double the rate of one instance and halve the instances needed.
    two = settings_for(CapacityInputs(peak_rps=1000, cpu_ms=2, wait_ms=20, vcpu=2))
    assert (two.rps_per_instance, two.max_instances) == (600, 3)
    # Never fewer than two instances, never more concurrency than threads.
    tiny = settings_for(CapacityInputs(peak_rps=1, cpu_ms=1, wait_ms=10_000))
    assert tiny.max_instances == 2 and tiny.concurrency == 80


@pytest.mark.parametrize("name", BUSY)
def test_busy_functions_state_their_capacity(name: str) -> None:
    assert DECLARED[name].capacity is not None, f"{name}: give peak_rps, cpu_ms and wait_ms"


@pytest.mark.parametrize("name", sorted(n for n, f in DECLARED.items() if f.capacity))
def test_deployed_settings_follow_from_the_model(name: str) -> None:
    function = DECLARED[name]
    inputs = inputs_of(function.model_dump())
    assert inputs is not None
    expected = settings_for(inputs)
    assert (function.concurrency, function.max_instances) == (
        expected.concurrency,
        expected.max_instances,
    ), f"{name}: declarations.yaml says otherwise than the model (python -m common.capacity)"
