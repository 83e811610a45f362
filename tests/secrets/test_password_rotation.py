"""Redis password rotation through AWS Secrets Manager (moto) against a real redis-server, while requests flow.

The rotation is the one AWS's rotation functions perform, with Redis ACLs holding two passwords during the change:
AWSPENDING gets the new password, Redis accepts both, AWSCURRENT moves to the new version (the old one becomes
AWSPREVIOUS), Redis drops the old password, and every gateway connection is cut so it must log in again before
the cache has noticed the change. No request may fail.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from mfa_gateway.runtime import build_runtime
from tests.gateway import FakeClock, make_settings
from tests.servers import running_redis


async def test_a_redis_password_rotated_while_requests_flow_drops_none(
    tmp_path: Path, moto_url: str, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password rotated through AWSPENDING/AWSCURRENT and removed from Redis before the gateway's cache noticed:
    the refused login re-reads the secret and retries, so every request of a steady flow succeeds."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    old, new, admin_password = (secrets.token_urlsafe(16) for _ in range(3))
    name = f"mfa/redis-{secrets.token_hex(4)}"
    first = sm.create_secret(Name=name, SecretString=old)["VersionId"]
    with running_redis(tmp_path) as server:
        setup = redis.asyncio.Redis(host="127.0.0.1", port=server.port)
        await setup.execute_command("ACL", "SETUSER", "gateway", "on", f">{old}", "~*", "&*", "+@all")
        await setup.execute_command("ACL", "SETUSER", "default", f">{admin_password}")
        await setup.aclose()
        admin = redis.asyncio.Redis(host="127.0.0.1", port=server.port, password=admin_password)
        settings = make_settings(
            tmp_path,
            {
                "state": {
                    "backend": "redis",
                    "url": f"redis://gateway@127.0.0.1:{server.port}/0",
                    "password": f"awssm:{name}",
                },
                "secrets": {"aws": {"region": "us-east-1", "endpoint_url": moto_url, "max_attempts": 1}},
            },
        )
        runtime = build_runtime(settings, clock=FakeClock())
        outcomes: list[bool] = []
        stop = asyncio.Event()

        async def flow() -> None:
            while not stop.is_set():
                try:
                    await runtime.state.ping()
                    outcomes.append(True)
                except Exception:  # noqa: BLE001 - any failure is what this test counts
                    outcomes.append(False)
                await asyncio.sleep(0.002)

        clients = [asyncio.create_task(flow()) for _ in range(4)]
        try:
            await asyncio.sleep(0.2)
            pending = sm.put_secret_value(SecretId=name, SecretString=new, VersionStages=["AWSPENDING"])["VersionId"]
            await admin.execute_command("ACL", "SETUSER", "gateway", f">{new}")  # both passwords valid
            await asyncio.sleep(0.1)
            sm.update_secret_version_stage(
                SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=pending, RemoveFromVersionId=first
            )
            await admin.execute_command("ACL", "SETUSER", "gateway", f"<{old}")  # the old password is gone
            killed = await admin.execute_command("CLIENT", "KILL", "USER", "gateway")
            assert killed >= 1  # the gateway's connections must log in again, with a password it has not cached
            await asyncio.sleep(0.3)
        finally:
            stop.set()
            await asyncio.gather(*clients)
            await runtime.close()
            await admin.aclose()
    assert len(outcomes) > 50 and all(outcomes), f"{outcomes.count(False)} of {len(outcomes)} requests failed"
    assert runtime.secrets.value("state.password").reveal() == new  # the refused login re-read the secret
