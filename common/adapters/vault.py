"""Fields kept encrypted: a PESEL where it is needed again later, a pending SMS's recipient.

Most personal data never needs to be read back in clear: documents are keyed by an HMAC of
the PESEL (`pesel_key`), lists show a masked PESEL derived from the birth date. A few values
must be read back: the PESEL of a patient for the P1 report and the P1 profile look-up, the
PESEL of an SMS conversation for its booking, the phone number of an SMS that a sweeper may
have to send again. Those are stored encrypted, never in clear.

AES-256-GCM (the `cryptography` package), one random 96-bit nonce per value, and the value's
*context* (what it is and which document holds it, e.g. ``pesel|<patient_key>``) as
associated data: a ciphertext copied into another document, or into another field, does not
decrypt. A stored value is ``v1:<key id>:<base64url(nonce + ciphertext + tag)>``.

Keys: ``FIELD_ENCRYPTION_KEY`` (Secret Manager in production) is a key ring,
``<id>:<base64 of 32 bytes>[,<id>:<base64>...]``; the first key encrypts, every key listed
decrypts, so a rotation adds a new first key and keeps the old ones until the documents they
encrypted have been rewritten or have expired (docs/retention.md). With the local emulators
only, a fixed, public key is used when none is set; outside them a missing key refuses to
start, as PESEL_HASH_KEY does (emulator mode: LOCAL_STACK=1, common/config.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_ENV = "FIELD_ENCRYPTION_KEY"
_VERSION = "v1"
_NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
# Local runs only (FIRESTORE_EMULATOR_HOST set): public, so nothing it encrypts is secret.
_LOCAL_KEY_ID = "local"
_LOCAL_KEY = hashlib.sha256(b"local-development-only-field-encryption-key").digest()


class VaultError(ValueError):
    """A stored value that cannot be decrypted (wrong context, unknown key, tampered)."""


class FieldVault:
    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError("the current key id is not in the key ring")
        for key_id, key in keys.items():
            if not _KEY_ID.match(key_id) or len(key) != 32:
                raise ValueError("every key needs an id [A-Za-z0-9_-]{1,16} and 32 bytes")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current

    def __repr__(self) -> str:
        return f"FieldVault(current={self.current!r}, keys={len(self._keys)})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FieldVault:
        env = os.environ if env is None else env
        raw = (env.get(KEY_ENV) or "").strip()
        if not raw:
            from common.config import emulator_mode

            if not emulator_mode(dict(env)):
                raise RuntimeError(f"{KEY_ENV} must be set outside the local emulators")
            return cls({_LOCAL_KEY_ID: _LOCAL_KEY}, _LOCAL_KEY_ID)
        return cls.from_ring(raw)

    @classmethod
    def from_ring(cls, ring: str) -> FieldVault:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for entry in ring.split(","):
            key_id, sep, encoded = entry.strip().partition(":")
            if not sep:
                raise RuntimeError(f"{KEY_ENV}: each entry is <id>:<base64 of 32 bytes>")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise RuntimeError(f"{KEY_ENV}: the key {key_id!r} is not base64") from None
            keys[key_id] = key
            order.append(key_id)
        try:
            return cls(keys, order[0])
        except ValueError as err:
            raise RuntimeError(f"{KEY_ENV}: {err}") from None

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self.current].encrypt(nonce, plaintext.encode(), context.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_VERSION}:{self.current}:{body}"

    def decrypt(self, stored: str, context: str) -> str:
        version, _, rest = str(stored).partition(":")
        key_id, _, body = rest.partition(":")
        if version != _VERSION or key_id not in self._keys or not body:
            raise VaultError("not a value this vault can open (version or key id)")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            opened = self._keys[key_id].decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode()
            )
        except (binascii.Error, ValueError, InvalidTag):
            raise VaultError("the value does not decrypt in this context") from None
        return opened.decode()

    def key_id_of(self, stored: str) -> str | None:
        parts = str(stored).split(":", 2)
        return parts[1] if len(parts) == 3 and parts[0] == _VERSION else None
