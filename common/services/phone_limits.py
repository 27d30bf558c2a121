"""Per-phone limits of the SMS channel and of one-time codes: one small counter per phone.

`phone_limits/{HMAC(phone)}` counts, per hour and per Warsaw-independent UTC day, what one
phone number did or was sent:

    inbound   SMS messages it sent to our short number (everything the webhook handles)
    start     "PESEL KOD" messages (each names a person: a sender trying many PESELs is
              enumerating, whatever the replies say)
    code      one-time codes texted TO it (someone else asking to book or to set a phone in
              this number's name: its owner is not to be flooded)

plus `patient-{patient_key}` documents counting a patient's requests for a phone code.

A count is read and written back with the document's version as a precondition, in the unit
of work of the action it guards (common/services/unit_of_work.py), so two messages of one
phone at once cannot both squeeze under a limit. One document per phone (or patient), written
once per message of that phone: a few writes a minute at most, never a hot document, and no
document is shared by two people. Over a limit the action is refused; the first refusal of a
window is told to the sender, the rest are silent (an SMS reply is itself an SMS we pay for and
that could be aimed at someone). Documents expire (TTL on `expires_at`) a day after their
last window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from common.services.notifications import phone_key
from common.services.unit_of_work import UnitOfWork

PHONE_LIMITS = "phone_limits"
HOUR_S = 3600
DAY_S = 86400
KEEP = timedelta(days=2)

Verdict = Literal["ok", "over_first", "over"]


@dataclass(frozen=True)
class Limit:
    per_hour: int
    per_day: int


DEFAULT_LIMITS: Mapping[str, Limit] = {
    "inbound": Limit(per_hour=30, per_day=100),
    "start": Limit(per_hour=5, per_day=10),
    "code": Limit(per_hour=3, per_day=6),
    "code_request": Limit(per_hour=5, per_day=10),
}


class PhoneLimits:
    """`limits` is the kinds' limits, or a callable giving them as they are now: the wiring
    reads them from the quota policy (common/domain/quotas.yaml, or the admin's override),
    so that every limit per identity is in one file and changes without a deploy."""

    def __init__(
        self,
        secret: bytes,
        limits: Mapping[str, Limit] | Callable[[], Mapping[str, Limit]] = DEFAULT_LIMITS,
    ) -> None:
        self.secret = secret
        self._limits = limits

    @property
    def limits(self) -> Mapping[str, Limit]:
        current = self._limits() if callable(self._limits) else self._limits
        return {**DEFAULT_LIMITS, **current}

    def phone_doc(self, phone: str) -> str:
        return phone_key(phone, self.secret)

    @staticmethod
    def patient_doc(patient_key: str) -> str:
        return f"patient-{patient_key}"

    def take(self, uow: UnitOfWork, doc_id: str, kinds: Sequence[str], now: datetime) -> Verdict:
        """Count one of each of `kinds` in the caller's commit; the verdict of the strictest.

        Every call counts (a refused message too), so the first refusal of a window can be
        told apart from the next ones."""
        found = uow.get(PHONE_LIMITS, doc_id)
        data: dict[str, Any] = dict(found.data) if found is not None else {}
        stamp = int(now.timestamp())
        hour, day = stamp // HOUR_S, stamp // DAY_S
        # A new window starts every count of it at zero (kept as fields, so that one update
        # with the version read writes the whole document).
        if data.get("hour") != hour:
            data = {k: (0 if k.endswith("_h") else v) for k, v in data.items()} | {"hour": hour}
        if data.get("day") != day:
            data = {k: (0 if k.endswith("_d") else v) for k, v in data.items()} | {"day": day}
        verdict: Verdict = "ok"
        limits = self.limits
        for kind in kinds:
            limit = limits[kind]
            for suffix, allowed in (("_h", limit.per_hour), ("_d", limit.per_day)):
                used = int(data.get(kind + suffix, 0))
                data[kind + suffix] = used + 1
                if used > allowed:
                    verdict = "over"
                elif used == allowed and verdict == "ok":
                    verdict = "over_first"
        data["expires_at"] = datetime.fromtimestamp((day + 1) * DAY_S, now.tzinfo) + KEEP
        data["updated_at"] = now
        if found is None:
            uow.create(PHONE_LIMITS, doc_id, data)
        else:
            # The version read guards the count: a concurrent message makes this attempt run
            # again from its reads (the unit of work's retry).
            uow.update(PHONE_LIMITS, doc_id, data, if_version=found.version)
        return verdict


def limits_of(policy: Any) -> dict[str, Limit]:
    """The per-phone kinds of a quota policy (common/domain/quotas.py) as limits here."""
    return {name: Limit(hour, day) for name, (hour, day) in policy.phone_limits().items()}
