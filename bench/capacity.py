"""S5 and S6 of BENCHMARK.md, against the gateway ``bench/run.py`` started (its Redis, its SQLite store).

S5: TOTP verification capacity. ``users`` enrollments are written straight into the gateway's store (encrypted
under its keyring, as enrollment does, without the Argon2id of backup codes that S5 does not measure); each user then
steps up once with ``POST {prefix}/api/mfa/challenge`` and the current code, ``concurrency`` at a time. Reported:
verifications per second, the gateway's CPU per verification (so per-core capacity), latency, and Redis commands per
verification (counting those inside scripts). Run against the SQLite gateway (``gw``) and, when bench/run.py could
start a PostgreSQL cluster, against one on PostgreSQL (``gwp``).

S6: Argon2id under concurrency. Correct password sign-ins (``POST {prefix}/api/login``) for several users, three
per user at once (within the per-user attempt limit), while a probe asks
``{prefix}/healthz`` one request at a time: the probe's latency over its idle latency is the event-loop lag a hash
flood causes.

The load (this process) runs on the load core, like wrk; the gateway stays on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from common import CLK_TCK, LOAD_CPU, redis_calls_since, redis_commandstats

from mfa_gateway import config
from mfa_gateway.core import totp
from mfa_gateway.core.model import Enrollment, EnrollmentStatus, TotpParams
from mfa_gateway.core.session import new_session_id, seal
from mfa_gateway.runtime import Runtime, build_runtime

Setup = Any  # bench/run.py's Setup (this module is imported by it, never the other way)

S6_PER_USER = 3  # sign-ins under way per user at once: under the per-user attempt limit (5 by default)


@dataclass
class Capacity:
    """One measured burst of requests against the gateway."""

    requests: int
    statuses: dict[int, int]
    seconds: float
    cpu_us_per_request: float
    p50_ms: float
    p99_ms: float
    gateway_cpu_percent: float  # of one core: near 100, the gateway was the limit
    load_cpu_percent: float  # this process's, sending the requests: near 100, the load side was the limit
    redis_per_request: float | None = None
    redis_calls: dict[str, int] = dataclasses.field(default_factory=dict)  # by command, over the whole burst

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


@dataclass
class LoopLag:
    """S6: the probe's latency idle and during the hash flood, and the flood's sign-ins per second."""

    idle_p50_ms: float
    idle_p99_ms: float
    flood_p50_ms: float
    flood_p99_ms: float
    flood: Capacity


@contextlib.contextmanager
def on_core(cpu: str, pinning: bool) -> Iterator[None]:
    """This process on ``cpu`` for the block (the load side of mode A), then back where it was."""
    before = os.sched_getaffinity(0)
    if pinning:
        os.sched_setaffinity(0, {int(cpu)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Burst:
    """Requests sent ``concurrency`` at a time: their answers, latencies (ms), wall time and the sender's CPU time."""

    statuses: dict[int, int]
    latencies: list[float]
    seconds: float
    load_cpu_seconds: float


def _measured(burst: Burst, ticks: int, redis_calls: dict[str, int] | None = None) -> Capacity:
    """A burst's figures, with the gateway's CPU ticks over it (and the Redis commands it caused, by name)."""
    requests, gateway_cpu_seconds = len(burst.latencies), ticks / CLK_TCK
    return Capacity(
        requests=requests,
        statuses=burst.statuses,
        seconds=burst.seconds,
        cpu_us_per_request=gateway_cpu_seconds * 1e6 / requests,
        p50_ms=statistics.median(burst.latencies),
        p99_ms=_percentile(burst.latencies, 0.99),
        gateway_cpu_percent=100 * gateway_cpu_seconds / burst.seconds,
        load_cpu_percent=100 * burst.load_cpu_seconds / burst.seconds,
        redis_per_request=None if redis_calls is None else sum(redis_calls.values()) / requests,
        redis_calls=redis_calls or {},
    )


async def seed_enrollments(config_path: Path, count: int, prefix: str) -> tuple[TotpParams, list[tuple[str, str]]]:
    """``count`` active TOTP enrollments (users ``{prefix}00000`` on) in the store of the gateway configured by
    ``config_path``, with its TOTP settings: those settings and the (user, secret) pairs."""
    runtime = build_runtime(config.load_settings(config_path))
    try:
        return runtime.mfa.policy.params, await seed_into(runtime, count, prefix)
    finally:
        await runtime.close()


async def seed_into(runtime: Runtime, count: int, prefix: str) -> list[tuple[str, str]]:
    """``count`` active TOTP enrollments written into ``runtime``'s store: the (user, secret) pairs."""
    params, seeded, now = runtime.mfa.policy.params, [], time.time()
    for n in range(count):
        user, secret = f"{prefix}{n:05d}", totp.generate_secret()
        ciphertext = await runtime.cipher.encrypt(secret.encode(), context=user)
        enrollment = Enrollment(
            user_id=user,
            secret_ciphertext=ciphertext,
            key_id=runtime.cipher.key_id_of(ciphertext),
            params=params,
            status=EnrollmentStatus.PENDING,
            created_at=now,
        )
        await runtime.store.save_pending(enrollment, [])
        await runtime.store.activate(user, now)
        seeded.append((user, secret))
    return seeded


