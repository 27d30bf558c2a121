"""Client of the SMS gateway, and the shape of the gateway's incoming-SMS webhook.

Configured by ``SMS_BASE_URL`` and ``SMS_TOKEN``. Errors follow
``common.adapters.http_errors``. No retries in here: the Cloud Task or Pub/Sub redelivery
retries, and a repeated ``send`` with the same ``client_message_id`` is recorded and sent
once by the gateway, which returns the same message id.

Phone numbers are personal data: they travel only in request bodies, and neither this module
nor its errors ever log or quote one.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from common.adapters.http_errors import (
    PeerClient,
    parse_json,
    send,
)

PEER = "SMS gateway"
SIGNATURE_HEADER = "X-Sms-Signature"
PHONE_PATTERN = r"^\+?[0-9]{9,15}$"


class _Accepted(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message_id: str = Field(min_length=1)


class SmsInbound(BaseModel):
    """What the gateway POSTs to our webhook for an incoming SMS. Delivery is at least
    once: dedupe on ``message_id``."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", hide_input_in_errors=True, populate_by_name=True
    )

    message_id: str = Field(min_length=1, max_length=128)
    sender: str = Field(alias="from", repr=False, pattern=PHONE_PATTERN)
    text: str = Field(repr=False, max_length=1600)
    received_at: datetime


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``header`` (``sha256=<hex>``) is the HMAC-SHA256 of the raw ``body``."""
    if not header or not secret:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header.strip(), expected)


class SmsClient(PeerClient):
    API_PREFIX = "/sms/v1"
    URL_ENV = "SMS_BASE_URL"
    TOKEN_ENV = "SMS_TOKEN"  # noqa: S105 (the variable's name, not a secret)

    def send(self, to: str, text: str, client_message_id: str) -> str:
        """Hand one SMS to the gateway; returns the gateway's message id. Use a stable
        ``client_message_id`` (e.g. derived from the event id) so a retry sends nothing new."""
        response = send(
            self._session,
            PEER,
            "POST",
            f"{self._base}/messages",
            json_body={"to": to, "text": text, "client_message_id": client_message_id},
            timeout=self._timeout,
        )
        return parse_json(PEER, response, _Accepted).message_id
