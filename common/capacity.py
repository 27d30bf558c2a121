"""The capacity model: how many instances, how much concurrency, from rates and measured CPU.

Every busy function states its design peak (`peak_rps`), the CPU one request costs (`cpu_ms`,
measured with scripts/measure_request_cpu.py) and how long it waits on Firestore or a peer in
production (`wait_ms`, from Firestore's in-region latency times the RPCs it makes). From those:

    per instance      rps_per_instance = vcpu x 1000 / cpu_ms x TARGET_UTILIZATION
    concurrency       the requests in flight that keep that rate busy: rps x (cpu_ms + wait_ms)
    max instances     peak_rps / rps_per_instance x HEADROOM

Cloud Run scales out when an instance's CPU passes the target utilization, so instances are
sized for that fraction of their CPU; the headroom covers an opening's burst above the design
peak while new instances start. The numbers go to common/declarations.yaml (what Terraform
deploys), and tests/unit/test_capacity.py fails when they no longer follow from the model;
docs/capacity.md explains the inputs. `python -m common.capacity` prints the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

TARGET_UTILIZATION = 0.6
HEADROOM = 1.5
MAX_CONCURRENCY = 80  # functions-framework's threads in one instance: beyond, queueing only
MIN_MAX_INSTANCES = 2  # never a single point of failure


@dataclass(frozen=True)
class CapacityInputs:
    peak_rps: float
    cpu_ms: float
    wait_ms: float
    vcpu: float = 1.0


@dataclass(frozen=True)
class InstanceSettings:
    rps_per_instance: int
    concurrency: int
    max_instances: int


def settings_for(inputs: CapacityInputs) -> InstanceSettings:
    per_instance = inputs.vcpu * 1000.0 / inputs.cpu_ms * TARGET_UTILIZATION
    in_flight = per_instance * (inputs.cpu_ms + inputs.wait_ms) / 1000.0
    concurrency = max(1, min(MAX_CONCURRENCY, math.ceil(in_flight)))
    instances = max(MIN_MAX_INSTANCES, math.ceil(inputs.peak_rps / per_instance * HEADROOM))
    return InstanceSettings(int(per_instance), concurrency, instances)


def inputs_of(function: dict[str, Any]) -> CapacityInputs | None:
    raw = function.get("capacity")
    if not raw:
        return None
    cpu = function.get("cpu")
    return CapacityInputs(
        peak_rps=float(raw["peak_rps"]),
        cpu_ms=float(raw["cpu_ms"]),
        wait_ms=float(raw["wait_ms"]),
        vcpu=float(cpu) if cpu else 1.0,
    )


def table(functions: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| function | peak req/s | CPU ms | wait ms | vCPU | req/s per instance "
        "| concurrency | max instances |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, function in sorted(functions.items()):
        inputs = inputs_of(function)
        if inputs is None:
            continue
        s = settings_for(inputs)
        rows.append(
            f"| {name} | {inputs.peak_rps:g} | {inputs.cpu_ms:g} | {inputs.wait_ms:g} "
            f"| {inputs.vcpu:g} | {s.rps_per_instance} | {s.concurrency} | {s.max_instances} |"
        )
    return "\n".join(rows)


def main() -> int:
    from pathlib import Path

    import yaml

    path = Path(__file__).parent / "declarations.yaml"
    print(table(yaml.safe_load(path.read_text(encoding="utf-8"))["functions"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
