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
import cProfile
import gc
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
from auth_profile import CountingTransport, callgrind, instructions, started_gateway

BENCH = Path(__file__).resolve().parent
WARMUP = 2000
BODY_END = b"upstream\n"  # how U0's 40-byte body ends: the last byte of each answer


class AnsweringTransport(CountingTransport):
    """``CountingTransport`` that tells when an answer's last byte was written."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        if bytes(data[-len(BODY_END) :]) == BODY_END:
            self.answered.set()

    def writelines(self, data: object) -> None:
        chunks = list(data)  # type: ignore[call-overload]
        self.write(b"".join(chunks))


async def drive(runner: web.AppRunner, raw: bytes, requests: int, args: argparse.Namespace, name: str) -> float:
    """CPU microseconds per request over ``requests`` answers to ``raw`` on one keep-alive connection."""
    assert runner.server is not None
    handler = runner.server()
    transport = AnsweringTransport()
    handler.connection_made(transport)

    async def answer(count: int) -> None:
        for _ in range(count):
            transport.answered.clear()
            handler.data_received(raw)
            await asyncio.wait_for(transport.answered.wait(), 5)

    await answer(WARMUP)
    gc.collect()
    gc.freeze()  # as web.server does after start-up
    profile = cProfile.Profile() if args.cprofile else None
    if args.callgrind:
        callgrind("--zero")
        callgrind("--instr=on")
    started = time.process_time()
    if profile is not None:
        profile.enable()
    await answer(requests)
    if profile is not None:
        profile.disable()
        profile.dump_stats(f"{args.cprofile}.{name}")
    seconds = time.process_time() - started
    if args.callgrind:
        callgrind("--instr=off")
        callgrind(f"--dump={name}")
    handler.connection_lost(None)
    return seconds * 1e6 / requests


def start_u0(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    text = (BENCH / "nginx" / "u0.conf").read_text().replace("{{DIR}}", str(directory)).replace("{{PORT}}", str(port))
    conf = directory / "u0.conf"
    conf.write_text(text)
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
    costs["minimal"] = await drive(s2, raw, args.requests, args, "minimal")
    await s2.cleanup()

    runner, cookie = await started_gateway(directory, upstream={"url": upstream})
    raw = f"GET / HTTP/1.1\r\nHost: {host}\r\nCookie: __Host-mfa_session={cookie}\r\n\r\n".encode()
    costs["gateway"] = await drive(runner, raw, args.requests, args, "gateway")
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
