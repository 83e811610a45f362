"""The PostgreSQL password rotated through AWS Secrets Manager (moto) while the store is in use, on a real server.

A dedicated cluster (the Debian server binaries) requires scram-sha-256 passwords for the gateway's role. The
password changes in PostgreSQL at once (a role has one password), AWSCURRENT moves to it, and the gateway's pool
starts over (between two calls): each new connection then logs in with the password the gateway had cached, is
refused, re-reads the secret and logs in with the new one. No store call may fail, before or after.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from mfa_gateway.runtime import build_runtime
from tests.helpers.gateway import FakeClock, make_settings
from tests.helpers.servers import psql, running_postgres
from tests.integration.secrets.conftest import completed, steady_flow

ROLE = "mfa_rotating"
CALLS = 30
"""Store calls the flow completes in each phase."""


async def test_a_database_password_rotated_while_the_store_is_used_drops_no_call(
    tmp_path: Path, moto_url: str, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused database login re-reads the secret and retries with the new password: every store call succeeds."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    old, new = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    name = f"mfa/db-{secrets.token_hex(4)}"
    first = sm.create_secret(Name=name, SecretString=old)["VersionId"]
    with tempfile.TemporaryDirectory(prefix="mfa-pg-rot-") as workdir, running_postgres(Path(workdir)) as pg:
        hba = pg.datadir / "pg_hba.conf"
        hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        psql(pg, "SELECT pg_reload_conf()")
        psql(pg, f"CREATE ROLE {ROLE} LOGIN PASSWORD '{old}'")
        psql(pg, f"CREATE DATABASE rotating OWNER {ROLE}")
        settings = make_settings(
            tmp_path,
            {
                "store": {
                    "url": f"postgresql+asyncpg://{ROLE}@127.0.0.1:{pg.port}/rotating",
                    "password": f"awssm:{name}",
                },
                "secrets": {"aws": {"region": "us-east-1", "endpoint_url": moto_url, "max_attempts": 1}},
            },
        )
        runtime = build_runtime(settings, clock=FakeClock())
        await runtime.store.migrate()
        try:

            def read() -> Awaitable[object]:
                return runtime.store.get_enrollment("alice")

            async with steady_flow(read, clients=3, pause=0.005) as before:
                await completed(before, CALLS, "store calls before the rotation")
                pending = sm.put_secret_value(SecretId=name, SecretString=new, VersionStages=["AWSPENDING"])
                psql(pg, f"ALTER ROLE {ROLE} PASSWORD '{new}'")  # the old password stops working at once
                sm.update_secret_version_stage(
                    SecretId=name,
                    VersionStage="AWSCURRENT",
                    MoveToVersionId=pending["VersionId"],
                    RemoveFromVersionId=first,
                )
                # pooled connections stay logged in: PostgreSQL keeps them
                await completed(before, len(before) + CALLS, "store calls on the pooled connections after it")
            # The pool starts over (as pool_recycle does every 30 min), between two calls so none is cut off: every
            # new connection logs in with the password the gateway had cached, which PostgreSQL no longer accepts.
            await runtime.store.engine.dispose()
            async with steady_flow(read, clients=3, pause=0.005) as after:
                await completed(after, CALLS, "store calls on new connections after the rotation")
            logins = psql(pg, f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{ROLE}'")  # noqa: S608
            assert int(logins) >= 1  # connections logged in again since the password changed
        finally:
            await runtime.close()
    outcomes = before + after
    assert len(after) >= CALLS and all(outcomes), f"{outcomes.count(False)} of {len(outcomes)} store calls failed"
    assert runtime.secrets.value("store.password").reveal() == new  # the refused login re-read the secret
