"""FieldVault: AES-256-GCM of the few fields kept encrypted (common/adapters/vault.py)."""

from __future__ import annotations

import base64

import pytest

from common.adapters.vault import FieldVault, VaultError

KEY_A = b"a" * 32
KEY_B = b"b" * 32


def test_a_value_comes_back_only_in_its_own_context():
    vault = FieldVault({"k1": KEY_A}, "k1")
    stored = vault.encrypt("44051401359", "pesel|patient-1")
    assert stored.startswith("v1:k1:") and "44051401359" not in stored
    assert vault.decrypt(stored, "pesel|patient-1") == "44051401359"
    # Copied into another patient's document, or another field: it does not open.
    with pytest.raises(VaultError):
        vault.decrypt(stored, "pesel|patient-2")
    with pytest.raises(VaultError):
        vault.decrypt(stored, "notification-to|patient-1")
    # The same value twice: two different ciphertexts (a random nonce each).
    assert vault.encrypt("44051401359", "pesel|patient-1") != stored


def test_a_tampered_or_foreign_value_is_refused():
    vault = FieldVault({"k1": KEY_A}, "k1")
    stored = vault.encrypt("+48600100200", "ctx")
    head, body = stored.rsplit(":", 1)
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for bad in (f"{head}:{flipped}", "v1:k9:" + body, "v2:k1:" + body, "not-a-value", ""):
        with pytest.raises(VaultError):
            vault.decrypt(bad, "ctx")


def test_rotation_new_first_key_encrypts_old_keys_still_open():
    old = FieldVault({"k1": KEY_A}, "k1")
    stored = old.encrypt("44051401359", "ctx")
    ring = f"k2:{base64.b64encode(KEY_B).decode()},k1:{base64.b64encode(KEY_A).decode()}"
    rotated = FieldVault.from_ring(ring)
    assert rotated.current == "k2"
    assert rotated.decrypt(stored, "ctx") == "44051401359"
    assert rotated.key_id_of(rotated.encrypt("x", "ctx")) == "k2"
    assert rotated.key_id_of(stored) == "k1"


def test_from_env_needs_a_key_outside_emulator_mode():
    with pytest.raises(RuntimeError, match="FIELD_ENCRYPTION_KEY"):
        FieldVault.from_env({"FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080"})
    local = FieldVault.from_env({"LOCAL_STACK": "1", "FIRESTORE_EMULATOR_HOST": "x:1"})
    assert local.current == "local"
    key = base64.b64encode(KEY_A).decode()
    assert FieldVault.from_env({"FIELD_ENCRYPTION_KEY": f"prod:{key}"}).current == "prod"


@pytest.mark.parametrize(
    "ring", ["nokey", "k1:not base64!", f"k1:{base64.b64encode(b'short').decode()}", "bad id!:AA=="]
)
def test_a_malformed_key_ring_refuses_to_start(ring: str):
    with pytest.raises(RuntimeError, match="FIELD_ENCRYPTION_KEY"):
        FieldVault.from_ring(ring)
