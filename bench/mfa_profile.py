"""Where a TOTP verification's time goes (S5), measured in one process without the network (docs/performance.md).

As ``auth_profile.py`` does for ``/_mfa/auth``: raw HTTP/1.1 requests are fed to the gateway's own connection
handlers over transports that only keep what is written, so the parser, the handler, the store, the state and the
response writer run as they do in a server, and no socket does. Each seeded user steps up once with
``POST /_mfa/api/mfa/challenge`` and its current code, ``--concurrency`` connections at a time, as S5 does; the
store is SQLite (or ``--postgres``, a throwaway cluster) and the state a Redis server of its own (or ``--memory``).
The CPU time is the whole process's, the store's worker threads included.

    .venv/bin/python bench/mfa_profile.py                        CPU microseconds per verification
    .venv/bin/python bench/mfa_profile.py --cprofile mfa.prof    and a cProfile of the event loop's thread
    valgrind --tool=callgrind --instr-atstart=no .venv/bin/python bench/mfa_profile.py --callgrind --users 500
                                                                 instructions per verification (deterministic)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvloop
from auth_profile import CountingTransport, callgrind, gateway_settings, instructions
from capacity import seed_into
from common import CLK_TCK

from mfa_gateway.core import totp
from mfa_gateway.core.session import Session, seal
from mfa_gateway.runtime import Runtime, build_runtime
from mfa_gateway.web.app import create_app
from mfa_gateway.web.protocol import GatewayRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class AnsweringTransport(CountingTransport):
    """A connection that remembers the status line of each answer and wakes whoever waits for the next one."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[bytes] = []
        self.answered = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        super().write(data)
        self.statuses.append(bytes(data[9:12]))
        self.answered.set()

    def writelines(self, data: Any) -> None:
        self.write(b"".join(data))


@contextlib.contextmanager
def servers(directory: Path, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """The gateway configuration's store and state sections, on servers of their own."""
    from tests.helpers.servers import running_postgres, running_redis

    with contextlib.ExitStack() as stack:
        sections: dict[str, Any] = {}
        if not args.memory:
            redis = stack.enter_context(running_redis(directory))
            sections["state"] = {"backend": "redis", "url": redis.url}
        if args.postgres:
            # A directory of its own, which running_postgres hands to the postgres user when we are root.
            pgdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mfa-profile-pg-"))
            postgres = stack.enter_context(running_postgres(Path(pgdir)))
            sections["store"] = {"url": postgres.url}
        yield sections


def step_up(runtime: Runtime, user: str, secret: str) -> bytes:
    """A first-factor session's ``POST /_mfa/api/mfa/challenge`` with the user's current code."""
    now = time.time()
    session = Session.start(user, ("pwd",), now=now, ttl=43200, auth_time=now)
    params = runtime.mfa.policy.params
    body = b'{"token": "%s"}' % totp.code_at(secret, params, totp.time_step(now, params)).encode()
    return (
        f"POST /_mfa/api/mfa/challenge HTTP/1.1\r\nHost: 127.0.0.1:9090\r\n"
        f"Cookie: __Host-mfa_session={seal(session, runtime.keys.session_keyring)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def verify_all(runner: GatewayRunner, requests: list[bytes], concurrency: int) -> int:
    """Every request sent once, ``concurrency`` connections at a time; the answers that were not 200."""
    assert runner.server is not None
    queue, refused = iter(requests), 0

    async def connection() -> None:
        nonlocal refused
        assert runner.server is not None
        handler, transport = runner.server(), AnsweringTransport()
        handler.connection_made(transport)
        for request in queue:
            transport.answered.clear()
            handler.data_received(request)
            await transport.answered.wait()
            refused += transport.statuses[-1] != b"200"
        handler.connection_lost(None)

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return refused


def thread_cpu() -> dict[str, float]:
    """Seconds of CPU of each of this process's Python threads so far, by name (``sqlite_0``... summed as
    ``sqlite``)."""
    seconds: dict[str, float] = {}
    for thread in threading.enumerate():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
            name = thread.name.rstrip("_0123456789")
            seconds[name] = seconds.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return seconds


async def measure(args: argparse.Namespace) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="mfa-profile-") as directory, servers(Path(directory), args) as sections:
        runtime = build_runtime(gateway_settings(Path(directory), **sections))
        runner = GatewayRunner(create_app(runtime), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            if not args.memory and not await runtime.revocations.wait_healthy(5):
                raise SystemExit("the revocation view did not become healthy")
            users = await seed_into(runtime, args.warmup + args.users, "p")
            requests = [step_up(runtime, user, secret) for user, secret in users]  # codes valid for a minute
            if await verify_all(runner, requests[: args.warmup], args.concurrency):
                raise SystemExit("warm-up: a step-up was refused")
            gc.collect()
            gc.freeze()
            print(f"measuring {args.users} step-ups ...", file=sys.stderr, flush=True)
            profile = cProfile.Profile() if args.cprofile else None
            started, threads = time.process_time(), thread_cpu()
            if profile is not None:
                profile.enable()
            if args.callgrind:
                callgrind("--zero")
                callgrind("--instr=on")
            refused = await verify_all(runner, requests[args.warmup :], args.concurrency)
            if profile is not None:
                profile.disable()
                profile.dump_stats(args.cprofile)
            seconds = time.process_time() - started
            if args.callgrind:
                callgrind("--instr=off")
                callgrind("--dump=s5")
            spent = {name: cpu - threads.get(name, 0.0) for name, cpu in thread_cpu().items()}
            if refused:
                raise SystemExit(f"{refused} of {args.users} step-ups were refused")
            return seconds * 1e6 / args.users, {name: cpu * 1e6 / args.users for name, cpu in spent.items() if cpu}
        finally:
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=3000, help="measured step-ups, one per seeded user")
    parser.add_argument("--warmup", type=int, default=500, help="step-ups before the measured ones")
    parser.add_argument("--concurrency", type=int, default=50, help="connections stepping up at once (S5: 50)")
    parser.add_argument("--postgres", action="store_true", help="the store on a throwaway PostgreSQL cluster")
    parser.add_argument("--memory", action="store_true", help="in-memory state instead of a Redis server")
    parser.add_argument("--cprofile", help="write a cProfile of the event loop's thread to this file")
    parser.add_argument("--callgrind", action="store_true", help="count instructions (run under callgrind)")
    args = parser.parse_args(argv)
    cost, threads = uvloop.run(measure(args))
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"S5 in-process ({store}, {'memory' if args.memory else 'Redis'} state, {args.concurrency} at a time): "
        f"{cost:.0f} us CPU per verification, {1e6 / cost:.0f} per core per second"
    )
    if args.callgrind:
        print("instructions per verification:", ", ".join(instructions(args.users)), flush=True)
    print("by thread:", ", ".join(f"{name} {us:.0f} us" for name, us in sorted(threads.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
