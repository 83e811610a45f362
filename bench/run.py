"""One command for the gateway's benchmark: every scenario side by side, in random order, medians and ratios.

    python bench/run.py [--quick] [--duration S] [--repetitions N] [--out docs/performance.md]
    python bench/run.py --only A0 A1 S1 S4 S4c   only these cells (ids or id prefixes), without S5 and S6
    python bench/run.py --only U1 S7 RSS --quick  the fixed-rate latency, a 30 s soak and the idle RSS alone
    python bench/run.py --s6-only --repetitions 5  S6 alone, five times on one gateway: its lines, no report

Scenarios (see docs/performance.md and /work/shared/BENCHMARK.md), against U0, an nginx ``return 200``:

    S0   wrk -> U0                                         the load generator's ceiling
    S1   wrk -> nginx proxy_pass (upstream keepalive) -> U0 what a C proxy hop costs
    S2   wrk -> bench/minimal_proxy.py -> U0               the Python floor, main denominator
    S3   wrk -> gateway, valid MFA session cookie -> U0    the product's hot path
    S3x  wrk -> gateway, no cookie -> 302                  the reject path
    S4   wrk -> nginx auth_request -> gateway /auth, -> U0 forward-auth mode
  and, at 50 connections only:
    S4c-hit   as S4, nginx keeping the gateway's reusable decisions (forward_auth.cache_ttl), one cookie: answered
              from nginx's cache without asking the gateway
    S4c-miss  the same, a new URL on every request: every request asks the gateway, and nginx keeps the answer
    S3s  as S3, with a cookie last seen > 60 s ago          the gateway re-seals the cookie on every response
    S3j-EdDSA, S3j-ES256  as S3 with a bearer JWT           a bearer token seen before, per signing algorithm
                                                           (a token never seen before: measured in-process too)
    S3r  as S3, gateway with 1,000 host-scoped rules        policy matching with many rules (S3's gateway has one)
    A0   wrk -> aiohttp hello-world                         denominator of the forward-auth endpoint
    A1   wrk -> gateway /_mfa/auth directly, valid cookie   the forward-auth endpoint alone
    B-S1, B-S2, B-S3, B-S4  S1-S4 in mode B: 2 workers each (nginx worker_processes 2, minimal proxy and gateway
                           --workers 2), nothing pinned, their own U0; deployment realism, no target
  then U1, a 10 ms upstream with 4-16 KB bodies (bench/u1_upstream.py, core 1), and bench/latency.py:
    U1-S2  wrk (256 connections) -> minimal proxy -> U1: the capacity the fixed rates are taken from
    U1     h2load --h1 --rps at 25/50/80 % of it: S0 (to U1), S2 and S3 (valid cookie), p50/p99 and the latency the
           proxies add over S0
  then bench/soak.py:
    RSS  1,000 idle keep-alive connections to S3's gateway (one request each): RSS per worker
    S7   soak (--soak-seconds, 180 by default): 60 % of S3's capacity from 1,000 keep-alive clients (h2load); RSS
         and file descriptors at start and end, errors
  then, once (bench/capacity.py):
    S5   TOTP verification capacity: enrolled users step up once each, 50 at a time, on SQLite and (with the Debian
         PostgreSQL server binaries) on a throwaway PostgreSQL cluster: the tests' ``running_postgres``
    S6   event-loop lag while Argon2id sign-ins run at once
  and in this process (bench/policy.py):
    P    the cost of policy matching with 1, 100 and 1,000 rules
  and at the end a verdict for every target of issue 14.

Mode A (per core): the system under test is pinned to core 0 (``taskset -c 0``); wrk, h2load, U0, U1 and Redis to
core 1. Everything started here is stopped on exit, Ctrl-C or error. Test traffic goes to 127.0.0.1 only.

``--only S3 S3r`` runs just those cells (and neither S5 nor S6): a quick look at one comparison. ``--skip-soak``
leaves S7 out.

Needs Debian ``wrk``, ``nginx``, ``redis-server`` and ``nghttp2-client`` (h2load) and the project's virtualenv
(``make bench`` uses it).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import http.client
import importlib.metadata
import json
import os
import platform
import random
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PREFIX = "/_mfa"
COOKIE = "__Host-mfa_session"
USER = "bench"
S6_USERS = tuple(f"s6-{n}" for n in range(6))  # signing in at once, S6_PER_USER each (capacity.py)
S6_ROUNDS = 4  # sign-ins per S6 user
S5_USERS = 6000  # enrollments, each stepping up once: verifications are single-use per user and time step
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
MAIN_CONNECTIONS = 50
MANY_RULES = 1000  # the S3r gateway's policy; S3's gateway has the first of them
NO_UPSTREAM = ("S0", "A0")  # scenarios whose system under test opens no connection to U0
MODE_B_WORKERS = 2  # mode B: processes (or nginx workers) per system under test, nothing pinned
MODE_B_PORTS = ("u0b", "s1b", "s2b", "gwb", "gwb-admin", "s4b")
U1_PORTS = ("u1", "s2u", "gwu", "gwu-admin")
U1_LOADS = (25, 50, 80)  # fixed rates, in % of the minimal proxy's capacity in front of U1 (U1-S2)
U1_CAPACITY_CONNECTIONS = 256  # U1 answers after 10 ms: 50 closed-loop connections could not saturate a proxy
SOAK_LOAD = 0.6  # S7's rate, of S3's capacity
SOAK_CLIENTS = 1000
IDLE_CONNECTIONS = 1000
IDLE_RSS_TARGET_MB = 80
EXTRA_CELLS = ("U1", "S7", "RSS")  # --only ids beside the wrk scenarios: fixed-rate latency, soak, idle RSS
MARK_START, MARK_END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
TARGET_TEXT = (
    "gateway proxying an authenticated request reaches >= 0.9x the req/s of the minimal aiohttp proxy at 50 "
    "connections with p99 <= 1.2x, and 0 Redis commands per proxied request"
)

sys.path.insert(0, str(ROOT))  # tests.helpers.servers: the tests' throwaway PostgreSQL cluster, for S5

try:
    import capacity  # bench/capacity.py: S5 and S6, against the same gateway
    import latency  # bench/latency.py: h2load at fixed rates, percentiles from its log (U1, S7)
    import policy as policy_bench  # bench/policy.py: Policy.match in-process, against the number of rules
    import soak  # bench/soak.py: S7 and RSS with idle keep-alive connections
    import u1_upstream
    from common import CLK_TCK, LOAD_CPU, SUT_CPU, redis_calls_since, redis_commandstats, render

    from mfa_gateway.core import totp
    from mfa_gateway.core.keyring import Keyring
    from mfa_gateway.core.model import TotpParams
    from mfa_gateway.core.session import Session, open_sealed, seal
    from mfa_gateway.core.tokens import VERIFIED_CACHE_SIZE, SigningKeys
    from tests.helpers.servers import PG_DIRS, running_postgres
except ImportError:  # pragma: no cover - a clear message instead of a traceback
    sys.exit("bench/run.py needs the project's virtualenv: run `make bench` or `.venv/bin/python bench/run.py`")


class BenchError(Exception):
    """The benchmark cannot run or measured the wrong thing; the message says why."""


# -- processes ---------------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()  # fields from "state" on (comm may hold spaces)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(int(entry.name))
    return children


@dataclass
class Proc:
    """A process started by the benchmark (in its own session), and the tree below it."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> list[int]:
        children, found, todo = _children_map(), [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def cpu_ticks(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fields = _stat_fields(pid)
                total += int(fields[11]) + int(fields[12])  # utime + stime, all threads
        return total

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
        return total

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise BenchError(f"{self.name} exited with code {self.popen.returncode}; its log ends:\n{tail}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)  # its own session: only what we started
                self.popen.wait(timeout=5)


class Processes:
    """Starts processes pinned to a core; stops every one of them (last started first) on ``close``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, Proc] = {}
        self.pinning = _can_pin()

    def start(self, name: str, argv: list[str], cpu: str | None) -> Proc:
        """``cpu`` None: not pinned (mode B)."""
        if self.pinning and cpu is not None:
            argv = ["taskset", "-c", cpu, *argv]
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        proc = Proc(name, popen, log)
        self.procs[name] = proc
        return proc

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(Exception):
                proc.stop()
        self.procs.clear()


def _can_pin() -> bool:
    return shutil.which("taskset") is not None and {0, 1} <= os.sched_getaffinity(0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- HTTP and Redis probes ---------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def cookie(self, name: str) -> str | None:
        for header in self.headers.get_all("Set-Cookie") or []:
            pair = header.split(";", 1)[0]
            if pair.startswith(name + "="):
                return pair.split("=", 1)[1]
        return None


def request(port: int, method: str, path: str, *, headers: dict[str, str] | None = None, body: Any = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        sent = dict(headers or {})
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=sent)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def wait_until(what: str, check: Callable[[], bool], procs: list[Proc], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            proc.check_alive()
        with contextlib.suppress(OSError, http.client.HTTPException):
            if check():
                return
        time.sleep(0.1)
    raise BenchError(f"{what} did not become ready within {timeout:.0f} s")


def socket_inodes(pids: list[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = str(fd.readlink())
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    return inodes


def upstream_connections(port: int, pids: list[int]) -> int:
    """ESTABLISHED TCP connections from the given processes to 127.0.0.1:``port`` (a proxy's pool to U0)."""
    wanted, inodes, count = f"0100007F:{port:04X}", socket_inodes(pids), 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[2] == wanted and parts[3] == "01" and parts[9] in inodes:
                count += 1
    return count


# -- the systems under test --------------------------------------------------------------------------------------


@dataclass
class Setup:
    """Everything started for the run, and the credentials for the gateway scenarios."""

    workdir: Path
    ports: dict[str, int]
    procs: Processes
    keyring: Keyring | None = None
    session: Session | None = None
    bearer: dict[str, str] = field(default_factory=dict)  # signing algorithm -> a JWT from api/login
    passwords: dict[str, str] = field(default_factory=dict)  # user -> password, for USER and S6_USERS
    scratch: list[Path] = field(default_factory=list)  # directories outside workdir, removed with it

    def cookie(self, *, last_seen_ago: float = 0.0) -> str:
        """A session cookie as a browser holds it: the API's cookie, re-sealed with a recent last-seen time.

        The gateway re-seals a session cookie whose last-seen time is more than 60 s old (idle bookkeeping) and a
        browser stores the new one; wrk cannot, so each run gets a cookie refreshed the same way.
        """
        assert self.keyring is not None and self.session is not None
        now = time.time()
        return seal(dataclasses.replace(self.session, last_seen=now - last_seen_ago), self.keyring)


def start_services(setup: Setup, duration: float) -> None:
    workdir, ports, procs = setup.workdir, setup.ports, setup.procs
    for name in (
        "u0",
        "s1",
        "s2",
        "a0",
        "gw",
        "gw-admin",
        "gwr",
        "gwr-admin",
        "gwc",
        "gwc-admin",
        "s4",
        "s4c",
        "redis",
        *MODE_B_PORTS,
        *U1_PORTS,
    ):
        ports[name] = free_port()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"

    # As root, nginx's workers would switch to "nobody", which cannot enter the run's private directory (S4c's cache).
    as_user = ["-g", "user root;"] if os.geteuid() == 0 else []

    def start_nginx(name: str, template: str, cpu: str | None, values: dict[str, str | int], workers: int = 1) -> Proc:
        conf = render(
            template,
            workdir / f"{name}.conf",
            {"DIR": str(workdir), "PORT": ports[name], "NAME": name, "WORKERS": workers, **values},
        )
        argv = [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / f"{name}.err"), *as_user]
        return procs.start(name, argv, cpu)

    u0 = start_nginx("u0", "u0.conf", LOAD_CPU, {})
    redis = procs.start(
        "redis",
        [
            "redis-server",
            "--port",
            str(ports["redis"]),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        LOAD_CPU,
    )
    s1 = start_nginx("s1", "s1_proxy.conf", SUT_CPU, {"UPSTREAM_PORT": ports["u0"]})
    python = sys.executable
    upstream_url = f"http://127.0.0.1:{ports['u0']}"
    s2 = procs.start(
        "s2", [python, str(BENCH / "minimal_proxy.py"), "--port", str(ports["s2"]), "--upstream", upstream_url], SUT_CPU
    )
    a0 = procs.start("a0", [python, str(BENCH / "minimal_proxy.py"), "--port", str(ports["a0"]), "--hello"], SUT_CPU)
    gateway = start_gateway(setup, upstream_url)
    s4 = start_nginx(
        "s4",
        "s4_auth_request.conf",
        SUT_CPU,
        {"UPSTREAM_PORT": ports["u0"], "GATEWAY_PORT": ports["gw"], "PREFIX": PREFIX},
    )
    s4c = start_nginx(
        "s4c",
        "s4c_auth_cache.conf",
        SUT_CPU,
        {
            "UPSTREAM_PORT": ports["u0"],
            "GATEWAY_PORT": ports["gwc"],
            "PREFIX": PREFIX,
            "CACHE": str(ram_directory(setup)),
        },
    )
    # Mode B: the same systems with 2 workers each, nothing pinned (their own U0 too).
    u0b = start_nginx("u0b", "u0.conf", None, {})
    upstream_b = f"http://127.0.0.1:{ports['u0b']}"
    s1b = start_nginx("s1b", "s1_proxy.conf", None, {"UPSTREAM_PORT": ports["u0b"]}, workers=MODE_B_WORKERS)
    minimal = [python, str(BENCH / "minimal_proxy.py")]
    s2b = procs.start(
        "s2b", [*minimal, "--port", str(ports["s2b"]), "--upstream", upstream_b, "--workers", str(MODE_B_WORKERS)], None
    )
    s4b = start_nginx(
        "s4b",
        "s4_auth_request.conf",
        None,
        {"UPSTREAM_PORT": ports["u0b"], "GATEWAY_PORT": ports["gwb"], "PREFIX": PREFIX},
        workers=MODE_B_WORKERS,
    )
    # U1: the slow upstream on the load core, and the minimal proxy in front of it on the SUT core (its gateway is
    # started below, with the other gateways that share the first one's store).
    u1 = procs.start("u1", [python, str(BENCH / "u1_upstream.py"), "--port", str(ports["u1"])], LOAD_CPU)
    u1_url = f"http://127.0.0.1:{ports['u1']}"
    s2u = procs.start("s2u", [*minimal, "--port", str(ports["s2u"]), "--upstream", u1_url], SUT_CPU)
    everything = [u0, redis, s1, s2, a0, gateway, s4, s4c, u0b, s1b, s2b, s4b, u1, s2u]
    for name in ("u0", "s1", "s2", "a0", "s4", "s4c", "u0b", "s1b", "s2b", "u1", "s2u"):
        port = ports[name]
        wait_until(name, lambda port=port: request(port, "GET", "/").status > 0, everything)  # type: ignore[misc]
    wait_until("redis", lambda: redis_commandstats(ports["redis"]) is not None, everything)
    # Ready means the store and Redis answer and the revocation feed is live (until then protected routes are 503).
    wait_until(
        "gateway",
        lambda: request(ports["gw"], "GET", "/", headers={"Accept": "text/html"}).status == 302,
        everything,
        timeout=60,
    )
    # Started once the first has created the store's schema, on the same store, Redis, keys and users: one with
    # 1,000 rules (S3r), and S4c's with forward_auth.cache_ttl on (so A1 and S4 measure the shipped default).
    many_rules = start_gateway_process(setup, "gwr", upstream_url, tenant_rules(MANY_RULES))
    reusing = start_gateway_process(
        setup, "gwc", upstream_url, tenant_rules(1), {"forward_auth": {"cache_ttl": REUSE_TTL}}
    )
    # Mode B's gateway (2 workers, not pinned) and U1's (pinned, as S3's).
    two_workers = start_gateway_process(setup, "gwb", upstream_b, tenant_rules(1), {"workers": MODE_B_WORKERS}, None)
    slow_upstream = start_gateway_process(setup, "gwu", u1_url, tenant_rules(1))
    others = [many_rules, reusing, two_workers, slow_upstream]
    for name, label in (
        ("gwr", "gateway with many rules"),
        ("gwc", "gateway reusing decisions"),
        ("gwb", "gateway with 2 workers"),
        ("gwu", "gateway in front of U1"),
    ):
        wait_until(
            label,
            lambda port=ports[name]: request(port, "GET", "/", headers={"Accept": "text/html"}).status == 302,  # type: ignore[misc]
            [*everything, *others],
            timeout=60,
        )
    wait_until("S4 nginx of mode B", lambda: request(ports["s4b"], "GET", "/").status > 0, [s4b])
    sign_in(setup)
    if duration > 50:
        print("note: runs longer than 50 s outlive the 60 s cookie refresh; S3 then measures re-sealing too")


SIGNING_KEYS = (("s1", "EdDSA"), ("s2", "ES256"))


def keygen(command: list[str], kind: str, kid: str, alg: str | None = None) -> bytes:
    algorithm = ["--alg", alg] if alg else []
    return subprocess.run([*command, "keygen", kind, "--kid", kid, *algorithm], capture_output=True, check=True).stdout


def gateway_command() -> list[str]:
    gateway_bin = Path(sys.executable).with_name("mfa-gateway")
    return [str(gateway_bin)] if gateway_bin.exists() else [sys.executable, "-m", "mfa_gateway"]


def tenant_rules(count: int) -> list[dict[str, Any]]:
    """Host-scoped rules for hosts the bench never asks for, as a forward-auth for many applications has them: an
    exact host, a wildcard, an exact host with an ``mfa`` path; every request falls through to the default."""
    rules: list[dict[str, Any]] = []
    for n in range(count):
        if n % 3 == 0:
            rules.append({"name": f"app {n}", "hosts": [f"app{n}.tenants.example"], "action": "identity"})
        elif n % 3 == 1:
            rules.append({"name": f"tenant {n}", "hosts": [f"*.t{n}.tenants.example"], "action": "mfa"})
        else:
            rule = {"name": f"admin {n}", "hosts": [f"api{n}.tenants.example"], "path": "^/admin(/|$)"}
            rules.append({**rule, "action": "mfa", "max_age": 600})
    return rules


def start_gateway(setup: Setup, upstream_url: str) -> Proc:
    workdir = setup.workdir
    command = gateway_command()
    keys = workdir / "keys"
    keys.mkdir()
    (keys / "keyring.json").write_bytes(keygen(command, "keyring", "k1"))
    # Two signing keys, one per supported algorithm: EdDSA signs; ES256, "retiring", still verifies (S3j-ES256).
    signing = [json.loads(keygen(command, "signing", kid, alg))["keys"][0] for kid, alg in SIGNING_KEYS]
    signing[1]["status"] = "retiring"
    (keys / "signing.json").write_text(json.dumps({"keys": signing}))
    config_path = write_gateway_config(setup, "gw", upstream_url, tenant_rules(1))
    for user in (USER, *S6_USERS):
        password = secrets.token_urlsafe(18)
        subprocess.run(
            [*command, "users", "add", user, "--config", str(config_path), "--password-stdin"],
            input=(password + "\n").encode(),
            capture_output=True,
            check=True,
        )
        setup.passwords[user] = password
    setup.keyring = Keyring.from_json((keys / "keyring.json").read_text())
    return setup.procs.start("gw", [*command, "serve", "--config", str(config_path)], SUT_CPU)


def start_gateway_process(
    setup: Setup,
    name: str,
    upstream_url: str,
    rules: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    cpu: str | None = SUT_CPU,
) -> Proc:
    """Another gateway on the same store, Redis, keys and users as ``gw``, with its own port, policy, audit and
    ``extra`` top-level config sections; pinned to ``cpu`` (None: not pinned)."""
    config_path = write_gateway_config(setup, name, upstream_url, rules, extra)
    return setup.procs.start(name, [*gateway_command(), "serve", "--config", str(config_path)], cpu)


def write_gateway_config(
    setup: Setup, name: str, upstream_url: str, rules: list[dict[str, Any]], extra: dict[str, Any] | None = None
) -> Path:
    config = {
        "mode": "production",
        "log_level": "warning",
        "listen": {"host": "127.0.0.1", "port": setup.ports[name]},
        "admin": {"port": setup.ports[f"{name}-admin"]},  # metrics; the default port may be taken
        "prefix": PREFIX,
        "trusted_proxies": ["127.0.0.1/32"],  # the forward-auth scenario's nginx is on loopback
        "upstream": {"url": upstream_url, "max_connections": 256, "keepalive_timeout": 15},
        "policy": {"default": "mfa", "rules": rules},
        "session": {"jwt_ttl": 3600},  # outlives the whole run (S3j)
        "identity": {"source": "builtin", "users_file": "users.yaml"},
        "state": {"backend": "redis", "url": f"redis://127.0.0.1:{setup.ports['redis']}/0"},
        "store": {"url": "sqlite+aiosqlite:///mfa.db"},
        # Argon2id stays at its defaults: S6 measures what a sign-in flood does to the event loop.
        # S5 sends every verification from one address, 50 at a time; a reserving attempt (a password, a backup
        # code, and TOTP codes before they were judged in one step) waits while limits.ip.max_failures (20 by
        # default) are under way from its address. Kept raised so S5 measures one configuration across builds.
        "limits": {"ip": {"max_failures": 1000}},
        "secrets": {"keyring": "file:keys/keyring.json", "signing_keys": "file:keys/signing.json"},
        "audit": {"path": "audit.log" if name == "gw" else f"audit-{name}.log"},
    }
    config.update(extra or {})
    config_path = setup.workdir / ("gateway.yaml" if name == "gw" else f"gateway-{name}.yaml")
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return config_path


def ram_directory(setup: Setup) -> Path:
    """A directory on a RAM file system when there is one (/dev/shm), removed with the run: where S4c's nginx keeps
    decisions, as config/nginx.conf advises (a miss writes one file; on a disk that costs more than the miss)."""
    shm = Path("/dev/shm")  # noqa: S108 - mkdtemp makes a private directory in it
    path = Path(tempfile.mkdtemp(prefix="mfa-bench-cache-", dir=shm if shm.is_dir() else setup.workdir))
    setup.scratch.append(path)
    return path


REUSE_TTL = 60
"""forward_auth.cache_ttl of S4c's gateway: longer than any run, so a hit run never asks."""


def sign_in(setup: Setup) -> None:
    """The JSON API flow a client follows: password, enrol TOTP, verify a code; keeps the stepped-up session."""
    port = setup.ports["gw"]
    password = setup.passwords[USER]
    login = request(port, "POST", f"{PREFIX}/api/login", body={"username": USER, "password": password})
    first = login.cookie(COOKIE)
    if login.status != 200 or not first:
        raise BenchError(f"api/login answered {login.status}: {login.body[:300]!r}")
    cookie = {"Cookie": f"{COOKIE}={first}"}
    enable = request(port, "POST", f"{PREFIX}/api/mfa/enable", headers=cookie, body={})
    if enable.status != 200:
        raise BenchError(f"api/mfa/enable answered {enable.status}: {enable.body[:300]!r}")
    secret = json.loads(enable.body)["data"]["secret"]
    params = TotpParams()
    code = totp.code_at(secret, params, totp.time_step(time.time(), params))
    verify = request(port, "POST", f"{PREFIX}/api/mfa/verify", headers=cookie, body={"token": code})
    stepped_up = verify.cookie(COOKIE)
    if verify.status != 200 or not stepped_up:
        raise BenchError(f"api/mfa/verify answered {verify.status}: {verify.body[:300]!r}")
    assert setup.keyring is not None
    setup.session = open_sealed(stepped_up, setup.keyring, time.time())
    if setup.session.mfa_time is None:
        raise BenchError("the cookie from api/mfa/verify carries no MFA time")
    check = request(port, "GET", "/", headers={"Cookie": f"{COOKIE}={stepped_up}"})
    if check.status != 200 or b"U0" not in check.body:
        raise BenchError(f"the stepped-up cookie does not pass the gate: {check.status} {check.body[:200]!r}")
    # A bearer JWT as an API client gets one: password and a backup code (the TOTP code's step is used up).
    backup_code = json.loads(enable.body)["data"]["backupCodes"][0]
    body = {"username": USER, "password": password, "mfaToken": backup_code}
    token_login = request(port, "POST", f"{PREFIX}/api/login", body=body)
    if token_login.status != 200:
        raise BenchError(f"api/login with a backup code answered {token_login.status}: {token_login.body[:300]!r}")
    setup.bearer["EdDSA"] = json.loads(token_login.body)["token"]
    setup.bearer["ES256"] = es256_twin(setup, setup.bearer["EdDSA"])


def es256_twin(setup: Setup, token: str) -> str:
    """The same claims signed with the ES256 key: the token the gateway issued while that key was active."""
    document = json.loads((setup.workdir / "keys" / "signing.json").read_text())
    es256 = [dict(key, status="active") for key in document["keys"] if key["alg"] == "ES256"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return SigningKeys.from_json(json.dumps({"keys": es256})).issue(claims)


# -- scenarios ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    id: str
    what: str
    port: str
    sut: tuple[str, ...]
    path: str = "/"
    expect: int = 200
    redis: bool = False
    main_only: bool = False  # run at 50 connections only
    headers: Callable[[Setup], dict[str, str]] = lambda setup: {}
    set_cookie: bool = False  # whether responses must carry a re-sealed session cookie
    script: str | None = None  # a wrk Lua script of bench/ for the requests (wrk_report.lua's done() is added)
    idle: tuple[str, ...] = ()  # processes that must do (almost) no work during the run: answered before them
    mode: str = "A"  # "B": not pinned, wrk neither
    upstream: str = "u0"  # the app behind the SUT, whose connections from the SUT are counted
    connections: int | None = None  # run at this connection count only
    baseline: str = ""  # prefix of the scenarios its ratios compare with ("B-": B-S2 and B-S1)
    compare: bool = True  # False: no ratio with S2 and S1 (another upstream)


def _session(setup: Setup) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={setup.cookie()}"}


COLD_TOKENS = VERIFIED_CACHE_SIZE // 2  # fewer than remembered: each one is verified in full exactly once


def cold_verification_us(setup: Setup) -> dict[str, float]:
    """CPU microseconds to verify a JWT never seen before, per algorithm: the gateway's own keys and claims, each
    token with its own ``jti``, through ``SigningKeys.verify`` (the same call the gateway makes per request)."""
    document = json.loads((setup.workdir / "keys" / "signing.json").read_text())
    claims = json.loads(base64.urlsafe_b64decode(setup.bearer["EdDSA"].split(".")[1] + "=="))
    costs = {}
    for _, alg in SIGNING_KEYS:
        own = [dict(key, status="active") for key in document["keys"] if key["alg"] == alg]
        keys = SigningKeys.from_json(json.dumps({"keys": own}))
        tokens = [keys.issue({**claims, "jti": f"cold-{n}"}) for n in range(COLD_TOKENS)]
        started = time.process_time()
        for token in tokens:
            keys.verify(token, now=claims["iat"] + 1, issuer=claims["iss"], audience=claims["aud"])
        costs[alg] = (time.process_time() - started) * 1e6 / COLD_TOKENS
    return costs


def _bearer(algorithm: str) -> Callable[[Setup], dict[str, str]]:
    return lambda setup: {"Authorization": f"Bearer {setup.bearer[algorithm]}"}


def _stale_session(setup: Setup) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={setup.cookie(last_seen_ago=120)}"}


def _forward_auth(setup: Setup) -> dict[str, str]:
    return {
        **_session(setup),
        "X-Original-URL": f"http://127.0.0.1:{setup.ports['s4']}/",
        "X-Original-Method": "GET",
    }


SCENARIOS = (
    Scenario("S0", "wrk -> U0 (nginx return 200), U0 on the load core", "u0", ("u0",)),
    Scenario("S1", "wrk -> nginx proxy_pass -> U0", "s1", ("s1",)),
    Scenario("S2", "wrk -> minimal aiohttp proxy -> U0", "s2", ("s2",)),
    Scenario("S3", "wrk -> gateway, valid MFA session -> U0", "gw", ("gw",), redis=True, headers=_session),
    Scenario(
        "S3x",
        "wrk -> gateway, no cookie -> 302 to sign-in",
        "gw",
        ("gw",),
        expect=302,
        redis=True,
        headers=lambda setup: {"Accept": "text/html"},
    ),
    Scenario(
        "S4", "wrk -> nginx auth_request -> gateway /auth; -> U0", "s4", ("s4", "gw"), redis=True, headers=_session
    ),
    Scenario(
        "S3s",
        "as S3, cookie last seen 120 s ago (re-sealed on every response)",
        "gw",
        ("gw",),
        redis=True,
        main_only=True,
        headers=_stale_session,
        set_cookie=True,
    ),
    *(
        Scenario(
            f"S3j-{alg}",
            f"as S3, with a bearer JWT signed {alg} instead of the cookie (one token: seen before)",
            "gw",
            ("gw",),
            redis=True,
            main_only=True,
            headers=_bearer(alg),
        )
        for _, alg in SIGNING_KEYS
    ),
    Scenario(
        "S3r",
        f"as S3, against a gateway with {MANY_RULES:,} host-scoped rules, none for the request's host",
        "gwr",
        ("gwr",),
        redis=True,
        main_only=True,
        headers=_session,
    ),
    Scenario(
        "S4c-hit",
        "as S4, nginx keeping reusable decisions; one cookie, so answered from the cache",
        "s4c",
        ("s4c", "gwc"),
        redis=True,
        main_only=True,
        headers=_session,
        idle=("gwc",),
    ),
    Scenario(
        "S4c-miss",
        "as S4, nginx keeping reusable decisions; a new URL each request, so every one asks and is kept",
        "s4c",
        ("s4c", "gwc"),
        redis=True,
        main_only=True,
        headers=_session,
        script="wrk_misses.lua",
    ),
    Scenario("A0", "wrk -> aiohttp hello-world", "a0", ("a0",), main_only=True),
    *(
        Scenario(
            f"B-{sid}",
            f"mode B: {what}, 2 workers each, nothing pinned",
            port,
            sut,
            redis=redis,
            main_only=True,
            headers=headers,
            mode="B",
            upstream="u0b",
            baseline="B-",
        )
        for sid, what, port, sut, redis, headers in (
            ("S1", "wrk -> nginx proxy_pass -> U0", "s1b", ("s1b",), False, lambda setup: {}),
            ("S2", "wrk -> minimal aiohttp proxy -> U0", "s2b", ("s2b",), False, lambda setup: {}),
            ("S3", "wrk -> gateway, valid MFA session -> U0", "gwb", ("gwb",), True, _session),
            ("S4", "wrk -> nginx auth_request -> gateway /auth; -> U0", "s4b", ("s4b", "gwb"), True, _session),
        )
    ),
    Scenario(
        "U1-S2",
        "wrk -> minimal aiohttp proxy -> U1 (10 ms, 4-16 KB): the capacity the fixed rates are taken from",
        "s2u",
        ("s2u",),
        path=u1_upstream.paths()[0],
        script="wrk_u1.lua",
        upstream="u1",
        connections=U1_CAPACITY_CONNECTIONS,
        compare=False,
    ),
    Scenario(
        "A1",
        "wrk -> gateway /_mfa/auth alone, valid session",
        "gw",
        ("gw",),
        path=f"{PREFIX}/auth",
        redis=True,
        main_only=True,
        headers=_forward_auth,
    ),
)


# -- one measured run --------------------------------------------------------------------------------------------


@dataclass
class Run:
    scenario: str
    connections: int
    repetition: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us_per_req: float
    cpu_percent: float
    rss_mib: float
    upstream_conns: int
    redis_per_req: float | None
    redis_calls: dict[str, int] = field(default_factory=dict)


def wrk(
    url: str, connections: int, duration: float, headers: dict[str, str], pin: bool, script: Path | None = None
) -> subprocess.Popen[bytes]:
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script or BENCH / "wrk_report.lua"),
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    if pin:
        argv = ["taskset", "-c", LOAD_CPU, *argv]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wrk_result(popen: subprocess.Popen[bytes], duration: float) -> dict[str, Any]:
    try:
        out, err = popen.communicate(timeout=duration + 30)
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("WRK_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            return result
    raise BenchError(f"wrk printed no summary (exit {popen.returncode}): {err.decode(errors='replace')[-500:]}")


IDLE_US_PER_REQUEST = 2.0
"""CPU a process that must stay idle may spend per request (its background tasks: the revocation feed's pings)."""


def wrk_script(setup: Setup, name: str) -> Path:
    """bench/``name`` followed by wrk_report.lua (wrk takes one script), written once into the run's directory."""
    path = setup.workdir / name
    if not path.exists():
        path.write_text((BENCH / name).read_text() + "\n" + (BENCH / "wrk_report.lua").read_text())
    return path


def precheck(setup: Setup, scenario: Scenario, headers: dict[str, str]) -> None:
    """One request with the run's headers: the run must measure the intended path, not a redirect or an error."""
    reply = request(setup.ports[scenario.port], "GET", scenario.path, headers=headers)
    if reply.status != scenario.expect:
        raise BenchError(f"{scenario.id}: expected {scenario.expect}, got {reply.status}: {reply.body[:200]!r}")
    proxied = scenario.port in ("gw", "gwr", "gwb") and scenario.path == "/" and scenario.expect == 200
    if proxied and (reply.cookie(COOKIE) is not None) != scenario.set_cookie:
        raise BenchError(f"{scenario.id}: Set-Cookie {'missing' if scenario.set_cookie else 'unexpected'}")


def measure(setup: Setup, scenario: Scenario, connections: int, repetition: int, duration: float, warmup: float) -> Run:
    procs = [setup.procs.procs[name] for name in scenario.sut]
    idle = [setup.procs.procs[name] for name in scenario.idle]
    url = f"http://127.0.0.1:{setup.ports[scenario.port]}{scenario.path}"
    headers = scenario.headers(setup)
    precheck(setup, scenario, headers)
    pin = setup.procs.pinning and scenario.mode == "A"
    script = wrk_script(setup, scenario.script) if scenario.script else None
    if warmup > 0:
        wrk_result(wrk(url, connections, warmup, headers, pin, script), warmup)
        time.sleep(0.3)
    redis_before = redis_commandstats(setup.ports["redis"]) if scenario.redis else {}
    ticks_before = sum(proc.cpu_ticks() for proc in procs)
    idle_before = sum(proc.cpu_ticks() for proc in idle)
    popen = wrk(url, connections, duration, headers, pin, script)
    try:
        time.sleep(duration / 2)
        rss_kib = sum(proc.rss_kib() for proc in procs)
        conns = upstream_connections(setup.ports[scenario.upstream], [pid for proc in procs for pid in proc.pids()])
        result = wrk_result(popen, duration)
    finally:
        if popen.poll() is None:  # interrupted: wrk is ours, stop it too
            popen.kill()
            popen.wait()
    ticks = sum(proc.cpu_ticks() for proc in procs) - ticks_before
    idle_ticks = sum(proc.cpu_ticks() for proc in idle) - idle_before
    for proc in setup.procs.procs.values():
        proc.check_alive()
    requests = int(result["requests"])
    if requests == 0:
        raise BenchError(f"{scenario.id} c={connections}: wrk completed no request")
    if idle_ticks / CLK_TCK * 1e6 / requests > IDLE_US_PER_REQUEST:
        names = ", ".join(scenario.idle)
        raise BenchError(f"{scenario.id} c={connections}: {names} worked during the run (the requests reached it)")
    seconds = result["duration_us"] / 1e6
    redis_per_req = None
    calls: dict[str, int] = {}
    if scenario.redis:
        calls = redis_calls_since(setup.ports["redis"], redis_before)
        redis_per_req = sum(calls.values()) / requests
    cpu_seconds = ticks / CLK_TCK
    return Run(
        scenario=scenario.id,
        connections=connections,
        repetition=repetition,
        rps=requests / seconds,
        p50_ms=result["p50_us"] / 1000,
        p90_ms=result["p90_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        errors=sum(int(result[k]) for k in ("connect", "read", "write", "status", "timeout")),
        requests=requests,
        cpu_us_per_req=cpu_seconds * 1e6 / requests,
        cpu_percent=100 * cpu_seconds / seconds,
        rss_mib=rss_kib / 1024,
        upstream_conns=conns,
        redis_per_req=redis_per_req,
        redis_calls=calls,
    )


# -- summary -----------------------------------------------------------------------------------------------------


@dataclass
class Summary:
    scenario: str
    connections: int
    runs: list[Run]

    def median(self, name: str) -> float:
        return float(statistics.median(getattr(run, name) for run in self.runs))

    @property
    def spread(self) -> float:
        values = [run.rps for run in self.runs]
        return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else 0.0

    @property
    def redis_per_req(self) -> float | None:
        values = [run.redis_per_req for run in self.runs if run.redis_per_req is not None]
        return float(statistics.median(values)) if values else None

    @property
    def redis_calls(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for run in self.runs:
            for name, count in run.redis_calls.items():
                total[name] = total.get(name, 0) + count
        return total


def summarise(runs: list[Run]) -> dict[tuple[str, int], Summary]:
    groups: dict[tuple[str, int], Summary] = {}
    for run in runs:
        key = (run.scenario, run.connections)
        groups.setdefault(key, Summary(run.scenario, run.connections, [])).runs.append(run)
    return groups


def ratio(groups: dict[tuple[str, int], Summary], a: str, b: str, c: int, metric: str = "rps") -> float | None:
    top, bottom = groups.get((a, c)), groups.get((b, c))
    if top is None or bottom is None or bottom.median(metric) == 0:
        return None
    return top.median(metric) / bottom.median(metric)


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def report(
    groups: dict[tuple[str, int], Summary],
    connections: list[int],
    args: argparse.Namespace,
    seed: int,
    elapsed: float,
    facts: list[str],
    cold_jwt_us: dict[str, float],
    extras: Extras,
    policy_lines: list[str],
) -> str:
    order = {scenario.id: index for index, scenario in enumerate(SCENARIOS)}
    scenarios = {scenario.id: scenario for scenario in SCENARIOS}
    lines = [
        f"Run: {time.strftime('%Y-%m-%d %H:%M %Z')}, mode A (system under test on core {SUT_CPU}; wrk, h2load, U0, U1 "
        f"and Redis on core {LOAD_CPU}) unless the id starts with B- (mode B: {MODE_B_WORKERS} workers each, nothing "
        "pinned), "
        f"{args.repetitions} repetition(s) of {args.duration:g} s per cell after a {args.warmup:g} s warm-up, random "
        f"order (seed {seed}), medians; {elapsed / 60:.1f} min in all.",
        "",
        "| scenario | conns | req/s | spread | p50 ms | p90 ms | p99 ms | errors | SUT CPU us/req | SUT CPU % "
        "| RSS MiB | U0 conns open | Redis cmds/req | vs S2 | vs S1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def vs(scenario: Scenario, base: str, c: int) -> str:
        return _fmt(ratio(groups, scenario.id, scenario.baseline + base, c)) if scenario.compare else "-"

    for (scenario, c), summary in sorted(groups.items(), key=lambda item: (item[0][1], order[item[0][0]])):
        conns = "-" if scenario in NO_UPSTREAM else f"{statistics.median(r.upstream_conns for r in summary.runs):.0f}"
        lines.append(
            f"| {scenario} | {c} | {summary.median('rps'):,.0f} | {summary.spread * 100:.0f}% "
            f"| {summary.median('p50_ms'):.2f} | {summary.median('p90_ms'):.2f} | {summary.median('p99_ms'):.2f} "
            f"| {sum(run.errors for run in summary.runs)} | {summary.median('cpu_us_per_req'):.1f} "
            f"| {summary.median('cpu_percent'):.0f} | {summary.median('rss_mib'):.1f} "
            f"| {conns} "
            f"| {_fmt(summary.redis_per_req, '.4f')} | {vs(scenarios[scenario], 'S2', c)} "
            f"| {vs(scenarios[scenario], 'S1', c)} |"
        )
    lines += [
        "",
        "Ratios (of medians, same run):",
        "",
        "| conns | S3/S2 | S3/S1 | S3x/S2 | S4/S2 | p99 S3/S2 | CPU S3-S2 us/req |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in connections:
        cpu3, cpu2 = groups.get(("S3", c)), groups.get(("S2", c))
        extra_cpu = cpu3.median("cpu_us_per_req") - cpu2.median("cpu_us_per_req") if cpu3 and cpu2 else None
        lines.append(
            f"| {c} | {_fmt(ratio(groups, 'S3', 'S2', c))} | {_fmt(ratio(groups, 'S3', 'S1', c))} "
            f"| {_fmt(ratio(groups, 'S3x', 'S2', c))} | {_fmt(ratio(groups, 'S4', 'S2', c))} "
            f"| {_fmt(ratio(groups, 'S3', 'S2', c, 'p99_ms'))} | {_fmt(extra_cpu, '+.1f')} |"
        )
    c = MAIN_CONNECTIONS
    lines += [
        "",
        f"At {c} connections: /auth alone vs aiohttp hello-world (A1/A0) {_fmt(ratio(groups, 'A1', 'A0', c))}, "
        f"S4 vs /auth alone (S4/A1) {_fmt(ratio(groups, 'S4', 'A1', c))}, nginx reusing decisions S4c-hit/S1 "
        f"{_fmt(ratio(groups, 'S4c-hit', 'S1', c))} and S4c-hit/S4 {_fmt(ratio(groups, 'S4c-hit', 'S4', c))}, "
        f"every request a cache miss S4c-miss/S4 {_fmt(ratio(groups, 'S4c-miss', 'S4', c))}, "
        f"hello-world's CPU per request over /auth's (A0/A1, the issue's measure) "
        f"{_fmt(ratio(groups, 'A0', 'A1', c, 'cpu_us_per_req'))}, stale-cookie S3s/S3 "
        f"{_fmt(ratio(groups, 'S3s', 'S3', c))}, bearer JWT vs cookie S3j-EdDSA/S3 "
        f"{_fmt(ratio(groups, 'S3j-EdDSA', 'S3', c))} and S3j-ES256/S3 {_fmt(ratio(groups, 'S3j-ES256', 'S3', c))} "
        "(wrk sends one token, so these are tokens the gateway has seen: their signature was verified once). "
        "Verifying a token never seen before costs, in the benchmark's own process (not pinned): "
        + ", ".join(f"{alg} {us:.0f} us" for alg, us in cold_jwt_us.items())
        + ".",
        "",
        *many_rules_lines(groups),
        *mode_b_lines(groups),
    ]
    redis_lines = []
    for (scenario, clients), summary in sorted(groups.items()):
        if summary.redis_calls:
            calls = ", ".join(f"{name} {count}" for name, count in sorted(summary.redis_calls.items()))
            total_requests = sum(run.requests for run in summary.runs)
            redis_lines.append(f"{scenario} c={clients}: {calls} over {total_requests:,} requests")
    load_bound = sorted(
        {
            f"{s} c={clients}"
            for (s, clients), summary in groups.items()
            if s != "S0" and not s.startswith("B-") and summary.median("cpu_percent") < 90
        }
    )
    if load_bound:
        lines += [
            "Below 90 % SUT CPU (the load core, wrk + U0, was the limit; compare CPU us/req rather than req/s): "
            + ", ".join(load_bound)
            + ".",
            "",
        ]
    lines.append(
        "Redis commands seen during gateway runs: " + ("; ".join(redis_lines) if redis_lines else "none") + "."
    )
    lines += ["", *capacity_lines(extras.s5, extras.s6), "", *u1_lines(groups, extras.u1)]
    lines += [*soak_lines(extras), *policy_lines, "", *targets(groups, extras), "", *facts, ""]
    return "\n".join(lines)


def mode_b_lines(groups: dict[tuple[str, int], Summary]) -> list[str]:
    c = MAIN_CONNECTIONS
    if ("B-S3", c) not in groups:
        return []
    return [
        f"Mode B, deployment realism (no target): the gateway (`serve --workers {MODE_B_WORKERS}`), the minimal "
        f"proxy (`--workers {MODE_B_WORKERS}`, SO_REUSEPORT) and nginx (`worker_processes {MODE_B_WORKERS}`), nothing "
        f"pinned, wrk and their U0 on the same 2 cores; at {c} connections: B-S3/B-S2 "
        f"{_fmt(ratio(groups, 'B-S3', 'B-S2', c))}, "
        f"B-S3/B-S1 {_fmt(ratio(groups, 'B-S3', 'B-S1', c))}, B-S4/B-S2 {_fmt(ratio(groups, 'B-S4', 'B-S2', c))}; "
        f"over mode A (one pinned process): B-S2/S2 {_fmt(ratio(groups, 'B-S2', 'S2', c))}, "
        f"B-S3/S3 {_fmt(ratio(groups, 'B-S3', 'S3', c))}, B-S1/S1 {_fmt(ratio(groups, 'B-S1', 'S1', c))}. "
        "SUT CPU % counts both workers (up to 200 %), and wrk competes with them for the cores.",
        "",
    ]


def u1_lines(groups: dict[tuple[str, int], Summary], u1: latency.FixedRates | None) -> list[str]:
    if u1 is None:
        return []
    cell = groups[("U1-S2", U1_CAPACITY_CONNECTIONS)]
    return [
        f"U1, latency at fixed rates (`h2load --h1 --rps`, one client per {latency.PER_CLIENT_RATE:g} req/s, at least "
        f"8; h2load on core {LOAD_CPU} with U1): U1 answers after 10 ms with 4-16 KB (64 paths cycled); the rates are "
        f"{', '.join(f'{load} %' for load in u1.loads)} of the minimal proxy's capacity in front of U1, "
        f"{u1.capacity:,.0f} req/s (U1-S2: wrk, {U1_CAPACITY_CONNECTIONS} connections, this run; SUT CPU "
        f"{cell.median('cpu_percent'):.0f} %). Percentiles from h2load's per-request log, medians over the "
        "repetitions; the added latency is the scenario's median minus S0's at the same rate.",
        "",
        *latency.report_lines(u1, U1_WHAT),
        "",
    ]


def soak_lines(extras: Extras) -> list[str]:
    lines = []
    if extras.idle is not None:
        lines += [*soak.idle_lines(extras.idle), ""]
    if extras.s7 is not None:
        lines += [*soak.soak_lines(extras.s7, extras.s7_capacity, SOAK_LOAD), ""]
    return lines


def many_rules(groups: dict[tuple[str, int], Summary]) -> tuple[float | None, str]:
    """S3r against S3 at the main connection count: the ratio of req/s, or, when either ran below 90 % SUT CPU
    (the SUT did not have its core: the load side, or on a shared machine someone else, was the limit), the ratio
    of CPU per request (S3's over S3r's, so that below 1 means slower either way); and which of the two it is."""
    c = MAIN_CONNECTIONS
    many, one = groups.get(("S3r", c)), groups.get(("S3", c))
    if many is None or one is None:
        return None, "n/a"
    if min(many.median("cpu_percent"), one.median("cpu_percent")) >= 90:
        return ratio(groups, "S3r", "S3", c), "req/s"
    return one.median("cpu_us_per_req") / many.median("cpu_us_per_req"), "CPU per request (SUT below 90 % CPU)"


def many_rules_lines(groups: dict[tuple[str, int], Summary]) -> list[str]:
    c = MAIN_CONNECTIONS
    many, one = groups.get(("S3r", c)), groups.get(("S3", c))
    if many is None or one is None:
        return []
    value, basis = many_rules(groups)
    extra_cpu = many.median("cpu_us_per_req") - one.median("cpu_us_per_req")
    return [
        f"Policy with {MANY_RULES:,} host-scoped rules, none for the request's host, against one (S3r/S3, the same "
        f"request through two gateways that differ only in their policy, at {c} connections): req/s "
        f"{_fmt(ratio(groups, 'S3r', 'S3', c))}, CPU {extra_cpu:+.1f} us/req "
        f"({one.median('cpu_us_per_req'):.1f} -> {many.median('cpu_us_per_req'):.1f}); target >= 0.95 on {basis}: "
        f"{_fmt(value)}, **{'holds' if value is not None and value >= 0.95 else 'MISSED'}**.",
        "",
    ]


def s5_line(store: str, s5: capacity.Capacity) -> str:
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(s5.statuses.items()))
    calls = ", ".join(f"{name} {count / s5.requests:.1f}" for name, count in sorted(s5.redis_calls.items()))
    return (
        f"S5, TOTP verification (`api/mfa/challenge`, {s5.requests:,} enrolled users stepping up once each, "
        f"{MAIN_CONNECTIONS} at a time, {store} store, Redis state; answers {statuses}): "
        f"**{s5.per_second:,.0f} verifications/s**, {s5.cpu_us_per_request:,.0f} us gateway CPU each "
        f"(so {1e6 / s5.cpu_us_per_request:,.0f}/s per core), p50 {s5.p50_ms:.1f} ms, p99 {s5.p99_ms:.1f} ms, "
        f"{s5.redis_per_request:.1f} Redis commands each, counting those inside scripts ({calls}); gateway CPU "
        f"{s5.gateway_cpu_percent:.0f} %, the sending process {s5.load_cpu_percent:.0f} % of core {LOAD_CPU}"
        + (" (the load side may have been the limit)." if s5.load_cpu_percent > 80 else ".")
    )


def capacity_lines(s5: S5Results | None, s6: capacity.LoopLag | None) -> list[str]:
    if s5 is None or s6 is None:
        return ["S5 and S6: not run (`--only`)."]
    flood = ", ".join(f"{status}: {count}" for status, count in sorted(s6.flood.statuses.items()))
    s5_lines = [s5_line(store, result) for store, result in s5.items()]
    if "PostgreSQL" not in s5:
        s5_lines.append("S5 on PostgreSQL: not run (no PostgreSQL server binaries).")
    return [
        *(line for text in s5_lines for line in (text, "")),
        f"S6, Argon2id at its defaults under concurrency ({s6.flood.requests} correct sign-ins, "
        f"{len(S6_USERS) * capacity.S6_PER_USER} at a time; answers {flood}; {s6.flood.per_second:.1f}/s, "
        f"{s6.flood.cpu_us_per_request / 1000:.0f} ms gateway CPU each): "
        f"`healthz` answered in p50 {s6.flood_p50_ms:.2f} ms, **p99 {s6.flood_p99_ms:.2f} ms** during the flood "
        f"(idle: p50 {s6.idle_p50_ms:.2f} ms, p99 {s6.idle_p99_ms:.2f} ms), the event loop's lag.",
    ]


def targets(groups: dict[tuple[str, int], Summary], extras: Extras) -> list[str]:
    """Every target of issue 14 (BENCHMARK.md), measured in this run, with its verdict."""
    c = MAIN_CONNECTIONS
    rps = ratio(groups, "S3", "S2", c)
    p99 = ratio(groups, "S3", "S2", c, "p99_ms")
    s3, s4 = groups.get(("S3", c)), groups.get(("S4", c))
    redis = s3.redis_per_req if s3 else None
    s4_redis = s4.redis_per_req if s4 else None
    cpu3, cpu2 = groups.get(("S3", c)), groups.get(("S2", c))
    extra_cpu = cpu3.median("cpu_us_per_req") - cpu2.median("cpu_us_per_req") if cpu3 and cpu2 else None
    no_redis = redis is not None and redis < 0.001  # only the feed's background HGETALL/PING, none per request
    s5, s6, u1, s7, idle = extras.s5, extras.s6, extras.u1, extras.s7, extras.idle
    per_core = {store: 1e6 / result.cpu_us_per_request for store, result in (s5 or {}).items()}
    lag = s6.flood_p99_ms if s6 is not None else None
    added50 = u1.added("S3", 50, "p50_ms") if u1 is not None else None
    added99 = u1.added("S3", 50, "p99_ms") if u1 is not None else None
    many, basis = many_rules(groups)

    def verdict(ok: bool | None) -> str:
        return "not run" if ok is None else ("PASS" if ok else "**MISS**")

    def at_least(value: float | None, floor: float) -> tuple[str, str]:
        return _fmt(value), verdict(None if value is None else value >= floor)

    rows = [
        ("S3/S2 req/s >= 0.8 (ambitious 0.9)", *at_least(rps, 0.8)),
        ("CPU S3 - S2 <= +50 us/req", _fmt(extra_cpu, "+.1f"), verdict(None if extra_cpu is None else extra_cpu <= 50)),
        ("p99 S3/S2 <= 1.2", _fmt(p99), verdict(None if p99 is None else p99 <= 1.2)),
        ("Redis cmds per S3 request = 0", _fmt(redis, ".4f"), verdict(None if redis is None else no_redis)),
        (
            "Redis cmds per S4 request = 0",
            _fmt(s4_redis, ".4f"),
            verdict(None if s4_redis is None else s4_redis < 0.001),
        ),
        ("S3x/S2 >= 2.5", *at_least(ratio(groups, "S3x", "S2", c), 2.5)),
        (
            '`/auth` alone vs hello-world, CPU per request (A0/A1, "A1/A0") >= 0.7',
            *at_least(ratio(groups, "A0", "A1", c, "cpu_us_per_req"), 0.7),
        ),
        ("S4 / `/auth` alone (S4/A1) >= 0.95", *at_least(ratio(groups, "S4", "A1", c), 0.95)),
        ("S4c (cache hits) / S1 >= 0.5", *at_least(ratio(groups, "S4c-hit", "S1", c), 0.5)),
        (f"S3r/S3 ({MANY_RULES:,} rules / one) >= 0.95, on {basis}", *at_least(many, 0.95)),
        *(
            (
                f"S5 verifications/s per core >= 1,500, {store}",
                _fmt(per_core.get(store), ",.0f"),
                verdict(None if store not in per_core else per_core[store] >= 1500),
            )
            for store in ("SQLite", "PostgreSQL")
        ),
        ("event-loop lag p99 during S6 <= 5 ms", _fmt(lag, ".2f", " ms"), verdict(None if lag is None else lag <= 5)),
        (
            "U1, added latency vs S0 at 50 % load (S3): p50 <= +1 ms, p99 <= +4 ms",
            "n/a" if added50 is None or added99 is None else f"p50 {added50:+.2f} ms, p99 {added99:+.2f} ms",
            verdict(None if added50 is None or added99 is None else added50 <= 1 and added99 <= 4),
        ),
        (
            f"S7 ({s7.seconds / 60:g} min): RSS growth <= 5 %, errors 0" if s7 else "S7: RSS growth <= 5 %, errors 0",
            "n/a" if s7 is None else f"{s7.growth_percent:+.1f} %, {s7.figures.errors} errors",
            verdict(None if s7 is None else s7.growth_percent <= soak.SOAK_GROWTH_LIMIT and s7.figures.errors == 0),
        ),
        (
            f"RSS per worker with {IDLE_CONNECTIONS:,} idle keep-alive connections <= {IDLE_RSS_TARGET_MB} MB",
            "n/a" if idle is None else f"{idle.worst_mib * 1.048576:.0f} MB ({idle.worst_mib:.1f} MiB)",
            verdict(None if idle is None else idle.worst_mib * 1.048576 <= IDLE_RSS_TARGET_MB),
        ),
    ]
    holds = rps is not None and p99 is not None and rps >= 0.9 and p99 <= 1.2 and no_redis
    return [
        f"Verdicts, every target of issue 14 in this run (wrk cells at {c} connections):",
        "",
        "| target | measured | verdict |",
        "|---|---:|---|",
        *(f"| {name} | {value} | {result} |" for name, value, result in rows),
        "",
        f"Issue target ({TARGET_TEXT}): **{'HOLDS' if holds else 'DOES NOT HOLD'}**.",
    ]


def machine_facts() -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return "not found"
        return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "?"

    def package(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    revision = version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    changed = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "mfa_gateway"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return [
        f"Gateway code: commit {revision}" + (" with uncommitted changes in mfa_gateway/" if changed else "") + ".",
        "",
        "Machine:",
        "",
        f"- cores: {os.cpu_count()} (usable by this process: {len(os.sched_getaffinity(0))}); CPU: {model}",
        f"- kernel: {platform.release()}; Python {platform.python_version()}; aiohttp {package('aiohttp')}; "
        f"uvloop {package('uvloop')}",
        f"- {version(['nginx', '-v'])}; {version(['redis-server', '--version'])}; {version(['wrk', '-v'])}; "
        f"{version(['h2load', '--version'])}",
    ]


def write_out(path: Path, text: str) -> None:
    section = f"{MARK_START}\n{text}\n{MARK_END}"
    current = path.read_text() if path.exists() else ""
    if MARK_START in current and MARK_END in current:
        before, rest = current.split(MARK_START, 1)
        after = rest.split(MARK_END, 1)[1]
        updated = before + section + after
    else:
        updated = (current.rstrip() + "\n\n" if current else "# Performance\n\n") + section + "\n"
    path.write_text(updated)


# -- main --------------------------------------------------------------------------------------------------------


def _check_tools() -> None:
    packages = {"wrk": "wrk", "redis-server": "redis-server", "h2load": "nghttp2-client", "nginx": "nginx-core"}
    missing = [tool for tool in packages if shutil.which(tool) is None]
    if "nginx" in missing and Path("/usr/sbin/nginx").exists():
        missing.remove("nginx")
    if missing:
        raise BenchError(
            f"missing {', '.join(missing)}: `make system-deps` installs them (Debian packages "
            f"{' '.join(packages[tool] for tool in missing)})"
        )


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def services(duration: float) -> Iterator[Setup]:
    workdir = Path(tempfile.mkdtemp(prefix="mfa-bench-"))
    setup = Setup(workdir, {}, Processes(workdir))
    try:
        start_services(setup, duration)
        yield setup
    finally:
        setup.procs.close()
        for path in (*setup.scratch, workdir):
            shutil.rmtree(path, ignore_errors=True)


S5Results = dict[str, capacity.Capacity]
"""S5 by store: ``SQLite``, and ``PostgreSQL`` when a cluster could be started."""


def _postgres_binaries() -> bool:
    return all(any(Path("/").glob(f"{d.lstrip('/')}/{b}")) for d in PG_DIRS for b in ("initdb", "pg_ctl"))


@contextlib.contextmanager
def postgres_gateway(setup: Setup) -> Iterator[str | None]:
    """A gateway ``gwp`` like ``gw`` (same Redis, keys and users) on a throwaway PostgreSQL cluster of its own,
    started on the load core as Redis is; its name, or None without the Debian PostgreSQL server binaries."""
    if not _postgres_binaries():
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="mfa-bench-pg-") as pgdir:
        with capacity.on_core(LOAD_CPU, setup.procs.pinning):
            cluster = running_postgres(Path(pgdir))
            server = cluster.__enter__()
        try:
            for name in ("gwp", "gwp-admin"):
                setup.ports[name] = free_port()
            upstream_url = f"http://127.0.0.1:{setup.ports['u0']}"
            gateway = start_gateway_process(setup, "gwp", upstream_url, tenant_rules(1), {"store": {"url": server.url}})
            wait_until(
                "gateway on PostgreSQL",
                lambda: request(setup.ports["gwp"], "GET", "/", headers={"Accept": "text/html"}).status == 302,
                [gateway],
                timeout=60,
            )
            yield "gwp"
        finally:
            proc = setup.procs.procs.pop("gwp", None)
            if proc is not None:
                proc.stop()
            cluster.__exit__(None, None, None)


def capacity_runs(setup: Setup) -> tuple[S5Results, capacity.LoopLag]:
    print("S5: seeding enrollments, then one step-up each ...", flush=True)
    s5 = {"SQLite": capacity.s5(setup, S5_USERS, MAIN_CONNECTIONS)}
    with postgres_gateway(setup) as gwp:
        if gwp is None:
            print("S5 on PostgreSQL: skipped, no PostgreSQL server binaries (Debian package postgresql)", flush=True)
        else:
            print("S5 on PostgreSQL: seeding enrollments, then one step-up each ...", flush=True)
            s5["PostgreSQL"] = capacity.s5(setup, S5_USERS, MAIN_CONNECTIONS, gwp)
    for store, result in s5.items():
        print(
            f"S5 ({store}) {result.per_second:,.0f} verifications/s, {result.cpu_us_per_request:,.0f} us CPU each",
            flush=True,
        )
    for store, result in s5.items():
        if set(result.statuses) != {200}:
            raise BenchError(f"S5 ({store}): every request must succeed, the gateway answered {result.statuses}")
    return s5, s6_run(setup)


def s6_run(setup: Setup) -> capacity.LoopLag:
    s6 = capacity.s6(setup, {user: setup.passwords[user] for user in S6_USERS}, rounds=S6_ROUNDS)
    if set(s6.flood.statuses) != {200}:
        raise BenchError(f"S6: every request must succeed, the gateway answered {s6.flood.statuses}")
    print(
        f"S6 loop lag p99 {s6.flood_p99_ms:.2f} ms (idle {s6.idle_p99_ms:.2f} ms), "
        f"{s6.flood.per_second:.1f} sign-ins/s (gateway CPU {s6.flood.gateway_cpu_percent:.0f} % of a core)",
        flush=True,
    )
    return s6


@dataclass
class Extras:
    """What the run measured beside the wrk cells: fixed-rate latency (U1), the soak (S7), idle RSS."""

    u1: latency.FixedRates | None = None
    s7: soak.Soak | None = None
    s7_capacity: float = 0.0  # S3's req/s the soak's rate was taken from
    idle: soak.IdleRss | None = None
    s5: S5Results | None = None
    s6: capacity.LoopLag | None = None


U1_WHAT = {"S0": "h2load -> U1", "S2": "minimal proxy", "S3": "gateway, valid cookie"}


def u1_runs(
    setup: Setup, groups: dict[tuple[str, int], Summary], args: argparse.Namespace, order: random.Random
) -> latency.FixedRates:
    """S0, S2 and S3 in front of U1 at 25/50/80 % of U1-S2's capacity (wrk, this run)."""
    cell = groups.get(("U1-S2", U1_CAPACITY_CONNECTIONS))
    if cell is None:
        raise BenchError("U1: the capacity cell U1-S2 did not run")
    paths = u1_upstream.paths()
    targets: dict[str, tuple[Path, dict[str, str]]] = {}
    for name, port in (("S0", "u1"), ("S2", "s2u"), ("S3", "gwu")):
        headers = _session(setup) if name == "S3" else {}
        reply = request(setup.ports[port], "GET", paths[1], headers=headers)
        if reply.status != 200 or len(reply.body) != u1_upstream.body_size(paths[1]):
            raise BenchError(f"U1 {name}: expected 200 and U1's body, got {reply.status}: {reply.body[:200]!r}")
        targets[name] = (latency.url_file(setup.workdir, f"http://127.0.0.1:{setup.ports[port]}", paths), headers)

    def progress(name: str, load: int, f: latency.Figures) -> None:
        print(
            f"U1 {name} {load:>2} % {f.rate:>7,.0f} req/s asked, {f.achieved:>7,.0f} done  p50 {f.p50_ms:6.2f} "
            f"p99 {f.p99_ms:6.2f} max {f.max_ms:7.1f} ms  errors {f.errors}",
            flush=True,
        )

    return latency.fixed_rates(
        targets,
        capacity=cell.median("rps"),
        loads=U1_LOADS,
        repetitions=args.repetitions,
        seconds=max(args.duration, 3.0),
        warmup=max(args.warmup, 1.0),
        pin=setup.procs.pinning,
        workdir=setup.workdir,
        order=order,
        progress=progress,
    )


def soak_run(setup: Setup, groups: dict[tuple[str, int], Summary], args: argparse.Namespace) -> tuple[soak.Soak, float]:
    """S7 at 60 % of S3's capacity at 50 connections (from this run's S3 cell, measured now if it did not run)."""
    cell = groups.get(("S3", MAIN_CONNECTIONS))
    if cell is None:
        s3 = next(scenario for scenario in SCENARIOS if scenario.id == "S3")
        run = measure(setup, s3, MAIN_CONNECTIONS, 0, args.duration, args.warmup)
        print(f"S7: S3 measured for its capacity: {run.rps:,.0f} req/s", flush=True)
        capacity_rps = run.rps
    else:
        capacity_rps = cell.median("rps")
    rate = capacity_rps * SOAK_LOAD
    print(f"S7: {args.soak_seconds:g} s at {rate:,.0f} req/s from {SOAK_CLIENTS:,} clients ...", flush=True)
    urls = latency.url_file(setup.workdir, f"http://127.0.0.1:{setup.ports['gw']}", ["/"])
    result = soak.soak(
        setup.procs.procs["gw"],
        urls,
        rate=rate,
        seconds=args.soak_seconds,
        headers=_session(setup),
        pin=setup.procs.pinning,
        workdir=setup.workdir,
        clients=SOAK_CLIENTS,
    )
    setup.procs.procs["gw"].check_alive()
    print(
        f"S7 {result.figures.requests:,} requests, errors {result.figures.errors}, RSS {result.growth_percent:+.1f} %, "
        f"fds {result.fds['start']} -> {result.fds['end']}",
        flush=True,
    )
    return result, capacity_rps


def idle_run(setup: Setup) -> soak.IdleRss:
    print(f"RSS: {IDLE_CONNECTIONS:,} idle keep-alive connections to the gateway ...", flush=True)
    result = soak.idle_rss(setup.procs.procs["gw"], setup.ports["gw"], _session(setup), IDLE_CONNECTIONS)
    if set(result.statuses) != {200}:
        raise BenchError(f"RSS: every request must pass the gate, the gateway answered {result.statuses}")
    print(f"RSS per worker with {IDLE_CONNECTIONS:,} idle connections: {result.worst_mib:.1f} MiB", flush=True)
    return result


def selected(wanted: list[str] | None, ident: str) -> bool:
    """Whether ``--only`` (ids or id prefixes) selects the cell ``ident``; everything without ``--only``."""
    return not wanted or any(ident.startswith(prefix) for prefix in wanted)


def cell_connections(scenario: Scenario, connections: list[int]) -> list[int]:
    if scenario.connections is not None:
        return [scenario.connections]
    if scenario.main_only and MAIN_CONNECTIONS in connections:
        return [MAIN_CONNECTIONS]
    return connections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the gateway against nginx and a minimal aiohttp proxy.")
    parser.add_argument("--quick", action="store_true", help="1 repetition of 3 s, 50 connections only, 30 s soak")
    parser.add_argument("--capacity-only", action="store_true", help="S5 and S6 only, without the wrk cells")
    parser.add_argument(
        "--s6-only", action="store_true", help="S6 alone, --repetitions times (default 1) on one gateway; no report"
    )
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 7; --quick: 3)")
    parser.add_argument("--repetitions", type=int, help="repetitions of every cell (default 3; --quick: 1)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load before each run")
    parser.add_argument("--connections", type=int, nargs="+", help="wrk connection counts (default 16 50 256)")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="ID",
        help=f"only these cells (ids or id prefixes: S4c is both; also {', '.join(EXTRA_CELLS)}), without S5 and S6",
    )
    parser.add_argument("--soak-seconds", type=float, help="S7's length (default 180; --quick: 30; BENCHMARK.md: 600)")
    parser.add_argument("--skip-soak", action="store_true", help="without S7")
    parser.add_argument("--seed", type=int, help="seed of the random run order")
    parser.add_argument("--out", type=Path, help="a Markdown file whose results section is replaced")
    parser.add_argument("--json", type=Path, help="also write every run's raw numbers here")
    args = parser.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 7.0)
    args.repetitions = args.repetitions or (1 if args.quick or args.s6_only else 3)
    args.capacity_only = args.capacity_only or args.s6_only
    args.soak_seconds = args.soak_seconds or (30.0 if args.quick else 180.0)
    connections = sorted(set(args.connections or ([MAIN_CONNECTIONS] if args.quick else [16, MAIN_CONNECTIONS, 256])))
    seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
    known = [scenario.id for scenario in SCENARIOS] + list(EXTRA_CELLS)
    if args.only and not all(any(ident.startswith(wanted) for ident in known) for wanted in args.only):
        parser.error(f"--only takes cell ids or their prefixes: {', '.join(known)}")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (a bg job)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # S7's 1,000 clients, h2load and the servers inherit it
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    run_u1 = not args.capacity_only and selected(args.only, "U1")
    run_soak = not args.capacity_only and not args.skip_soak and selected(args.only, "S7")
    run_idle = not args.capacity_only and selected(args.only, "RSS")
    cells = [
        (scenario, c)
        for scenario in SCENARIOS
        for c in cell_connections(scenario, connections)
        if not args.capacity_only and selected(args.only, scenario.id)
    ]
    total = len(cells) * args.repetitions
    u1_seconds = len(U1_WHAT) * len(U1_LOADS) * args.repetitions * (max(args.duration, 3) + 1 + 1) if run_u1 else 0
    estimate = total * (args.duration + args.warmup + 1.2) + u1_seconds + (args.soak_seconds + 10) * run_soak
    print(
        f"{total} wrk runs ({len(cells)} cells x {args.repetitions})"
        + (f", U1 at {len(U1_LOADS)} rates" if run_u1 else "")
        + (f", S7 for {args.soak_seconds:g} s" if run_soak else "")
        + (", idle RSS" if run_idle else "")
        + f": about {estimate / 60:.1f} min; seed {seed}",
        flush=True,
    )
    started = time.monotonic()
    facts = machine_facts()  # before the run: the code revision the gateway process loads
    runs: list[Run] = []
    extras = Extras()
    try:
        _check_tools()
        with services(args.duration) as setup:
            if not setup.procs.pinning:
                print("warning: cores 0 and 1 are not both usable; running without pinning (not mode A)")
            order = random.Random(seed)  # noqa: S311 - shuffling the run order, not security
            done = 0
            for repetition in range(args.repetitions):
                order.shuffle(cells)
                for scenario, c in cells:
                    run = measure(setup, scenario, c, repetition, args.duration, args.warmup)
                    runs.append(run)
                    done += 1
                    print(
                        f"[{done}/{total}] {scenario.id:<4} c={c:<3} {run.rps:>9,.0f} req/s  p50 {run.p50_ms:6.2f} "
                        f"p99 {run.p99_ms:6.2f} ms  cpu {run.cpu_us_per_req:6.1f} us/req ({run.cpu_percent:3.0f}%)  "
                        f"errors {run.errors}"
                        + (f"  redis/req {run.redis_per_req:.4f}" if run.redis_per_req is not None else ""),
                        flush=True,
                    )
                    time.sleep(0.3)
            if run_u1:
                extras.u1 = u1_runs(setup, summarise(runs), args, order)
            if run_idle:
                extras.idle = idle_run(setup)
            if run_soak:
                extras.s7, extras.s7_capacity = soak_run(setup, summarise(runs), args)
            if args.s6_only:
                for _ in range(args.repetitions):
                    s6_run(setup)
                return 0
            cold = cold_verification_us(setup)
            if not args.only:
                extras.s5, extras.s6 = capacity_runs(setup)
        print("P: policy matching in-process ...", flush=True)
        repeat = 10 if args.quick else policy_bench.REPEAT
        policy_lines = policy_bench.report(policy_bench.measure(repeat=repeat), repeat, policy_bench.SECONDS)
    except KeyboardInterrupt:
        print("interrupted: everything started has been stopped", file=sys.stderr)
        return 130
    except (BenchError, latency.H2loadError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    groups = summarise(runs)
    text = report(groups, connections, args, seed, time.monotonic() - started, facts, cold, extras, policy_lines)
    print("\n" + text)
    if args.out:
        write_out(args.out, text)
        print(f"results written to {args.out}")
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(run) for run in runs], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
