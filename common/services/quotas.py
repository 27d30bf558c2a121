"""Counting requests per identity against the quotas (common/domain/quotas.py), without a hot
document.

Two counters, for two kinds of request:

- **Writes and costly reads** (booking writes, look-ups, callbacks, SMS messages, queue joins)
  are counted in Firestore: one small document per identity, kind and window
  (`quota_counters/{kind}_{identity}_{seconds}_{index}`), read before the action (one
  BatchGet for all windows) and incremented in the action's own commit (a blind Increment,
  never read-modify-write). A document belongs to one person and one window, so it is written
  at most `max` times a window (a few a minute): never hot, and no one counter is shared by an
  agent's callers or by the country. A refusal writes no count, only its audit entry.
- **Searches** (950 a second at peak, answered from memory) are counted in memory per
  instance: a search stays a search, not a write. A script spread over N instances gets at
  most N times the limit; the edge's per-address rate limit (docs/operations.md) caps that.

The policy is data: the file's defaults, or an admin's override in `settings/quotas`, read at
most once a minute per instance, so a change needs no deploy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.cloud import firestore

from common import structured_log as log
from common.adapters.firestore_store import RPC
from common.domain.quotas import (
    QuotaPolicy,
    RateLimitedError,
    counter_expiry,
    counter_id,
    load_policy,
    refusal,
)

QUOTA_COUNTERS = "quota_counters"
SETTINGS = "settings"
POLICY_DOCUMENT = "quotas"
POLICY_TTL_S = 60.0


@dataclass
class PolicySource:
    """The policy in force: the admin's override if there is one, else the file's."""

    read_override: Callable[[], dict[str, Any] | None]
    ttl_s: float = POLICY_TTL_S
    monotonic: Callable[[], float] = time.monotonic
    default: QuotaPolicy = field(default_factory=load_policy)
    _cached: QuotaPolicy | None = None
    _read_at: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def policy(self) -> QuotaPolicy:
        with self._lock:
            if self._cached is None or self.monotonic() - self._read_at > self.ttl_s:
                self._cached = self._load()
                self._read_at = self.monotonic()
            return self._cached

    def _load(self) -> QuotaPolicy:
        try:
            override = self.read_override()
        except Exception as err:  # noqa: BLE001 (the file's policy is a safe fallback)
            log.warning("quota override unreadable, using the defaults", fault=type(err).__name__)
            return self._cached or self.default
        if not override:
            return self.default
        try:
            return QuotaPolicy.model_validate(override.get("policy"))
        except ValueError:
            log.warning("quota override invalid, using the defaults")
            return self.default

    def forget(self) -> None:
        with self._lock:
            self._cached = None


def firestore_override(client: firestore.Client) -> Callable[[], dict[str, Any] | None]:
    def read() -> dict[str, Any] | None:
        snapshot = client.collection(SETTINGS).document(POLICY_DOCUMENT).get(**RPC)
        return snapshot.to_dict() if snapshot.exists else None

    return read


class Quotas:
    """Strict counting in Firestore, for writes and costly reads."""

    def __init__(self, source: PolicySource) -> None:
        self.source = source

    def check(self, reader: Any, kind: str, identity: str, now: datetime) -> None:
        """Refuse (429) if any window of `kind` is already full for `identity`: one read."""
        windows = self.source.policy().windows(kind)
        if not windows:
            return
        keys = [(QUOTA_COUNTERS, counter_id(kind, identity, w, now)) for w in windows]
        found = reader.get_all(keys)
        for window, key in zip(windows, keys, strict=True):
            document = found.get(key)
            used = int(document.data.get("count", 0)) if document is not None else 0
            if used >= window.max:
                raise refusal(kind, window, now)

    def enforce(
        self, units: Any, reader: Any, actor: Any, kind: str, identity: str, now: datetime
    ) -> None:
        """check(), and a refusal's audit entry (its own small commit) before the 429."""
        try:
            self.check(reader, kind, identity, now)
        except RateLimitedError as err:
            refused = err
            units.run(
                lambda uow: audit_refusal(uow, actor, refused, identity, now),
                gave_up=lambda: refused,
            )
            raise

    def count(self, uow: Any, kind: str, identity: str, now: datetime) -> None:
        """One more, in the caller's commit (a blind Increment per window)."""
        for window in self.source.policy().windows(kind):
            uow.set(
                QUOTA_COUNTERS,
                counter_id(kind, identity, window, now),
                {
                    "kind": kind,
                    "count": firestore.Increment(1),
                    "expires_at": counter_expiry(window, now),
                },
                merge=True,
            )


@dataclass
class LocalQuotas:
    """Per-instance counting in memory (searches): fixed windows, like the strict ones."""

    source: PolicySource
    max_identities: int = 200_000
    _counts: dict[tuple[str, str, int, int], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, kind: str, identity: str, now: datetime) -> None:
        """Count one; refuse (429) when a window is full (the refused one is not counted)."""
        windows = self.source.policy().windows(kind)
        with self._lock:
            keys = [(kind, identity, w.seconds, w.index(now)) for w in windows]
            for window, key in zip(windows, keys, strict=True):
                if self._counts.get(key, 0) >= window.max:
                    raise refusal(kind, window, now)
            if len(self._counts) > self.max_identities:
                self._forget_old(now)
            for key in keys:
                self._counts[key] = self._counts.get(key, 0) + 1

    def _forget_old(self, now: datetime) -> None:
        stamp = int(now.timestamp())
        self._counts = {key: n for key, n in self._counts.items() if (key[3] + 1) * key[2] > stamp}


def audit_refusal(
    uow: Any, actor: Any, err: RateLimitedError, identity: str, now: datetime
) -> None:
    """An audit entry of a refusal (whoever was refused: patients too), no PESEL in it."""
    from common.adapters.firestore_store import AUDIT_LOG
    from common.services.audit import AUDIT_KEEP

    uow.create(
        AUDIT_LOG,
        _new_id(),
        {
            "action": "quota.refused",
            "actor_uid": getattr(actor, "uid", None),
            "actor_role": getattr(actor, "role", None),
            "subject": identity,  # a keyed id or a keyed phone, never a PESEL or a number
            "kind": (err.details or {}).get("kind"),
            "window_s": (err.details or {}).get("window_s"),
            "at": now,
            "expires_at": now + AUDIT_KEEP,
            "appointment_ids": [],
            "patient_keys": [],
        },
    )


def _new_id() -> str:
    import uuid

    return uuid.uuid4().hex


class QuotaAdmin:
    """An admin changes the quotas in force (settings/quotas), audited; every instance reads
    them within a minute."""

    def __init__(self, units: Any, source: PolicySource) -> None:
        self.units = units
        self.source = source

    def set_policy(self, actor: Any, policy: QuotaPolicy, now: datetime, idem: Any = None):
        from common.services.idempotency import StoredResponse

        def attempt(uow: Any) -> StoredResponse:
            uow.set(
                SETTINGS,
                POLICY_DOCUMENT,
                {"policy": policy.model_dump(mode="json"), "updated_at": now,
                 "updated_by": getattr(actor, "uid", None)},
            )  # fmt: skip
            uow.audit(actor, "quotas.set", [], now, version=policy.version)
            uow.after_commit(self.source.forget)
            return uow.respond(StoredResponse(200, {"policy": policy.model_dump(mode="json")}))

        from common.domain.errors import OverloadedError

        return self.units.run(attempt, idem=idem, gave_up=lambda: OverloadedError())
