"""An unknown user costs what a known one does, also after the hashing settings change.

Measured by the Argon2id parameters each sign-in verifies against, never by wall time: the dummy hash an unknown
user is checked against has the configured settings, and a user's hash made with older settings is re-hashed to
them at the next successful sign-in and written back to the users file.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import argon2
import pytest

from mfa_gateway.adapters.users_file import UsersFile
from mfa_gateway.core.errors import InvalidCredentials
from mfa_gateway.core.hashing import Argon2Params, Hasher
from mfa_gateway.core.users import User
from mfa_gateway.runtime import Runtime
from mfa_gateway.runtime.hashing import HashingPool
from tests.helpers.gateway import FAST_HASHING, FakeClock, make_runtime, make_settings

PASSWORD = "an old password 1"
OLD = Argon2Params(time_cost=2, memory_kib=8192, parallelism=2)  # what the settings were when alice was added


def _params(hashed: str) -> tuple[int, int, int]:
    found = argon2.extract_parameters(hashed)
    return found.time_cost, found.memory_cost, found.parallelism


def _configured(runtime: Runtime) -> tuple[int, int, int]:
    hashing = runtime.settings.hashing
    return hashing.time_cost, hashing.memory_kib, hashing.parallelism


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    """A gateway runtime (FAST_HASHING settings) whose users file holds alice with a hash made under OLD."""
    settings = make_settings(tmp_path)
    assert settings.identity.users_file is not None
    UsersFile(settings.identity.users_file).put(User("alice", Hasher(OLD).hash(PASSWORD)))
    runtime, _ = make_runtime(settings, FakeClock())
    yield runtime
    await runtime.close()


def _stored_hash(runtime: Runtime) -> str:
    assert runtime.settings.identity.users_file is not None
    user = UsersFile(runtime.settings.identity.users_file).get("alice")
    assert user is not None
    return user.password_hash


@pytest.mark.parametrize("params", [Argon2Params(1, 8192, 1), Argon2Params(2, 16384, 2)])
def test_the_dummy_hash_has_the_configured_parameters(params: Argon2Params) -> None:
    """The hash an unknown user is verified against is made with the configured settings, whatever they are (not
    a hash fixed in the code), so it follows a change of settings."""
    pool = HashingPool(params, 1)
    try:
        assert _params(pool.dummy_hash) == (params.time_cost, params.memory_kib, params.parallelism)
    finally:
        pool.close()


async def test_the_runtime_verifies_unknown_users_against_the_configured_cost(runtime: Runtime) -> None:
    """The gateway's own pool (built from `hashing:`) holds a dummy hash with exactly the configured parameters."""
    assert _params(runtime.hashing.dummy_hash) == _configured(runtime)
    assert _configured(runtime) == (FAST_HASHING["time_cost"], FAST_HASHING["memory_kib"], FAST_HASHING["parallelism"])


async def test_an_old_cost_hash_is_rehashed_to_the_current_settings_at_sign_in(runtime: Runtime) -> None:
    """After the settings changed, alice's next successful sign-in stores her password under the current
    parameters: her sign-ins then cost what an unknown user's do. A wrong password changes nothing."""
    assert runtime.login is not None
    assert _params(_stored_hash(runtime)) == (2, 8192, 2)
    with pytest.raises(InvalidCredentials):
        await runtime.login.check_password("alice", "not her password", None)
    assert _params(_stored_hash(runtime)) == (2, 8192, 2)
    await runtime.login.check_password("alice", PASSWORD, None)
    assert _params(_stored_hash(runtime)) == _configured(runtime) == _params(runtime.hashing.dummy_hash)
    await runtime.login.check_password("Alice", PASSWORD, None)  # the new hash verifies
    assert runtime.settings.identity.users_file is not None
    assert runtime.settings.identity.users_file.stat().st_mode & 0o777 == 0o600


def test_a_rehash_never_overwrites_a_password_set_meanwhile(tmp_path: Path) -> None:
    """A re-hash is compare-and-set: if `users add` gave alice a new password after her sign-in was checked, the
    re-hash of the old password is dropped, not written over the new one."""
    users = UsersFile(tmp_path / "users.yaml")
    hasher = Hasher(OLD)
    first, second = hasher.hash(PASSWORD), hasher.hash("a new password 22")
    users.put(User("alice", first))
    users.put(User("alice", second))
    assert users.replace_hash("alice", first, Hasher(Argon2Params(1, 8192, 1)).hash(PASSWORD)) is False
    stored = UsersFile(tmp_path / "users.yaml").get("alice")
    assert stored is not None and stored.password_hash == second


async def test_an_unwritable_users_file_keeps_sign_in_working_and_warns_once(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """When the users file cannot be written (here its lock file cannot be opened, as on a read-only mount), the
    sign-in still succeeds, the hash stays, and one warning names the key; later sign-ins do not retry."""
    assert runtime.login is not None and runtime.settings.identity.users_file is not None
    users_file = runtime.settings.identity.users_file
    lock = users_file.parent / f".{users_file.name}.lock"
    lock.unlink()
    lock.mkdir()  # what cannot be opened for writing, as for root on a read-only mount
    with caplog.at_level(logging.WARNING, logger="mfa_gateway"):
        await runtime.login.check_password("alice", PASSWORD, None)
        await runtime.login.check_password("alice", PASSWORD, None)
    assert _params(_stored_hash(runtime)) == (2, 8192, 2)
    warnings = [r.getMessage() for r in caplog.records if "identity.users_file" in r.getMessage()]
    assert len(warnings) == 1, warnings
