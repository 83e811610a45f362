"""What a started gateway has loaded: only what its configuration uses (issue 14, memory per worker).

A sidecar gateway runs one per pod, so every library it imports and never calls is paid for in every pod. The
gateway is started for real (``mfa-gateway serve``, a real listener, a real request); at its graceful exit it
writes the names in ``sys.modules`` for the test to read.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.helpers.gateway import base_config, write_config
from tests.helpers.servers import free_port, on_a_free_port, start_listening
from tests.helpers.support import merge_overrides

# Runs the command line as ``python -m mfa_gateway`` does, and lists every module loaded once it returns.
RUN_AND_LIST_MODULES = """
import atexit, sys
from pathlib import Path
atexit.register(lambda: Path(sys.argv[1]).write_text("\\n".join(sorted(sys.modules))))
from mfa_gateway.cli import main
sys.exit(main(sys.argv[2:]))
"""

LOADED_ONLY_ON_USE = ("alembic", "mako", "webauthn", "qrcode", "OpenSSL", "cbor2", "PIL", "redis")


def _serve_once(tmp_path: Path, document: dict[str, object], run: int) -> set[str]:
    """Start ``serve``, answer one request, stop it with SIGTERM: the top-level packages it had imported."""
    listing, log = tmp_path / f"modules-{run}.txt", tmp_path / f"serve-{run}.log"

    def start(port: int) -> tuple[subprocess.Popen[bytes], int]:
        admin = free_port()
        ports = {"listen": {"host": "127.0.0.1", "port": port}, "admin": {"port": admin}}
        config = write_config(tmp_path, merge_overrides(document, ports))
        command = [sys.executable, "-c", RUN_AND_LIST_MODULES, str(listing), "serve", "--config", str(config)]
        return start_listening(command, [port, admin], log, cwd=tmp_path), port

    process, port = on_a_free_port(start)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_mfa/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0, log.read_text()
    return {name.partition(".")[0] for name in listing.read_text().split()}


def test_a_started_gateway_loads_alembic_webauthn_and_qrcode_only_when_it_needs_them(tmp_path: Path) -> None:
    """With the default configuration (WebAuthn off) and a database already at the newest revision, a serving
    gateway has imported neither alembic (nor mako), py_webauthn (nor pyOpenSSL, cbor2), qrcode (nor PIL), nor, with
    its state in memory, redis-py. Its
    first start, on a fresh database, still migrates it with alembic."""
    document = base_config(tmp_path)
    assert "alembic" in _serve_once(tmp_path, document, 1), "a fresh database is migrated at start"

    loaded = _serve_once(tmp_path, document, 2)
    assert {"aiohttp", "sqlalchemy", "mfa_gateway"} <= loaded
    assert sorted(set(LOADED_ONLY_ON_USE) & loaded) == []
