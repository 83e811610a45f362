"""What `serve` needs at start, told as a one-line error with exit code 2 (never a traceback), and check-config
finding the same problems offline."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.gateway import FAST_HASHING, write_keys
from tests.helpers.servers import free_port, start_gateway
from tests.helpers.support import eventually_blocking

CLI = [sys.executable, "-m", "mfa_gateway"]


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port this test holds (bound and listening) for as long as the test runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _document(tmp_path: Path, listen_port: int, admin_port: int) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": listen_port},
        "admin": {"host": "127.0.0.1", "port": admin_port},
        "identity": {"source": "builtin", "users_file": "users.yaml"},
        "store": {"url": "sqlite+aiosqlite:///mfa.db"},
        "hashing": FAST_HASHING,
        "secrets": write_keys(tmp_path / "keys"),
        "audit": {"path": "audit.log"},
    }


def _run(tmp_path: Path, command: str, document: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
    """``mfa-gateway COMMAND --config FILE`` with ``document`` written to FILE; it must end by itself."""
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(dict(document)))
    return subprocess.run(
        [*CLI, command, "--config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )


def _serve(tmp_path: Path, listen_port: int, admin_port: int) -> subprocess.CompletedProcess[str]:
    return _run(tmp_path, "serve", _document(tmp_path, listen_port, admin_port))


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


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_an_audit_path_that_cannot_be_appended_to_exits_2_naming_the_key(tmp_path: Path, command: str) -> None:
    """`audit.path` under something that is not a folder: check-config finds it without creating anything, and
    serve, which would die opening it, stops with the same kind of line and exit 2 instead of a traceback."""
    (tmp_path / "blocker").write_text("a file, not a folder\n")
    document = {**_document(tmp_path, free_port(), free_port()), "audit": {"path": "blocker/audit.log"}}
    result = _run(tmp_path, command, document)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"  - audit.path: cannot append to {tmp_path / 'blocker' / 'audit.log'}: " in result.stderr
    assert result.stderr.rstrip().endswith("; fix the path or its permissions")


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_an_unreadable_users_file_exits_2_in_check_config_as_in_serve(tmp_path: Path, command: str) -> None:
    """A users file serve cannot read (here a folder in its place) stops check-config exactly as it stops serve:
    exit 2, naming identity.users_file and the fix."""
    (tmp_path / "users.yaml").mkdir()
    result = _run(tmp_path, command, _document(tmp_path, free_port(), free_port()))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"mfa-gateway: identity.users_file: {tmp_path / 'users.yaml'}")
    assert result.stderr.rstrip().endswith("fix the file or recreate it with 'users add'")


def test_check_config_warns_that_a_missing_users_file_means_no_users(tmp_path: Path) -> None:
    """serve starts without a users file (nobody can sign in yet), so check-config accepts it, with a warning
    naming identity.users_file and how to create it."""
    result = _run(tmp_path, "check-config", _document(tmp_path, free_port(), free_port()))
    assert result.returncode == 0, result.stderr
    assert (
        f"mfa-gateway: warning: identity.users_file: {tmp_path / 'users.yaml'} does not exist: nobody can sign in "
        "until 'mfa-gateway users add NAME --config FILE' creates it"
    ) in result.stderr


def test_serve_with_a_secret_it_cannot_load_starts_unready_and_retries(tmp_path: Path) -> None:
    """What the README promises: a required secret that cannot be loaded at start does not stop serve. It listens,
    healthz answers 200, readyz 503 with secrets unavailable, and a background retry (5 s, then doubling) makes it
    ready once the secret appears, with no restart. check-config on the same file exits 2."""
    keyring = tmp_path / "late-keyring.json"
    document = _document(tmp_path, 0, 0)
    document["secrets"] = {**document["secrets"], "keyring": f"file:{keyring}"}
    assert _run(tmp_path, "check-config", document).returncode == 2
    gateway = start_gateway(document, tmp_path / "gateway.yaml", tmp_path / "serve.log")
    try:
        assert _get(f"{gateway.url}/_mfa/healthz")[0] == 200
        status, body = _get(f"{gateway.url}/_mfa/readyz")
        assert (status, json.loads(body)["checks"]["secrets"]) == (503, "unavailable")
        keyring.write_text((tmp_path / "keys" / "keyring.json").read_text())
        eventually_blocking(
            lambda: _get(f"{gateway.url}/_mfa/readyz")[0] == 200, "serve to load the secret and turn ready", within=30
        )
    finally:
        gateway.stop()
    assert "starting unready: secrets not loaded" in (tmp_path / "serve.log").read_text()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a loopback URL of the test
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
