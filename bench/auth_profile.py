"""Where a forward-auth answer's time goes, measured in one process without the network (docs/performance.md).

Raw HTTP/1.1 requests are fed to aiohttp's own connection handler over a transport that only counts what is
written: the request parser, the routing, the handler and the response writer all run as they do in a server, but
no system call does, so what is left is the Python and C work of one request, free of the noise a shared machine
puts into wall-clock runs. Two applications are measured the same way: the aiohttp hello-world of scenario A0
(``minimal_proxy.create_hello_app``) and the gateway answering ``/_mfa/auth`` with a valid MFA session (A1).

    .venv/bin/python bench/auth_profile.py                       CPU microseconds per request, both
    .venv/bin/python bench/auth_profile.py --cprofile auth.prof  and a cProfile of the gateway's loop only
    valgrind --tool=callgrind --instr-atstart=no .venv/bin/python bench/auth_profile.py --callgrind --requests 2000
                                                                 instructions per request (deterministic)

With ``--callgrind`` the script switches callgrind's instrumentation on for the measured loops only
(``callgrind_control``) and prints the instructions each loop took, read from the dumps it asks for.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import minimal_proxy
import uvloop
from aiohttp import web

from mfa_gateway import config
from mfa_gateway.core.keyring import new_keyring_document
from mfa_gateway.core.session import Session, seal
from mfa_gateway.core.tokens import new_signing_key_document
from mfa_gateway.runtime import build_runtime
from mfa_gateway.web.app import create_app
from mfa_gateway.web.protocol import GatewayRunner

WARMUP = 2000
TURNS = 2  # event-loop turns that take one request from bytes to a written answer


class CountingTransport(asyncio.Transport):
    """A connection whose peer is 127.0.0.1 (a trusted proxy) and whose writes are only counted: an answer the
    gateway makes itself is one write, written within ``TURNS`` turns of the event loop."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    @property
    def answers(self) -> int:
        return self.writes

    async def exchange(self, handler: asyncio.Protocol, raw: bytes) -> None:
        """Feed one request to ``handler`` and return once its answer is written."""
        handler.data_received(raw)
        for _ in range(TURNS):
            await asyncio.sleep(0)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 9090)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1

    def writelines(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def callgrind(command: str) -> None:
    """Ask the callgrind running this process to switch instrumentation on or off, or to dump its counts."""
    subprocess.run(["callgrind_control", command, str(os.getpid())], capture_output=True, check=False)


async def drive(
    runner: web.AppRunner,
    raw: bytes,
    requests: int,
    args: argparse.Namespace,
    name: str,
    *,
    transport: CountingTransport | None = None,
    profile_to: str | None = None,
) -> float:
    """CPU microseconds per request over ``requests`` answers to ``raw`` on one keep-alive connection (``transport``
    says when an answer is complete); with ``profile_to``, a cProfile of the measured loop is written there."""
    assert runner.server is not None
    handler = runner.server()
    transport = transport or CountingTransport()
    handler.connection_made(transport)

    async def answer(count: int) -> None:
        for _ in range(count):
            await transport.exchange(handler, raw)

    await answer(WARMUP)
    gc.collect()
    gc.freeze()  # as web.server does after start-up
    answered, profile = transport.answers, cProfile.Profile() if profile_to else None
    if args.callgrind:
        callgrind("--zero")  # zero the counters, then count the loop alone
        callgrind("--instr=on")
    started = time.process_time()
    if profile is not None:
        profile.enable()
    await answer(requests)
    if profile is not None and profile_to:
        profile.disable()
        profile.dump_stats(profile_to)
    seconds = time.process_time() - started
    if args.callgrind:
        callgrind("--instr=off")
        callgrind(f"--dump={name}")
    if transport.answers - answered != requests:
        raise SystemExit(f"{name}: {transport.answers - answered} answers written for {requests} requests")
    handler.connection_lost(None)
    return seconds * 1e6 / requests


def gateway_settings(directory: Path, **extra: Any) -> config.Settings:
    """The bench's gateway (bench/run.py): production mode, nginx on loopback trusted, policy default mfa; ``extra``
    top-level sections added (the proxy profile's ``upstream``)."""
    keys = directory / "keys"
    keys.mkdir()
    (keys / "keyring.json").write_text(new_keyring_document("k1"))
    (keys / "signing.json").write_text(new_signing_key_document("s1"))
    document = {
        "mode": "production",
        "log_level": "warning",
        "trusted_proxies": ["127.0.0.1/32"],
        "policy": {"default": "mfa"},
        "identity": {"source": "builtin", "users_file": "users.yaml"},
        "store": {"url": "sqlite+aiosqlite:///mfa.db"},
        "secrets": {"keyring": f"file:{keys / 'keyring.json'}", "signing_keys": f"file:{keys / 'signing.json'}"},
        **extra,
    }
    return config.parse_settings(document, base_dir=directory)


async def started_gateway(directory: Path, **extra: Any) -> tuple[web.AppRunner, str]:
    """The bench's gateway (``gateway_settings``) set up, not listening, and a fresh MFA session cookie's value."""
    runtime = build_runtime(gateway_settings(directory, **extra))
    runner = GatewayRunner(create_app(runtime), access_log=None, handle_signals=False)
    await runner.setup()
    if not await runtime.revocations.wait_healthy(5):
        raise SystemExit("the revocation view did not become healthy")
    now = time.time()
    session = Session.start("bench", ("pwd", "otp"), now=now, ttl=43200, auth_time=now, mfa_time=now)
    return runner, seal(session, runtime.keys.session_keyring)


async def measure(args: argparse.Namespace) -> dict[str, float]:
    costs = {}
    hello = web.AppRunner(minimal_proxy.create_hello_app(), access_log=None, handle_signals=False)
    await hello.setup()
    costs["hello"] = await drive(hello, b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", args.requests, args, "hello")
    await hello.cleanup()

    with tempfile.TemporaryDirectory(prefix="mfa-auth-profile-") as directory:
        runner, cookie = await started_gateway(Path(directory))
        raw = (
            f"GET /_mfa/auth HTTP/1.1\r\nHost: 127.0.0.1:9090\r\nCookie: __Host-mfa_session={cookie}\r\n"
            "X-Original-URL: http://127.0.0.1:8000/\r\nX-Original-Method: GET\r\n\r\n"
        ).encode()
        costs["auth"] = await drive(runner, raw, args.requests, args, "auth", profile_to=args.cprofile)
        await runner.cleanup()
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20000, help="measured requests per application")
    parser.add_argument("--cprofile", help="write a cProfile of the gateway's measured loop to this file")
    parser.add_argument("--callgrind", action="store_true", help="count instructions (run under callgrind)")
    args = parser.parse_args(argv)
    costs = uvloop.run(measure(args))
    for name, label in (("hello", "A0 aiohttp hello-world"), ("auth", "A1 gateway /_mfa/auth, valid session")):
        print(f"{label}: {costs[name]:.1f} us CPU per request")
    print(f"ratio A1/A0 (CPU): {costs['auth'] / costs['hello']:.2f}")
    if args.callgrind:
        print("instructions per request:", ", ".join(instructions(args.requests)), flush=True)
    return 0


def instructions(requests: int) -> list[str]:
    """The instructions per request of each measured loop, from the dumps callgrind wrote for this process."""
    found: list[str] = []
    dumps = [path for path in Path.cwd().iterdir() if path.name.startswith(f"callgrind.out.{os.getpid()}.")]
    for path in sorted(dumps, key=lambda path: path.stat().st_mtime):
        text = path.read_text()
        trigger = next((line for line in text.splitlines() if line.startswith("desc: Trigger:")), "")
        total = next((line for line in text.splitlines() if line.startswith("totals:")), "totals: 0")
        found.append(f"{trigger.rsplit(' ', 1)[-1]} {int(total.split()[1]) / requests:,.0f}")
    return found


if __name__ == "__main__":
    sys.exit(main())
