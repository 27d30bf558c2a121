"""The messaging and scheduling declarations (common/declarations.yaml), typed.

The same file is read by Terraform, so a topic, queue or schedule exists in exactly one place.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

DECLARATIONS_PATH = Path(__file__).with_name("declarations.yaml")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


def duration_seconds(text: str) -> float:
    """Parse the '10s' form that Cloud Tasks, Pub/Sub and Terraform all use."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"duration must look like '10s', got {text!r}")
    return float(match.group(1))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Topic(_Strict):
    description: str = ""


class Subscription(_Strict):
    topic: str
    push_function: str | None = None
    ack_deadline_seconds: int = Field(default=10, ge=10, le=600)
    max_delivery_attempts: int | None = Field(default=None, ge=5, le=100)
    dead_letter_topic: str | None = None
    min_retry_backoff: str = "10s"
    max_retry_backoff: str = "600s"


class Queue(_Strict):
    description: str = ""
    max_dispatches_per_second: float = Field(default=10, gt=0, le=500)
    max_concurrent_dispatches: int = Field(default=100, ge=1, le=5000)
    max_attempts: int = Field(default=10, ge=-1)
    min_backoff: str = "1s"
    max_backoff: str = "60s"
    max_doublings: int = Field(default=5, ge=0)


class Schedule(_Strict):
    description: str = ""
    schedule: str
    time_zone: str = "Europe/Warsaw"
    function: str


class Declarations(_Strict):
    topics: dict[str, Topic]
    subscriptions: dict[str, Subscription]
    queues: dict[str, Queue]
    schedules: dict[str, Schedule]

    def check_references(self) -> None:
        """Fail early when a subscription names a topic that is not declared."""
        for name, sub in self.subscriptions.items():
            for topic in filter(None, (sub.topic, sub.dead_letter_topic)):
                if topic not in self.topics:
                    raise ValueError(f"subscription {name} refers to unknown topic {topic}")


@functools.cache
def load_declarations(path: Path = DECLARATIONS_PATH) -> Declarations:
    declarations = Declarations.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    declarations.check_references()
    return declarations
