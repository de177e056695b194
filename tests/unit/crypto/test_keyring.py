"""Sealing stored secrets: AES-256-GCM under keys derived from the server secret, with key ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.crypto import refs
from switchboard.crypto.keyring import DecryptError, Keyring, credential_aad, kid_of

OLD = "old-server-secret-0123456789abcdefghijkl"
NEW = "new-server-secret-0123456789abcdefghijkl"


def test_a_sealed_value_opens_with_its_record_and_key_only() -> None:
    ring = Keyring.from_secrets(OLD)
    token = ring.encrypt("sk-upstream-123456789", credential_aad("p", "cred_1"))
    assert token.startswith(f"v1.{ring.current}.") and "sk-upstream" not in token
    assert ring.decrypt(token, credential_aad("p", "cred_1")) == "sk-upstream-123456789"
    # Two seals of the same value differ (fresh nonce), and a moved ciphertext does not open.
    assert ring.encrypt("sk-upstream-123456789", credential_aad("p", "cred_1")) != token
    with pytest.raises(DecryptError):
        ring.decrypt(token, credential_aad("p", "cred_2"))
    with pytest.raises(DecryptError):
        Keyring.from_secrets(NEW).decrypt(token, credential_aad("p", "cred_1"))
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(DecryptError):
        ring.decrypt(tampered, credential_aad("p", "cred_1"))
    with pytest.raises(DecryptError):
        ring.decrypt("not-a-token", "x")


def test_a_new_secret_with_the_old_as_previous_opens_and_reseals() -> None:
    aad = credential_aad("p", "cred_1")
    token = Keyring.from_secrets(OLD).encrypt("sk-value-abcdefghijkl", aad)
    ring = Keyring.from_secrets(NEW, [OLD])
    assert ring.decrypt(token, aad) == "sk-value-abcdefghijkl" and not ring.is_current(token)
    resealed = ring.reencrypt(token, aad)
    assert kid_of(resealed) == ring.current and ring.reencrypt(resealed, aad) == resealed
    assert Keyring.from_secrets(NEW).decrypt(resealed, aad) == "sk-value-abcdefghijkl"


def test_references_and_masks(tmp_path: Path) -> None:
    assert refs.resolve("sk-plain") == "sk-plain"
    assert refs.resolve("env:MY_KEY", {"MY_KEY": "sk-from-env"}) == "sk-from-env"
    with pytest.raises(refs.RefError, match="MY_KEY is not set"):
        refs.resolve("env:MY_KEY", {})
    for blank in ("", " \t "):  # never a credential to send: refused as the file's own values are
        with pytest.raises(refs.BlankRef, match="MY_KEY is empty or only whitespace"):
            refs.resolve("env:MY_KEY", {"MY_KEY": blank})
    (tmp_path / "blank").write_text("  \n")
    with pytest.raises(refs.BlankRef, match="is empty or only whitespace"):
        refs.resolve(f"file:{tmp_path / 'blank'}")
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    assert refs.resolve(f"file:{key_file}") == "sk-from-file"
    with pytest.raises(refs.RefError, match="cannot read"):
        refs.resolve(f"file:{tmp_path / 'absent'}")
    assert refs.check_ref("file:relative") and refs.check_ref("env:1BAD") and not refs.check_ref("env:OK")
    assert refs.mask("sk-upstream-secret-key-ABCDEF") == "sk-…CDEF"
    assert refs.mask("short") == "…" and "secret" not in refs.mask("sk-secret-1234567")
