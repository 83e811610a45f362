"""The Transit cipher against a real OpenBao: keyring-shaped encrypt/decrypt, binding, rotation and rewrap."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from mfa_gateway.adapters.ciphers.transit import TransitCipher, is_transit_ciphertext
from mfa_gateway.core.keyring import Keyring, KeyringError, new_keyring_document
from mfa_gateway.ports import TransientSecretError
from mfa_gateway.secrets.refs import parse_transit
from tests.helpers.gateway import FakeClock
from tests.integration.secrets.conftest import AppRole, Bao, vault_session


@pytest.fixture
def key_name(bao: Bao) -> str:
    name = f"mfa-totp-{uuid.uuid4().hex[:8]}"
    bao.root.secrets.transit.create_key(name)
    return name


@pytest.fixture
def cipher(bao: Bao, approle: AppRole, clock: FakeClock, key_name: str) -> Iterator[TransitCipher]:
    """A cipher logged in through AppRole with the documented policy (encrypt, decrypt, rewrap, read key)."""
    session = vault_session(bao, approle.auth(), clock)
    yield TransitCipher(session, parse_transit(f"transit:transit/{key_name}"))
    session.close()


def test_round_trip_with_the_key_version_as_kid(cipher: TransitCipher, key_name: str) -> None:
    """encrypt/decrypt have the keyring's shape; the kid names the Transit key version."""
    assert cipher.primary == f"transit:{key_name}:v1"
    ciphertext = cipher.encrypt(b"JBSWY3DPEHPK3PXP", purpose="totp-secret", context="alice")
    assert is_transit_ciphertext(ciphertext) and b"JBSWY3DP" not in ciphertext
    opened = cipher.decrypt(ciphertext, purpose="totp-secret", context="alice")
    assert (opened.plaintext, opened.kid) == (b"JBSWY3DPEHPK3PXP", f"transit:{key_name}:v1")
    assert cipher.key_id_of(ciphertext) == f"transit:{key_name}:v1"


def test_ciphertext_is_bound_to_purpose_and_context(cipher: TransitCipher) -> None:
    """Moved to another user's row, or used for another purpose, a ciphertext is refused like a keyring's."""
    ciphertext = cipher.encrypt(b"secret", purpose="totp-secret", context="alice")
    for purpose, context in (("totp-secret", "bob"), ("session", "alice"), ("totp-secre", "talice")):
        with pytest.raises(KeyringError, match="failed authentication"):
            cipher.decrypt(ciphertext, purpose=purpose, context=context)


def test_rotation_rewrap_and_minimum_decryption_version(bao: Bao, cipher: TransitCipher, key_name: str) -> None:
    """After a rotation old ciphertext still opens under its old kid; rewrap moves it to the new version without the
    plaintext; once min_decryption_version passes it, the old ciphertext is refused."""
    old = cipher.encrypt(b"s1", purpose="totp-secret", context="alice")
    bao.root.secrets.transit.rotate_key(key_name)
    assert cipher.primary == f"transit:{key_name}:v1"  # known from the last encryption until refreshed
    assert cipher.refresh() == 2 and cipher.primary == f"transit:{key_name}:v2"
    assert cipher.decrypt(old, purpose="totp-secret", context="alice").kid == f"transit:{key_name}:v1"

    rewrapped = cipher.rewrap(old)
    assert cipher.key_id_of(rewrapped) == f"transit:{key_name}:v2"
    assert cipher.decrypt(rewrapped, purpose="totp-secret", context="alice").plaintext == b"s1"

    bao.root.secrets.transit.update_key_configuration(key_name, min_decryption_version=2)
    with pytest.raises(KeyringError, match="min_decryption_version"):
        cipher.decrypt(old, purpose="totp-secret", context="alice")
    assert cipher.decrypt(rewrapped, purpose="totp-secret", context="alice").plaintext == b"s1"


def test_transit_and_keyring_ciphertexts_are_told_apart(cipher: TransitCipher) -> None:
    """The first byte says which cipher made a ciphertext; each refuses the other's instead of misreading it."""
    keyring = Keyring.from_json(new_keyring_document("k1"))
    local = keyring.encrypt(b"s", purpose="totp-secret", context="alice")
    remote = cipher.encrypt(b"s", purpose="totp-secret", context="alice")
    assert not is_transit_ciphertext(local) and is_transit_ciphertext(remote)
    with pytest.raises(KeyringError, match="not made by a Transit cipher"):
        cipher.decrypt(local, purpose="totp-secret", context="alice")
    with pytest.raises(KeyringError, match="unknown ciphertext format"):
        keyring.decrypt(remote, purpose="totp-secret", context="alice")


def test_a_sealed_vault_is_a_transient_failure(bao: Bao, cipher: TransitCipher) -> None:
    """While Vault is sealed, encryption fails as an outage (retry later), not as a bad ciphertext."""
    ciphertext = cipher.encrypt(b"s", purpose="totp-secret", context="alice")
    bao.server.seal()
    try:
        with pytest.raises(TransientSecretError, match="sealed"):
            cipher.decrypt(ciphertext, purpose="totp-secret", context="alice")
    finally:
        bao.server.unseal()
