"""Redis behind Sentinel: the gateway finds the master through real redis-server sentinels and uses it as usual."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from mfa_gateway.adapters.state.redis import RedisSharedState
from mfa_gateway.core.model import Revocation, RevocationKind
from tests.servers import RedisServer, free_port, require_binary, running_redis, wait_for_port

T0 = 1_800_000_000.0


PASSWORD = "sentinel-master-password-0123"


@pytest.fixture(params=[None, PASSWORD], ids=["no password", "password"])
def sentinel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[RedisServer, int, str | None]]:
    """A master and one sentinel monitoring it (quorum 1), both redis-server processes on free loopback ports; the
    master requires a password in the second variant."""
    password: str | None = request.param
    with running_redis(tmp_path) as master:
        if password:
            with redis.Redis(host="127.0.0.1", port=master.port) as admin:
                admin.config_set("requirepass", password)
        port = free_port()
        conf = tmp_path / "sentinel.conf"
        auth = f"sentinel auth-pass mymaster {password}\n" if password else ""
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nsentinel monitor mymaster 127.0.0.1 {master.port} 1\n" + auth
        )
        binary = require_binary("redis-server", "redis-server")
        process = subprocess.Popen(
            [binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for_port(port, proc=process)
            yield master, port, password
        finally:
            process.terminate()
            process.wait(timeout=10)


async def test_state_through_sentinel_finds_the_master_and_works(
    sentinel: tuple[RedisServer, int, str | None],
) -> None:
    """With state.sentinels the master's address comes from the sentinel: claims, challenges and the revocation
    feed work against it (with the password from the secret, when the master requires one), and the keys land on
    that master."""
    master, sentinel_port, password = sentinel
    state = RedisSharedState(
        "redis://ignored:1/0",
        password=password,
        prefix="sent:",
        sentinels=[("127.0.0.1", sentinel_port)],
        sentinel_master="mymaster",
    )
    try:
        await state.ping()
        assert await state.claim_once("k", T0, 60.0)
        assert not await state.claim_once("k", T0 + 1, 60.0)
        await state.put_challenge("c1", b"payload", T0, 60.0)
        assert await state.take_challenge("c1", T0 + 1) == b"payload"
        feed = state.revocation_feed()
        listening = asyncio.ensure_future(anext(feed))
        await asyncio.sleep(0.2)  # the SUBSCRIBE round trip; bounded, not waiting on the code under test
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
