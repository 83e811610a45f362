"""Where a proxied request's time goes, measured in one process (docs/performance.md, "The proxy hot path").

As ``auth_profile.py`` does for ``/_mfa/auth``: raw HTTP/1.1 requests are fed to aiohttp's own connection handler
over a transport that only counts what it is asked to write, so the server side runs as in a server without its
system calls. The upstream is real: the benchmark's U0 (nginx ``return 200``, ``bench/nginx/u0.conf``) in a process
of its own, reached over loopback by the proxy's pooled client session, so the client side of forwarding costs what
it costs in scenario S2/S3. Only this process's CPU time is counted (U0 runs elsewhere). Two applications:

* S2: the minimal proxy (``minimal_proxy.create_app``);
* S3: the gateway with a valid MFA session cookie (production mode, the bench's policy, 127.0.0.1 trusted).

    .venv/bin/python bench/proxy_profile.py                        CPU microseconds per request, both
    .venv/bin/python bench/proxy_profile.py --cprofile proxy.prof  and a cProfile of each loop (proxy.prof.gateway...)
    valgrind --tool=callgrind --instr-atstart=no .venv/bin/python bench/proxy_profile.py --callgrind --requests 2000

Run it under ``taskset -c 0`` (and ``flock /tmp/bench.lock``); U0 is pinned to core 1 when there is one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import minimal_proxy
import uvloop
from aiohttp import web
from auth_profile import CountingTransport, drive, instructions, started_gateway
from common import render

WARMUP = 2000
BODY_END = b"upstream\n"  # how U0's 40-byte body ends: the last byte of each answer


class AnsweringTransport(CountingTransport):
    """``CountingTransport`` for a proxied answer, written in several parts, the last after the upstream answered: it
    counts an answer when its last byte (the end of U0's body) is written."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = asyncio.Event()
        self.completed = 0

    @property
    def answers(self) -> int:
        return self.completed

    async def exchange(self, handler: asyncio.Protocol, raw: bytes) -> None:
        self.answered.clear()
        handler.data_received(raw)
        await asyncio.wait_for(self.answered.wait(), 5)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        if bytes(data[-len(BODY_END) :]) == BODY_END:
            self.completed += 1
            self.answered.set()

    def writelines(self, data: object) -> None:
        chunks = list(data)  # type: ignore[call-overload]
        self.write(b"".join(chunks))


async def proxied(runner: web.AppRunner, raw: bytes, args: argparse.Namespace, name: str) -> float:
    """``drive`` for a proxied request: its answer is complete once U0's body is written."""
    profile_to = f"{args.cprofile}.{name}" if args.cprofile else None
    return await drive(runner, raw, args.requests, args, name, transport=AnsweringTransport(), profile_to=profile_to)


def start_u0(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    conf = render("u0.conf", directory / "u0.conf", {"DIR": str(directory), "PORT": port, "NAME": "u0", "WORKERS": 1})
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    as_user = ["-g", "user root;"] if os.geteuid() == 0 else []
    pin = ["taskset", "-c", "1"] if (os.cpu_count() or 1) > 1 else []
    argv = [*pin, nginx, "-p", str(directory), "-c", str(conf), "-e", str(directory / "u0.err"), *as_user]
    proc = subprocess.Popen(argv, start_new_session=True)
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    raise SystemExit("U0 (nginx) did not start")


async def measure(args: argparse.Namespace, directory: Path, upstream: str) -> dict[str, float]:
    costs = {}
    host = "127.0.0.1:9090"
    s2 = web.AppRunner(minimal_proxy.create_app(upstream, 256, 15), access_log=None, handle_signals=False)
    await s2.setup()
    raw = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    costs["minimal"] = await proxied(s2, raw, args, "minimal")
    await s2.cleanup()

    runner, cookie = await started_gateway(directory, upstream={"url": upstream})
    raw = f"GET / HTTP/1.1\r\nHost: {host}\r\nCookie: __Host-mfa_session={cookie}\r\n\r\n".encode()
    costs["gateway"] = await proxied(runner, raw, args, "gateway")
    await runner.cleanup()
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20000, help="measured requests per application")
    parser.add_argument("--cprofile", help="write cProfiles of the measured loops to FILE.minimal and FILE.gateway")
    parser.add_argument("--callgrind", action="store_true", help="count instructions (run under callgrind)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mfa-proxy-profile-") as name:
        directory = Path(name)
        u0, port = start_u0(directory)
        try:
            costs = uvloop.run(measure(args, directory, f"http://127.0.0.1:{port}"))
        finally:
            os.killpg(u0.pid, signal.SIGTERM)
            u0.wait(10)
    for key, label in (("minimal", "S2 minimal proxy"), ("gateway", "S3 gateway, valid MFA session")):
        print(f"{label}: {costs[key]:.1f} us CPU per request")
    extra, ratio = costs["gateway"] - costs["minimal"], costs["minimal"] / costs["gateway"]
    print(f"S3 - S2: {extra:+.1f} us CPU per request; S2/S3 (CPU): {ratio:.2f}")
    if args.callgrind:
        print("instructions per request:", ", ".join(instructions(args.requests)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
