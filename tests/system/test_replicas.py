"""Two real gateway processes sharing one Redis and one PostgreSQL: what one replica spends, the other refuses.

These processes run on the real clock (they are separate programs); codes are computed for the current time and
the ±1 step window absorbs a step boundary, so nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mfa_gateway.core import totp
from mfa_gateway.core.model import TotpParams
from tests.helpers.gateway import FAST_HASHING, add_user, make_settings, write_keys
from tests.helpers.servers import GatewayProcess, start_gateway
from tests.helpers.support import eventually, eventually_blocking

PASSWORD = "replica password 1"


@pytest.fixture
def replicas(tmp_path: Path, redis_url: str, postgres_url: str) -> Iterator[tuple[str, str]]:
    """Base URLs of two gateway processes configured alike (Redis state, PostgreSQL store, same keys)."""
    document: dict[str, Any] = {
        "identity": {"source": "builtin", "users_file": "users.yaml"},
        "store": {"url": postgres_url},
        "state": {"backend": "redis", "url": redis_url, "key_prefix": f"rep{secrets.token_hex(6)}:"},
        "hashing": FAST_HASHING,
        "secrets": write_keys(tmp_path / "keys"),
        "audit": {"path": "audit.log", "store": False},
    }
    add_user(make_settings(tmp_path, document), "alice", PASSWORD)
    gateways: list[GatewayProcess] = []
    try:
        for name in ("a", "b"):
            gateways.append(start_gateway(document, tmp_path / f"{name}.yaml", tmp_path / f"{name}.log"))
        a, b = (f"{gateway.url}/_mfa" for gateway in gateways)
        yield a, b
    finally:
        for gateway in gateways:
            gateway.stop()


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


def _code(secret: str) -> str:
    params = TotpParams()
    return totp.code_at(secret, params, totp.time_step(time.time(), params))


async def _enroll_on(session: aiohttp.ClientSession, base: str) -> tuple[str, dict[str, Any]]:
    status, body = await _post(session, base + "/api/login", {"username": "alice", "password": PASSWORD})
    assert status == 200, body
    token = body["token"]
    status, body = await _post(session, base + "/api/mfa/enable", {}, token)
    assert status == 200, body
    return token, body["data"]


async def test_enroll_on_a_verify_on_b_and_a_code_used_on_a_is_refused_on_b(replicas: tuple[str, str]) -> None:
    """Enrollment made on A activates on B; the code B accepted is then refused on A (shared replay marks)."""
    a, b = replicas
    async with aiohttp.ClientSession() as session:
        token, data = await _enroll_on(session, a)
        code = _code(data["secret"])
        status, body = await _post(session, b + "/api/mfa/verify", {"token": code}, token)
        assert status == 200, body
        status, body = await _post(session, a + "/api/mfa/challenge", {"token": code}, token)
        assert (status, body["code"]) == (401, "invalid_mfa_token")


async def test_a_backup_code_raced_on_both_replicas_works_once(replicas: tuple[str, str]) -> None:
    """Twenty concurrent uses of one backup code, split across A and B: exactly one succeeds, the rest fail."""
    a, b = replicas
    async with aiohttp.ClientSession() as session:
        token, data = await _enroll_on(session, a)
        status, _ = await _post(session, a + "/api/mfa/verify", {"token": _code(data["secret"])}, token)
        assert status == 200
        code = data["backupCodes"][0]
        results = await asyncio.gather(
            *(_post(session, (a if i % 2 else b) + "/api/mfa/challenge", {"token": code}, token) for i in range(20))
        )
        assert sorted(status for status, _ in results).count(200) == 1
        # the losers are failures: 401, and 429 once they add up to a lockout
        assert {status for status, _ in results} <= {200, 401, 429}


async def test_a_lockout_on_a_holds_on_b(replicas: tuple[str, str]) -> None:
    """Five failures on A lock the user on B too."""
    a, b = replicas
    async with aiohttp.ClientSession() as session:
        token, data = await _enroll_on(session, a)
        status, _ = await _post(session, a + "/api/mfa/verify", {"token": _code(data["secret"])}, token)
        assert status == 200
        wrong = "000000" if _code(data["secret"]) != "000000" else "111111"
        for _ in range(5):
            status, _ = await _post(session, a + "/api/mfa/challenge", {"token": wrong}, token)
            assert status == 401
        status, body = await _post(session, b + "/api/mfa/challenge", {"token": _code(data["secret"])}, token)
        assert (status, body["code"]) == (429, "locked_out")


def test_workers_share_one_port(tmp_path: Path, redis_url: str) -> None:
    """`serve --workers 2` runs two gateway processes on one port (SO_REUSEPORT); both answer; one /metrics on the
    admin port counts the requests of both; the admin secret refresh reaches both; SIGTERM stops all."""
    import json
    import urllib.request

    (tmp_path / "admin-token").write_text("workers-admin-token-0123456789\n")
    document = {
        "admin": {"token": "file:admin-token"},
        "identity": {"source": "builtin", "users_file": "users.yaml"},
        "store": {"url": "sqlite+aiosqlite:///mfa.db"},
        "state": {"backend": "redis", "url": redis_url, "key_prefix": f"w{secrets.token_hex(6)}:"},
        "hashing": FAST_HASHING,
        "secrets": write_keys(tmp_path / "keys"),
        "audit": {"path": "audit.log", "store": False},
    }
    gateway = start_gateway(document, tmp_path / "gateway.yaml", tmp_path / "serve.log", args=["--workers", "2"])
    process, port, admin_port = gateway.process, gateway.port, gateway.admin_port
    try:
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=False)
        worker_pids = [
            pid
            for pid in children.stdout.split()
            if Path(f"/proc/{pid}/cmdline").exists() and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(worker_pids) == 1, children.stdout  # the parent serves too: two workers in all
        for _ in range(20):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_mfa/healthz", timeout=5) as response:
                assert json.load(response) == {"status": "ok"}
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as response:
            exposition = response.read().decode()
        assert 'mfa_gateway_requests_total{decision="served",route="gateway"} 20.0' in exposition, exposition
        refresh = urllib.request.Request(
            f"http://127.0.0.1:{admin_port}/admin/secrets/refresh",
            method="POST",
            headers={"Authorization": "Bearer workers-admin-token-0123456789"},
        )
        with urllib.request.urlopen(refresh, timeout=5) as response:  # noqa: S310
            assert json.load(response)["success"] is True
        eventually_blocking(
            lambda: "SIGHUP: refreshing secrets" in (tmp_path / "serve.log").read_text(),
            "the other worker to log the SIGHUP the admin refresh sent it",
            within=5,
        )
    finally:
        gateway.stop(timeout=30)
    assert process.returncode == 0
    assert subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, check=False).stdout == b""


async def test_a_session_signed_out_on_a_is_refused_by_b(replicas: tuple[str, str]) -> None:
    """Sign-out on replica A reaches replica B through Redis pub/sub: B refuses the same cookie."""
    a, b = replicas
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        async with session.post(a + "/api/login", json={"username": "alice", "password": PASSWORD}) as response:
            assert response.status == 200
            cookie = response.headers["Set-Cookie"].split(";", 1)[0]
        headers = {"Cookie": cookie}
        async with session.get(b + "/api/mfa/status", headers=headers) as response:
            assert response.status == 200
        async with session.post(a + "/api/logout", json={}, headers=headers) as response:
            assert response.status == 200

        async def refused_on_b() -> bool:
            async with session.get(b + "/api/mfa/status", headers=headers) as response:
                return response.status == 401

        # the real pub/sub delivery between two processes
        await eventually(refused_on_b, "replica B to refuse the signed-out session", within=10, interval=0.02)


def _users_reset(config: Path, name: str = "alice") -> subprocess.CompletedProcess[str]:
    """The real command line, as an operator runs it."""
    command = [sys.executable, "-m", "mfa_gateway", "users", "reset", name, "--config", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


async def _status(session: aiohttp.ClientSession, base: str, headers: dict[str, str]) -> int:
    async with session.get(base + "/api/mfa/status", headers=headers) as response:
        return response.status


async def test_users_reset_revokes_sessions_and_jwts_on_every_replica(
    replicas: tuple[str, str], tmp_path: Path
) -> None:
    """A lost phone: after `users reset`, the session cookie and the JWT alice got before it are refused on both
    replicas (the revocation travels through Redis), her enrollment is gone, and an `mfa.reset` audit event is
    written."""
    a, b = replicas
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        token, data = await _enroll_on(session, a)
        status, _ = await _post(session, b + "/api/mfa/verify", {"token": _code(data["secret"])}, token)
        assert status == 200
        body = {"username": "alice", "password": PASSWORD, "mfaToken": data["backupCodes"][0]}
        async with session.post(a + "/api/login", json=body) as response:
            assert response.status == 200
            cookie = {"Cookie": response.headers["Set-Cookie"].split(";", 1)[0]}
            bearer = {"Authorization": f"Bearer {(await response.json())['token']}"}
        for base in (a, b):
            assert (await _status(session, base, cookie), await _status(session, base, bearer)) == (200, 200)

        result = _users_reset(tmp_path / "a.yaml")
        assert result.returncode == 0, result.stderr
        assert "alice: enrollment deleted; sessions and tokens revoked on every replica" in result.stdout

        async def refused_everywhere() -> bool:
            statuses = [await _status(session, base, headers) for base in (a, b) for headers in (cookie, bearer)]
            return statuses == [401, 401, 401, 401]

        await eventually(refused_everywhere, "both replicas to refuse alice's old cookie and JWT", within=10)
        async with session.post(b + "/api/login", json={"username": "alice", "password": PASSWORD}) as response:
            assert response.status == 200 and (await response.json())["user"]["mfaEnabled"] is False
    events = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    resets = [event for event in events if event["event"] == "mfa.reset"]
    assert [(e["user"], e["result"], e["detail"]) for e in resets] == [
        ("alice", "success", {"enrollment": "deleted", "via": "cli"})
    ]


async def test_users_reset_lifts_a_lockout_on_every_replica(replicas: tuple[str, str], tmp_path: Path) -> None:
    """Alice locked out by wrong passwords on A is refused on B too; after `users reset` she signs in on both."""
    a, b = replicas
    async with aiohttp.ClientSession() as session:
        for _ in range(5):
            status, _ = await _post(session, a + "/api/login", {"username": "alice", "password": "wrong password"})
            assert status == 401
        status, body = await _post(session, b + "/api/login", {"username": "alice", "password": PASSWORD})
        assert (status, body["code"]) == (429, "locked_out")
        result = _users_reset(tmp_path / "a.yaml")
        assert result.returncode == 0, result.stderr
        for base in (a, b):
            status, body = await _post(session, base + "/api/login", {"username": "alice", "password": PASSWORD})
            assert status == 200, body
