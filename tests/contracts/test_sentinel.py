"""Redis behind Sentinel: the gateway finds the master through real redis-server sentinels and uses it as usual."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import pytest
import redis
import redis.asyncio

from mfa_gateway.adapters.state.redis import RedisSharedState
from mfa_gateway.core.model import Revocation, RevocationKind
from mfa_gateway.ports import Credential, PasswordSource
from tests.helpers.gateway import FakeClock, make_runtime, make_settings
from tests.helpers.servers import RedisServer, on_a_free_port, require_binary, running_redis, start_listening
from tests.helpers.support import redis_subscribers, serves, unavailable, until_subscribed

pytestmark = pytest.mark.redis  # every test here starts redis-server (and sentinels)

T0 = 1_800_000_000.0


PASSWORD = "sentinel-master-password-0123"
SENTINEL_PASSWORD = "sentinel-own-password-4567"


@dataclass(frozen=True)
class SentinelSetup:
    master: RedisServer
    port: int  # the sentinel's
    password: str | None  # the master's
    sentinel_password: str | None  # the sentinel's own (requirepass)


@contextlib.contextmanager
def running_sentinel(tmp_path: Path, password: str | None, own: str | None) -> Iterator[SentinelSetup]:
    """A master (requiring ``password`` when given) and one sentinel monitoring it (quorum 1), both redis-server
    processes on free loopback ports; the sentinel requires ``own`` when given."""
    binary = require_binary("redis-server", "redis-server")

    def start(master: RedisServer, port: int) -> Popen[bytes]:
        conf, log = tmp_path / f"sentinel-{port}.conf", tmp_path / f"sentinel-{port}.log"
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f"dir {tmp_path}",
            f"sentinel monitor mymaster 127.0.0.1 {master.port} 1",
            *([f"sentinel auth-pass mymaster {password}"] if password else []),
            *([f"requirepass {own}"] if own else []),
        ]
        conf.write_text("\n".join(lines) + "\n")
        return start_listening([binary, str(conf), "--sentinel"], [port], log)

    with running_redis(tmp_path) as master:
        if password:
            with redis.Redis(host="127.0.0.1", port=master.port) as admin:
                admin.config_set("requirepass", password)
        port, process = on_a_free_port(lambda port: (port, start(master, port)))
        try:
            yield SentinelSetup(master, port, password, own)
        finally:
            process.terminate()
            process.wait(timeout=10)


def through_sentinel(
    setup: SentinelSetup, sentinel_password: str | PasswordSource | None, *, password: str | None = None
) -> RedisSharedState:
    """Shared state whose master is found through the setup's sentinel."""
    return RedisSharedState(
        "redis://ignored:1/0",
        password=password,
        prefix="sent:",
        sentinels=[("127.0.0.1", setup.port)],
        sentinel_master="mymaster",
        sentinel_password=sentinel_password,
    )


@pytest.fixture(
    params=[(None, None), (PASSWORD, None), (PASSWORD, SENTINEL_PASSWORD)],
    ids=["no password", "master password", "master and sentinel passwords"],
)
def sentinel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SentinelSetup]:
    """The master requires a password in the second variant, and the sentinel one of its own in the third."""
    with running_sentinel(tmp_path, *request.param) as setup:
        yield setup


async def test_state_through_sentinel_finds_the_master_and_works(
    sentinel: SentinelSetup,
) -> None:
    """With state.sentinels the master's address comes from the sentinel: claims, challenges and the revocation
    feed work against it (with the passwords from the secrets, when the master or the sentinel requires one), and
    the keys land on that master."""
    master, password = sentinel.master, sentinel.password
    state = through_sentinel(sentinel, sentinel.sentinel_password, password=password)
    try:
        await serves(state, T0)
        feed = state.revocation_feed()
        listening = asyncio.ensure_future(anext(feed))
        async with redis.asyncio.Redis(host="127.0.0.1", port=master.port, password=password) as admin:
            on_master = redis_subscribers(admin, "sent:rev")
            await until_subscribed(on_master, 1, "the revocation feed to subscribe on the master")
        revocation = Revocation(RevocationKind.SESSION, "sid-1", T0, T0 + 60)
        await state.revoke(revocation)
        assert await asyncio.wait_for(listening, 5) == revocation
        listening.cancel()
    finally:
        await state.close()
    direct = RedisSharedState(master.url, password=password, prefix="sent:")
    try:
        assert not await direct.claim_once("k", T0 + 2, 60.0)  # the claim made through the sentinel is on it
    finally:
        await direct.close()


class StaleUntilRefreshed(PasswordSource):
    """A secret cache that has not noticed a rotation yet: the old password until ``refresh()`` is called."""

    def __init__(self, cached: str, backend: str) -> None:
        self.cached, self.backend, self.refreshes = cached, backend, 0

    def candidates(self) -> Sequence[Credential]:
        return [Credential(None, self.cached)]

    async def refresh(self) -> None:
        self.refreshes += 1
        self.cached = self.backend


@pytest.fixture
def guarded_sentinel(tmp_path: Path) -> Iterator[SentinelSetup]:
    """A master without a password and a sentinel that requires SENTINEL_PASSWORD."""
    with running_sentinel(tmp_path, None, SENTINEL_PASSWORD) as setup:
        yield setup


@pytest.mark.parametrize("given", [None, "not-the-sentinel-password"], ids=["no password", "wrong password"])
async def test_a_sentinel_that_refuses_the_login_fails_closed(
    guarded_sentinel: SentinelSetup, given: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the sentinel's password, or with a wrong one, the master cannot be found: Redis counts as unavailable
    (protected routes answer 503), and no password appears in the error or the log."""
    refused = await unavailable(through_sentinel(guarded_sentinel, given))
    shown = str(refused) + repr(refused) + caplog.text
    assert given is None or given not in shown  # the password it was given, refused, is never repeated


async def test_a_rotated_sentinel_password_is_reread_after_one_refusal(guarded_sentinel: SentinelSetup) -> None:
    """The sentinel's password rotated (new one added, old one removed) before the secret cache noticed: the first
    login is refused, the secret is re-read once and the same call succeeds with the new password."""
    with redis.Redis(host="127.0.0.1", port=guarded_sentinel.port, password=SENTINEL_PASSWORD) as admin:
        admin.execute_command("ACL", "SETUSER", "default", "on", ">rotated-sentinel-password", f"<{SENTINEL_PASSWORD}")
    source = StaleUntilRefreshed(SENTINEL_PASSWORD, "rotated-sentinel-password")
    state = through_sentinel(guarded_sentinel, source)
    try:
        await state.ping()
        assert await state.claim_once("rotated", T0, 60.0)
    finally:
        await state.close()
    assert source.refreshes == 1


async def test_the_config_reads_the_sentinel_password_from_its_secret_reference(
    guarded_sentinel: SentinelSetup, tmp_path: Path
) -> None:
    """``state.sentinel_password: file:…`` reaches the sentinel clients: a gateway built from that config finds the
    master behind a sentinel that requires a password."""
    secret = tmp_path / "sentinel-password"
    secret.write_text(SENTINEL_PASSWORD)
    state_config = {
        "backend": "redis",
        "url": "redis://ignored:1/0",
        "key_prefix": "cfg:",
        "sentinels": [f"127.0.0.1:{guarded_sentinel.port}"],
        "sentinel_master": "mymaster",
        "sentinel_password": f"file:{secret}",
    }
    runtime, _ = make_runtime(make_settings(tmp_path, {"state": state_config}), FakeClock())
    try:
        await runtime.state.ping()
        assert await runtime.state.claim_once("configured", T0, 60.0)
    finally:
        await runtime.close()
