"""Quotas per identity (common/domain/quotas.py, common/services/quotas.py) on the fake store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.domain.quotas import (
    DEFAULT_POLICY_PATH,
    QuotaPolicy,
    RateLimitedError,
    load_policy,
)
from common.services.booking import Actor
from common.services.quotas import QUOTA_COUNTERS, LocalQuotas, PolicySource, Quotas
from tests.support.fake_store import FakeUnitsOfWork

NOW = datetime(2026, 12, 2, 12, 0, 30, tzinfo=UTC)
AGENT = Actor(uid="agent-1", role="agent", reason="caller")
TIGHT = QuotaPolicy.model_validate(
    {
        "version": "t",
        "limits": {
            "search": [{"seconds": 60, "max": 3}],
            "lookup": [{"seconds": 60, "max": 2}, {"seconds": 86400, "max": 3}],
        },
    }
)


def source(policy: QuotaPolicy = TIGHT) -> PolicySource:
    return PolicySource(lambda: None, default=policy)


def test_the_defaults_come_from_the_data_file() -> None:
    policy = load_policy()
    assert DEFAULT_POLICY_PATH.name == "quotas.yaml"
    assert {w.seconds for w in policy.windows("search")} == {60, 900, 86400}
    assert max(w.max for w in policy.windows("search")) == 1000  # CoWIN's daily cap
    assert PolicySource(lambda: None).policy() == policy


def test_an_admins_override_wins_and_a_broken_one_falls_back() -> None:
    override = {"policy": TIGHT.model_dump(mode="json")}
    assert PolicySource(lambda: override).policy() == TIGHT
    assert PolicySource(lambda: {"policy": {"version": ""}}).policy() == load_policy()

    def down() -> None:
        raise ConnectionError("firestore")

    assert PolicySource(down).policy() == load_policy()


def test_search_is_counted_in_memory_and_refused_with_when_to_come_back() -> None:
    local = LocalQuotas(source())
    for _ in range(3):
        local.take("search", "person", NOW)
    with pytest.raises(RateLimitedError) as refused:
        local.take("search", "person", NOW)
    assert refused.value.http_status == 429
    assert refused.value.retry_after_s == 30  # the minute ends at 12:01:00
    assert "12:01:00" in refused.value.message and "in 30 s" in refused.value.message
    local.take("search", "someone else", NOW)  # per person
    local.take("search", "person", NOW + timedelta(seconds=30))  # the next window


def test_strict_counting_refuses_after_the_limit_writing_only_an_audit() -> None:
    units = FakeUnitsOfWork()
    quotas = Quotas(source())

    def lookup() -> None:
        quotas.enforce(units, units.reader(), AGENT, "lookup", "agent-key", NOW)

        def attempt(uow) -> None:
            quotas.count(uow, "lookup", "agent-key", NOW)

        units.run(attempt, gave_up=RuntimeError)

    lookup()
    lookup()
    counters = units.store.collection(QUOTA_COUNTERS)
    assert sorted(c["count"] for c in counters.values()) == [2, 2]  # the minute and the day
    before = dict(units.store.collection(QUOTA_COUNTERS))
    with pytest.raises(RateLimitedError) as refused:
        lookup()
    assert refused.value.details["kind"] == "lookup"
    assert units.store.collection(QUOTA_COUNTERS) == before  # a refusal is not counted
    [audit] = units.store.collection("audit_log").values()
    assert audit["action"] == "quota.refused" and audit["subject"] == "agent-key"
    assert audit["expires_at"] > NOW + timedelta(days=6 * 365)  # kept as long as any audit
    # The next minute: the daily window (3) now decides.
    later = NOW + timedelta(minutes=1)
    quotas.enforce(units, units.reader(), AGENT, "lookup", "agent-key", later)
    units.run(lambda uow: quotas.count(uow, "lookup", "agent-key", later), gave_up=RuntimeError)
    with pytest.raises(RateLimitedError) as daily:
        quotas.enforce(units, units.reader(), AGENT, "lookup", "agent-key", later)
    assert daily.value.details["window_s"] == 86400


def test_counters_belong_to_one_identity_and_window_and_expire() -> None:
    units = FakeUnitsOfWork()
    quotas = Quotas(source())
    units.run(lambda uow: quotas.count(uow, "lookup", "a", NOW), gave_up=RuntimeError)
    units.run(lambda uow: quotas.count(uow, "lookup", "b", NOW), gave_up=RuntimeError)
    counters = units.store.collection(QUOTA_COUNTERS)
    assert len(counters) == 4  # two people x two windows: nobody shares a counter
    assert all(c["expires_at"] > NOW for c in counters.values())


def test_a_kind_without_limits_is_free() -> None:
    units = FakeUnitsOfWork()
    Quotas(source()).check(units.reader(), "callback", "anyone", NOW)
    LocalQuotas(source()).take("callback", "anyone", NOW)


def test_the_sms_channels_per_phone_limits_are_read_from_the_same_file() -> None:
    from common.services.phone_limits import DEFAULT_LIMITS, PhoneLimits, limits_of

    # The file's values are the per-phone counter's (one source of truth, not two).
    assert limits_of(load_policy()) == dict(DEFAULT_LIMITS)
    overridden = QuotaPolicy.model_validate(
        {"version": "o", "limits": {"sms_start": [{"seconds": 3600, "max": 1},
                                                  {"seconds": 86400, "max": 2}]}}
    )  # fmt: skip
    current = {"policy": load_policy()}
    limits = PhoneLimits(b"k" * 32, lambda: limits_of(current["policy"]))
    assert limits.limits["start"].per_hour == 5
    current["policy"] = overridden  # an admin's change, read on the next message
    assert (limits.limits["start"].per_hour, limits.limits["start"].per_day) == (1, 2)
    assert limits.limits["inbound"] == DEFAULT_LIMITS["inbound"]  # not given: the default


def test_a_per_phone_kind_must_count_an_hour_and_a_day() -> None:
    with pytest.raises(ValueError, match="sms_code"):
        QuotaPolicy.model_validate(
            {"version": "x", "limits": {"sms_code": [{"seconds": 600, "max": 3}]}}
        )


@pytest.mark.parametrize(
    "limits",
    [{"": [{"seconds": 60, "max": 1}]}, {"serach": [{"seconds": 60, "max": 1}]},
     {"search": [{"seconds": 60 + n, "max": 1} for n in range(7)]}],
)  # fmt: skip
def test_a_policy_with_an_unknown_kind_or_too_many_windows_is_refused(limits) -> None:
    with pytest.raises(ValueError):
        QuotaPolicy.model_validate({"version": "x", "limits": limits})
