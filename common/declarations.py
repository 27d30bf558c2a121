"""The messaging, scheduling and function declarations (common/declarations.yaml), typed.

The same file is read by Terraform, so a topic, queue, schedule, function or secret exists in
exactly one place.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

DECLARATIONS_PATH = Path(__file__).with_name("declarations.yaml")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")
_MEMORY = re.compile(r"^\d+(Mi|Gi)$")
# Roles no function may hold on the project: basic roles and every administrator role.
_FORBIDDEN_ROLES = frozenset({"roles/owner", "roles/editor"})


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


def is_local_only_variable(name: str) -> bool:
    """Variables that put a process in emulator mode or point it at an emulator, or shift its
    clock (common/config.py): a deployed function must never carry one."""
    return name == "LOCAL_STACK" or name.endswith("_EMULATOR_HOST") or name.startswith("CLOCK_")


def is_forbidden_role(role: str) -> bool:
    """Basic roles (owner, editor) and any *admin role are never granted to a function."""
    return role in _FORBIDDEN_ROLES or role.lower().endswith("admin")


class CapacityDeclaration(_Strict):
    peak_rps: float = Field(gt=0)
    cpu_ms: float = Field(gt=0)
    wait_ms: float = Field(ge=0)


class Function(_Strict):
    """One Cloud Function (2nd gen): functions/<name>/main.py, entry point <name>."""

    # http: the API Gateway (public) or nobody; tasks: a Cloud Tasks queue (OIDC as the tasks
    # invoker); pubsub_push and scheduled: a push subscription or a Scheduler job names it;
    # identity_blocking: Identity Platform's blocking function, called without credentials
    # (invoker allUsers) and authenticated by the Google-signed JWT it verifies itself.
    trigger: Literal["http", "pubsub_push", "scheduled", "tasks", "identity_blocking"]
    # Behind the API Gateway (only for trigger http); nothing is ever invokable by allUsers.
    public: bool = False
    memory: str = "256Mi"
    cpu: str | None = None
    timeout_seconds: int = Field(default=60, ge=1, le=3600)
    min_instances: int = Field(default=0, ge=0, le=100)
    max_instances: int = Field(default=10, ge=1, le=1000)
    concurrency: int = Field(default=1, ge=1, le=1000)
    # The capacity model's inputs (common/capacity.py, docs/capacity.md) for busy functions.
    capacity: CapacityDeclaration | None = None
    project_roles: list[str] = Field(default_factory=list)
    publishes: list[str] = Field(default_factory=list)
    enqueues: list[str] = Field(default_factory=list)
    secrets: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    # Manages Identity Platform accounts (the admin accounts API): Terraform grants the custom
    # role identityAccountManager (firebaseauth.users.* only), never an *admin role.
    identity_accounts: bool = False

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if is_local_only_variable(name):
                raise ValueError(f"{name} is for the local stack only, never a deployed function")
        return env

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        if not _MEMORY.match(value):
            raise ValueError(f"memory must look like '256Mi' or '1Gi', got {value!r}")
        return value

    @field_validator("project_roles")
    @classmethod
    def _roles(cls, roles: list[str]) -> list[str]:
        for role in roles:
            if not role.startswith("roles/"):
                raise ValueError(f"{role!r} is not a role name (roles/...)")
            if is_forbidden_role(role):
                raise ValueError(f"{role} is too broad for a function's service account")
        return roles


class Secret(_Strict):
    description: str = ""


class Declarations(_Strict):
    topics: dict[str, Topic]
    subscriptions: dict[str, Subscription]
    queues: dict[str, Queue]
    schedules: dict[str, Schedule]
    functions: dict[str, Function] = Field(default_factory=dict)
    secrets: dict[str, Secret] = Field(default_factory=dict)

    def check_references(self) -> None:
        """Fail early when a name refers to a topic, function, queue or secret not declared."""
        for name, sub in self.subscriptions.items():
            for topic in filter(None, (sub.topic, sub.dead_letter_topic)):
                if topic not in self.topics:
                    raise ValueError(f"subscription {name} refers to unknown topic {topic}")
        if not self.functions:
            return  # an older file without a functions: section (local stack only)
        for name, sub in self.subscriptions.items():
            if sub.push_function is None:
                continue
            target = sub.push_function
            function = self.functions.get(target)
            if function is None:
                raise ValueError(f"subscription {name} pushes to unknown function {target}")
            if function.trigger != "pubsub_push":
                raise ValueError(f"subscription {name} pushes to {target}, not pubsub_push")
        for name, schedule in self.schedules.items():
            function = self.functions.get(schedule.function)
            if function is None:
                raise ValueError(f"schedule {name} targets unknown function {schedule.function}")
            if function.trigger != "scheduled":
                raise ValueError(f"schedule {name} targets {schedule.function}, not scheduled")
        for name, function in self.functions.items():
            if function.public and function.trigger != "http":
                raise ValueError(f"function {name}: only an http function can be public")
            for topic in function.publishes:
                if topic not in self.topics:
                    raise ValueError(f"function {name} publishes to unknown topic {topic}")
            for queue in function.enqueues:
                if queue not in self.queues:
                    raise ValueError(f"function {name} enqueues to unknown queue {queue}")
            for secret in function.secrets:
                if secret not in self.secrets:
                    raise ValueError(f"function {name} reads unknown secret {secret}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML silently keeps the last of two equal keys; in this file that hides a mistake."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        duplicates = sorted({k for k in keys if keys.count(k) > 1}, key=str)
        if duplicates:
            raise ValueError(f"declared twice in {node.start_mark.name}: {duplicates}")
        return super().construct_mapping(node, deep=deep)


def parse_declarations_yaml(text: str) -> dict:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


@functools.cache
def load_declarations(path: Path = DECLARATIONS_PATH) -> Declarations:
    declarations = Declarations.model_validate(
        parse_declarations_yaml(path.read_text(encoding="utf-8"))
    )
    declarations.check_references()
    return declarations
