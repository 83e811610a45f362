"""Vault Transit mode (``secrets.totp_cipher: transit:<mount>/<key>``) through the gateway's services, on OpenBao.

TOTP secrets are encrypted by a Transit key that never leaves Vault; enrollments made under the local keyring before
the switch keep working and move into Transit; after a key rotation in Vault, ``rekey`` rewraps every row.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from mfa_gateway import admin
from mfa_gateway.adapters.ciphers.transit import is_transit_ciphertext
from mfa_gateway.runtime import Runtime, build_runtime
from mfa_gateway.service.mfa import Caller
from tests.helpers.gateway import FakeClock, current_code, make_settings
from tests.integration.secrets.conftest import AppRole, Bao, vault_section

ALICE, OLD = Caller("alice", "192.0.2.10"), Caller("olduser", "192.0.2.11")


async def _enroll(runtime: Runtime, caller: Caller, clock: FakeClock) -> str:
    start = await runtime.mfa.start_enrollment(caller)
    await runtime.mfa.activate(caller, current_code(start.secret, clock))
    return start.secret


async def _verifies(runtime: Runtime, caller: Caller, secret: str, clock: FakeClock) -> bool:
    clock.advance(30)
    return (await runtime.mfa.verify(caller, current_code(secret, clock))).method == "otp"


async def _switched_to_transit(
    bao: Bao, approle: AppRole, tmp_path: Path, clock: FakeClock
) -> tuple[str, str, Runtime]:
    """A new Transit key, an enrollment (OLD) made under the keyring alone, then a runtime switched to Transit: the
    key's name, OLD's TOTP secret, the runtime (not started)."""
    key = f"mfa-totp-{uuid.uuid4().hex[:8]}"
    bao.root.secrets.transit.create_key(name=key, mount_point="transit")
    keyring_only = build_runtime(make_settings(tmp_path), clock=clock)
    await keyring_only.store.migrate()
    old_secret = await _enroll(keyring_only, OLD, clock)
    await keyring_only.close()
    vault: dict[str, Any] = vault_section(bao, approle)
    settings = make_settings(tmp_path, {"secrets": {"totp_cipher": f"transit:transit/{key}", "vault": vault}})
    return key, old_secret, build_runtime(settings, clock=clock)


async def test_transit_encrypts_totp_secrets_migrates_keyring_rows_and_rekey_rewraps(
    bao: Bao, approle: AppRole, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a Transit key configured: new enrollments are Transit ciphertext (no plaintext in the database), an
    enrollment from before the switch still verifies and moves into Transit, and after the key is rotated in Vault
    `rekey` rewraps every row to the new version while everyone keeps verifying."""
    clock = FakeClock()
    key, old_secret, runtime = await _switched_to_transit(bao, approle, tmp_path, clock)
    try:
        await runtime.cipher.start()
        assert runtime.cipher.primary == f"transit:{key}:v1"
        secret = await _enroll(runtime, ALICE, clock)
        rows = {e.user_id: e for e in await runtime.store.list_enrollments(None, 10)}
        assert is_transit_ciphertext(rows["alice"].secret_ciphertext) and rows["alice"].key_id == f"transit:{key}:v1"
        assert secret.encode() not in rows["alice"].secret_ciphertext
        assert not is_transit_ciphertext(rows["olduser"].secret_ciphertext)

        assert await _verifies(runtime, ALICE, secret, clock)
        assert await _verifies(runtime, OLD, old_secret, clock)  # the keyring still opens it; moved into Transit
        rows = {e.user_id: e for e in await runtime.store.list_enrollments(None, 10)}
        assert rows["olduser"].key_id == f"transit:{key}:v1" and is_transit_ciphertext(
            rows["olduser"].secret_ciphertext
        )

        bao.root.secrets.transit.rotate_key(name=key, mount_point="transit")
        assert await admin.rekey(runtime.settings) == 0
        assert f"re-encrypted 2 from key transit:{key}:v1 to transit:{key}:v2" in capsys.readouterr().out
        assert {e.key_id for e in await runtime.store.list_enrollments(None, 10)} == {f"transit:{key}:v2"}
        assert await _verifies(runtime, ALICE, secret, clock)
        assert await _verifies(runtime, OLD, old_secret, clock)
        assert await admin.rekey(runtime.settings) == 0
        assert f"every enrollment is already under key transit:{key}:v2" in capsys.readouterr().out
    finally:
        await runtime.close()


