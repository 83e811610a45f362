"""`users reset` with `state.backend: memory`: sessions and lockouts live in the running gateway's memory, which the
command reaches through the gateway's admin listener. (With Redis: tests/system/test_replicas.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.helpers.gateway import FAST_HASHING, add_user, make_settings, write_keys
from tests.helpers.servers import GatewayProcess, free_port, start_gateway

PASSWORD = "memory password 1"
ADMIN_TOKEN = "reset-admin-token-0123456789"


def _document(tmp_path: Path, *, token: bool = True) -> dict[str, Any]:
    (tmp_path / "admin-token").write_text(ADMIN_TOKEN + "\n")
    return {
        "admin": {"token": "file:admin-token"} if token else {},
        "identity": {"source": "builtin", "users_file": "users.yaml"},
        "store": {"url": "sqlite+aiosqlite:///mfa.db"},
        "hashing": FAST_HASHING,
        "secrets": write_keys(tmp_path / "keys"),
        "audit": {"path": "audit.log", "store": False},
    }


def _users(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mfa_gateway", "users", *args, "--config", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _resets(tmp_path: Path) -> list[tuple[str, str, dict[str, str]]]:
    lines = (tmp_path / "audit.log").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    return [(e["user"], e["result"], e["detail"]) for e in events if e["event"] == "mfa.reset"]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """One gateway process on memory state and SQLite, its admin listener with a bearer token; alice added."""
    document = _document(tmp_path)
    add_user(make_settings(tmp_path, document), "alice", PASSWORD)
    process = start_gateway(document, tmp_path / "gateway.yaml", tmp_path / "serve.log")
    try:
        yield process
    finally:
        process.stop()


async def _status(session: aiohttp.ClientSession, base: str, headers: dict[str, str]) -> int:
    async with session.get(base + "/api/mfa/status", headers=headers) as response:
        return response.status


async def _login(session: aiohttp.ClientSession, base: str, password: str) -> aiohttp.ClientResponse:
    async with session.post(base + "/api/login", json={"username": "alice", "password": password}) as response:
        await response.read()
        return response


async def test_users_reset_reaches_the_memory_of_the_running_gateway(gateway: GatewayProcess, tmp_path: Path) -> None:
    """With memory state, `users reset` has the running gateway (through its admin listener) revoke alice's
    session cookie and JWT and lift her password lockout; the gateway writes the `mfa.reset` audit event."""
    base = gateway.url + "/_mfa"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        signed_in = await _login(session, base, PASSWORD)
        assert signed_in.status == 200
        cookie = {"Cookie": signed_in.headers["Set-Cookie"].split(";", 1)[0]}
        async with session.post(base + "/api/login", json={"username": "alice", "password": PASSWORD}) as response:
            bearer = {"Authorization": f"Bearer {(await response.json())['token']}"}
        for _ in range(5):
            assert (await _login(session, base, "wrong password")).status == 401
        assert (await _login(session, base, PASSWORD)).status == 429
        assert (await _status(session, base, cookie), await _status(session, base, bearer)) == (200, 200)

        result = _users(tmp_path / "gateway.yaml", "reset", "alice")
        assert result.returncode == 0, result.stderr
        assert "alice: no enrollment; sessions and tokens revoked, lockouts lifted (running gateway)" in result.stdout

        assert (await _status(session, base, cookie), await _status(session, base, bearer)) == (401, 401)
        assert (await _login(session, base, PASSWORD)).status == 200
    assert _resets(tmp_path) == [("alice", "success", {"enrollment": "none", "via": "admin"})]


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (False, "mfa-gateway: admin.token: with state.backend: memory, users reset reaches the running gateway"),
        (True, "mfa-gateway: admin.port: no gateway answered at http://127.0.0.1:"),
    ],
    ids=["no-admin-token", "no-gateway-running"],
)
def test_users_reset_that_cannot_reach_the_gateway_deletes_the_enrollment_and_exits_1(
    tmp_path: Path, token: bool, expected: str
) -> None:
    """When the running gateway's memory cannot be reached (no admin token configured, or nothing answers on
    admin.port), the enrollment is still deleted and audited, but the command says the sessions and lockouts were
    not reset and exits 1: an operator is never told a lost phone is cut off when it may not be."""
    document = _document(tmp_path, token=token)
    document["admin"] = {**document["admin"], "port": free_port()}  # nothing listens there
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(document))
    add_user(make_settings(tmp_path, document), "alice", PASSWORD)
    assert _users(config, "enroll", "alice").returncode == 0

    result = _users(config, "reset", "alice")
    assert result.returncode == 1
    assert expected in result.stderr
    assert "alice: enrollment deleted; a running gateway's sessions and lockouts for alice are NOT reset" in (
        result.stdout
    )
    assert _users(config, "show", "alice").stdout.strip() == "alice: not enrolled"
    assert _resets(tmp_path) == [("alice", "success", {"enrollment": "deleted", "via": "cli"})]
