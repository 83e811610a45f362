"""What `serve` needs at start, told as a one-line error with exit code 2 (never a traceback)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.gateway import FAST_HASHING, write_keys
from tests.servers import free_port

CLI = [sys.executable, "-m", "mfa_gateway"]


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port this test holds (bound and listening) for as long as the test runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _serve(tmp_path: Path, listen_port: int, admin_port: int) -> subprocess.CompletedProcess[str]:
    document = {
        "listen": {"host": "127.0.0.1", "port": listen_port},
        "admin": {"host": "127.0.0.1", "port": admin_port},
        "identity": {"source": "builtin", "users_file": "users.yaml"},
        "store": {"url": "sqlite+aiosqlite:///mfa.db"},
        "hashing": FAST_HASHING,
        "secrets": write_keys(tmp_path / "keys"),
        "audit": {"path": "audit.log"},
    }
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(document))
    return subprocess.run(
        [*CLI, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("key", ["listen.port", "admin.port"])
def test_a_listener_port_in_use_exits_2_naming_the_key_and_the_port(tmp_path: Path, held_port: int, key: str) -> None:
    """`serve` on a port another program holds (the main or the admin listener) stops with exit 2 and one line
    naming the config key, the address and the fix; no traceback."""
    other = free_port()
    listen_port, admin_port = (held_port, other) if key == "listen.port" else (other, held_port)
    result = _serve(tmp_path, listen_port, admin_port)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    expected = (
        f"mfa-gateway: {key}: cannot listen on 127.0.0.1:{held_port}: address already in use; "
        "stop the program holding it or choose another port"
    )
    assert result.stderr.splitlines()[-1] == expected
