"""Redis password rotation through AWS Secrets Manager (moto) against a real redis-server, while requests flow.

Both of AWS's rotation strategies, as its rotation functions perform them:

* **single user**: AWSPENDING gets a new password, Redis accepts both (an ACL user holds several), AWSCURRENT moves
  to the new version, Redis drops the old password;
* **alternating users**: the secret is ``{"username", "password"}``; the other user gets a fresh password,
  AWSCURRENT moves to it, and the user the gateway was using is disabled.

Then every gateway connection is cut, so each must log in again before the gateway's cache has noticed the change.
No request may fail. And every password the gateway reads, rotated or previous, is redacted from logs at once.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from mfa_gateway import logs
from mfa_gateway.runtime import build_runtime, open_sources
from tests.helpers.gateway import FakeClock, make_settings
from tests.helpers.leaks import LeakGuard
from tests.helpers.servers import running_redis
from tests.integration.secrets.conftest import completed, steady_flow

CALLS = 30
"""Pings the flow completes in each phase of the rotation."""

ALL = ("~*", "&*", "+@all")


@pytest.mark.parametrize("strategy", ["single user", "alternating users"])
async def test_a_redis_password_rotated_while_requests_flow_drops_none(
    strategy: str, tmp_path: Path, moto_url: str, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login rotated through AWSPENDING/AWSCURRENT and withdrawn from Redis before the gateway's cache noticed:
    the refused login re-reads the secret and retries, so every request of a steady flow succeeds."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    old, new, admin_password = (secrets.token_urlsafe(16) for _ in range(3))
    alternating = strategy == "alternating users"
    name = f"mfa/redis-{secrets.token_hex(4)}"
    first_value = json.dumps({"username": "mfa_a", "password": old}) if alternating else old
    first = sm.create_secret(Name=name, SecretString=first_value)["VersionId"]
    with running_redis(tmp_path) as server:
        setup = redis.asyncio.Redis(host="127.0.0.1", port=server.port)
        for user in ("mfa_a", "mfa_b") if alternating else ("gateway",):
            await setup.execute_command("ACL", "SETUSER", user, "on", f">{old}", *ALL)
        await setup.execute_command("ACL", "SETUSER", "default", f">{admin_password}")
        await setup.aclose()
        admin = redis.asyncio.Redis(host="127.0.0.1", port=server.port, password=admin_password)
        user_in_url = "" if alternating else "gateway@"  # alternating: the user name comes from the secret
        settings = make_settings(
            tmp_path,
            {
                "state": {
                    "backend": "redis",
                    "url": f"redis://{user_in_url}127.0.0.1:{server.port}/0",
                    "password": f"awssm:{name}",
                },
                "secrets": {"aws": {"region": "us-east-1", "endpoint_url": moto_url, "max_attempts": 1}},
            },
        )
        runtime = build_runtime(settings, clock=FakeClock())
        try:
            async with steady_flow(runtime.state.ping, clients=4, pause=0.002) as outcomes:
                await completed(outcomes, CALLS, "pings before the rotation")
                if alternating:  # the other user gets a fresh password, then becomes current
                    await admin.execute_command("ACL", "SETUSER", "mfa_b", "resetpass", f">{new}")
                    pending_value = json.dumps({"username": "mfa_b", "password": new})
                else:  # the same user accepts both passwords during the change
                    await admin.execute_command("ACL", "SETUSER", "gateway", f">{new}")
                    pending_value = new
                pending = sm.put_secret_value(SecretId=name, SecretString=pending_value, VersionStages=["AWSPENDING"])
                await completed(outcomes, len(outcomes) + CALLS, "pings with the new password pending")
                sm.update_secret_version_stage(
                    SecretId=name,
                    VersionStage="AWSCURRENT",
                    MoveToVersionId=pending["VersionId"],
                    RemoveFromVersionId=first,
                )
                withdrawn = "mfa_a" if alternating else "gateway"
                await admin.execute_command("ACL", "SETUSER", withdrawn, "off" if alternating else f"<{old}")
                killed = await admin.execute_command("CLIENT", "KILL", "USER", withdrawn)
                assert killed >= 1  # the gateway's connections must log in again, with a login it has not cached
                await completed(outcomes, len(outcomes) + CALLS, "pings after the old login was withdrawn")
        finally:
            await runtime.close()
            await admin.aclose()
    assert len(outcomes) >= 3 * CALLS and all(outcomes), f"{outcomes.count(False)} of {len(outcomes)} requests failed"
    assert runtime.secrets.value("state.password").reveal() == pending_value  # the refused login re-read it


@pytest.mark.parametrize(
    ("key", "section"),
    [
        ("state.password", {"state": {"backend": "redis", "url": "redis://127.0.0.1:6379/0"}}),
        ("store.password", {"store": {"url": "postgresql+asyncpg://mfa@127.0.0.1:5432/mfa"}}),
    ],
)
@pytest.mark.parametrize("shape", ["plain", "username and password"])
async def test_a_rotated_password_is_redacted_from_the_moment_it_is_read(
    key: str,
    section: dict[str, dict[str, str]],
    shape: str,
    tmp_path: Path,
    moto_url: str,
    sm: Any,
    leaks: LeakGuard,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Redis or database password is redacted from every log line as soon as the secret cache reads it, before
    any connection logs in with it: the current value and AWSPREVIOUS (still a valid password, never current in this
    process) at start-up, then the new value of a rotation."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    first, second, third = (leaks.new("pw") for _ in range(3))

    def value(password: str) -> str:
        return json.dumps({"username": "mfa", "password": password}) if shape != "plain" else password

    name = f"mfa/login-{secrets.token_hex(4)}"
    sm.create_secret(Name=name, SecretString=value(first))
    sm.put_secret_value(SecretId=name, SecretString=value(second))  # AWSCURRENT: second, AWSPREVIOUS: first
    part, field = key.split(".")
    settings = make_settings(
        tmp_path,
        {
            part: {**section[part], field: f"awssm:{name}"},
            "secrets": {"aws": {"region": "us-east-1", "endpoint_url": moto_url, "max_attempts": 1}},
        },
    )
    sources = open_sources(settings)
    try:
        sources.load_now()
        assert [v.reveal() for v in sources.alternatives(key)] == [value(second), value(first)]
        assert logs.redact(f"login with {first} or {second} refused") == "login with [redacted] or [redacted] refused"

        sm.put_secret_value(SecretId=name, SecretString=value(third))
        await sources.cache.refresh(sources.refs[key])
        assert sources.value(key).reveal() == value(third)
        assert logs.redact(f"login with {third} refused") == "login with [redacted] refused"
    finally:
        sources.close()