async def test_transit_unreachable_is_a_503_not_a_wrong_code(bao: Bao, approle: AppRole, tmp_path: Path) -> None:
    """Vault sealed while codes are checked: the check fails as unavailable (503), never as an invalid code; once
    Vault is back the same user verifies."""
    from mfa_gateway.core.errors import DependencyUnavailable

    key = f"mfa-totp-{uuid.uuid4().hex[:8]}"
    bao.root.secrets.transit.create_key(name=key, mount_point="transit")
    vault: dict[str, Any] = vault_section(bao, approle)
    clock = FakeClock()
    settings = make_settings(tmp_path, {"secrets": {"totp_cipher": f"transit:transit/{key}", "vault": vault}})
    runtime = build_runtime(settings, clock=clock)
    await runtime.store.migrate()
    try:
        secret = await _enroll(runtime, ALICE, clock)
        bao.server.seal()
        try:
            clock.advance(30)
            with pytest.raises(DependencyUnavailable):
                await runtime.mfa.verify(ALICE, current_code(secret, clock))
        finally:
            bao.server.unseal()
        assert await _verifies(runtime, ALICE, secret, clock)
    finally:
        await runtime.close()


async def test_a_failed_start_stops_only_the_lazy_rekey_until_the_key_version_is_learnt(
    bao: Bao, approle: AppRole, tmp_path: Path
) -> None:
    """Vault unreachable when the cipher starts (what the start-up warning reports): keyring rows still verify
    meanwhile, Transit works once Vault is back, and the only loss is the lazy move of old rows into Transit, which
    resumes as soon as an encryption learns the key's version."""
    from mfa_gateway.core.errors import DependencyUnavailable

    clock = FakeClock()
    key, old_secret, runtime = await _switched_to_transit(bao, approle, tmp_path, clock)

    async def olduser_key() -> str:
        rows = {e.user_id: e for e in await runtime.store.list_enrollments(None, 10)}
        return rows["olduser"].key_id

    try:
        keyring_kid = await olduser_key()
        assert runtime.secrets.vault is not None
        await asyncio.to_thread(runtime.secrets.vault.maintain)  # logged in: the seal, not a login backoff, fails
        bao.server.seal()
        try:
            with pytest.raises(DependencyUnavailable):
                await runtime.cipher.start()
            assert await _verifies(runtime, OLD, old_secret, clock)  # the keyring row needs no Vault
        finally:
            bao.server.unseal()
        assert await _verifies(runtime, OLD, old_secret, clock)
        assert await olduser_key() == keyring_kid  # no lazy rekey: the key's version is still unknown
        secret = await _enroll(runtime, ALICE, clock)  # a Transit encryption learns it
        assert await _verifies(runtime, ALICE, secret, clock)
        assert await _verifies(runtime, OLD, old_secret, clock)
        assert await olduser_key() == f"transit:{key}:v1"  # the lazy rekey is back
    finally:
        await runtime.close()


def test_a_transit_key_without_a_vault_server_is_a_config_error(tmp_path: Path) -> None:
    """totp_cipher without secrets.vault is refused when the config is read, never served by the keyring instead
    (``runtime.totp_cipher`` relies on it: Transit configured always has a Vault session)."""
    from mfa_gateway.config import ConfigError

    with pytest.raises(ConfigError, match=r"transit: need secrets\.vault"):
        make_settings(tmp_path, {"secrets": {"totp_cipher": "transit:transit/mfa-totp"}})