Body = dict[str, Any] | Callable[[], dict[str, Any]]
"""A request's JSON body, or what makes it when it is sent (a TOTP code current then)."""


def _current_code(secret: str, params: TotpParams) -> dict[str, Any]:
    """The body of a step-up, with the code of the step the request is sent in: a slow run (a busy machine) must not
    send codes that expired while the requests before them were answered."""
    return {"token": totp.code_at(secret, params, totp.time_step(time.time(), params))}


async def _burst(url: str, calls: list[tuple[dict[str, str], Body]], concurrency: int) -> Burst:
    """POST every (headers, body) ``concurrency`` at a time."""
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    queue = iter(calls)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def worker() -> None:
            for headers, body in queue:
                started = time.perf_counter()
                sent = body() if callable(body) else body
                async with client.post(url, json=sent, headers=headers) as response:
                    await response.read()
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[response.status] = statuses.get(response.status, 0) + 1

        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Burst(statuses, latencies, time.perf_counter() - started, time.process_time() - cpu_started)


def s5(setup: Setup, users: int, concurrency: int, gateway_name: str = "gw") -> Capacity:
    """Each seeded user steps up once with its current code, at the gateway ``gateway_name`` (its own users: the
    gateways share one Redis, where another's replay marks would refuse them)."""
    config_path = setup.workdir / ("gateway.yaml" if gateway_name == "gw" else f"gateway-{gateway_name}.yaml")
    params, seeded = asyncio.run(seed_enrollments(config_path, users, f"s5-{gateway_name}-"))
    assert setup.keyring is not None and setup.session is not None
    calls = []
    now = time.time()  # the sign-in's session is as old as the whole run: each first factor starts now
    for user, secret in seeded:
        first_factor = dataclasses.replace(
            setup.session,
            user_id=user,
            sid=new_session_id(),
            methods=("password",),
            mfa_time=None,
            auth_time=now,
            issued_at=now,
            last_seen=now,
        )
        cookie = {"Cookie": f"__Host-mfa_session={seal(first_factor, setup.keyring)}"}
        calls.append((cookie, functools.partial(_current_code, secret, params)))
    gateway = setup.procs.procs[gateway_name]
    url = f"http://127.0.0.1:{setup.ports[gateway_name]}/_mfa/api/mfa/challenge"
    redis_before = redis_commandstats(setup.ports["redis"])
    ticks_before = gateway.cpu_ticks()
    with on_core(LOAD_CPU, setup.procs.pinning):
        burst = asyncio.run(_burst(url, calls, concurrency))
    ticks = gateway.cpu_ticks() - ticks_before
    return _measured(burst, ticks, redis_calls=redis_calls_since(setup.ports["redis"], redis_before))


async def _probe(url: str, stop: asyncio.Event, latencies: list[float]) -> None:
    """``GET url`` one request at a time until ``stop``: the latency of a request that does nothing."""
    async with aiohttp.ClientSession() as client:
        while not stop.is_set():
            started = time.perf_counter()
            async with client.get(url) as response:
                await response.read()
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.002)


async def _s6(setup: Setup, passwords: dict[str, str], rounds: int, idle: float) -> LoopLag:
    gateway = setup.procs.procs["gw"]
    base = f"http://127.0.0.1:{setup.ports['gw']}/_mfa"
    stop, idle_latencies = asyncio.Event(), []
    probe = asyncio.create_task(_probe(base + "/healthz", stop, idle_latencies))
    await asyncio.sleep(idle)
    stop.set()
    await probe
    logins = [{"username": user, "password": password} for user, password in passwords.items()]
    calls: list[tuple[dict[str, str], Body]] = [({}, login) for _ in range(rounds) for login in logins]
    stop, flood_latencies = asyncio.Event(), []
    probe = asyncio.create_task(_probe(base + "/healthz", stop, flood_latencies))
    ticks_before = gateway.cpu_ticks()
    burst = await _burst(base + "/api/login", calls, len(passwords) * S6_PER_USER)
    ticks = gateway.cpu_ticks() - ticks_before
    stop.set()
    await probe
    flood = _measured(burst, ticks)
    return LoopLag(
        idle_p50_ms=statistics.median(idle_latencies),
        idle_p99_ms=_percentile(idle_latencies, 0.99),
        flood_p50_ms=statistics.median(flood_latencies),
        flood_p99_ms=_percentile(flood_latencies, 0.99),
        flood=flood,
    )


def s6(setup: Setup, passwords: dict[str, str], rounds: int, idle: float = 2.0) -> LoopLag:
    """A sign-in flood of ``rounds`` x every user in ``passwords``, probed for event-loop lag."""
    with on_core(LOAD_CPU, setup.procs.pinning):
        return asyncio.run(_s6(setup, passwords, rounds, idle))
