"""S7 (the soak) and the gateway's memory with 1,000 idle keep-alive connections (BENCHMARK.md).

S7: ``h2load --h1`` with 1,000 keep-alive clients at a fixed rate (60 % of S3's capacity measured in the same run)
against the gateway with a valid session cookie, for ``seconds`` (3 minutes by default, 10 on request). Sampled:
the gateway's RSS and open file descriptors (``/proc/<pid>/fd``) before the load, once the load is settled (the
start) and just before it ends; reported: RSS growth from start to end, errors, latency.

Idle: ``count`` connections opened to the gateway from this process, one request each (valid cookie, keep-alive),
then left idle; RSS of every worker process sampled before and with them open.

Used by bench/run.py; ``rss_growth`` and ``read_response`` are unit-tested in tests/unit/bench/.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import latency
from common import CLK_TCK

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
Proc = Any  # bench/run.py's Proc: a started process and its tree (pids(), cpu_ticks())


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
    return 0


def fd_count(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    return total


def worker_pids(proc: Proc) -> list[int]:
    """The processes of ``proc``'s tree that serve requests (multiprocessing's resource tracker left out)."""
    pids = []
    for pid in proc.pids():
        with contextlib.suppress(OSError):
            if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            pids.append(pid)
    return pids


def rss_growth(start_kib: float, end_kib: float) -> float:
    """Growth from start to end in percent of start (negative when memory was returned)."""
    if start_kib <= 0:
        raise ValueError("no start RSS")
    return 100 * (end_kib - start_kib) / start_kib


@dataclass
class Soak:
    seconds: float
    clients: int
    figures: latency.Figures
    rss_kib: dict[str, int]  # "before" (no load), "start" (load settled), "end"
    fds: dict[str, int]
    cpu_percent: float  # the gateway's, of one core, over the whole soak: near 100, it was the limit

    @property
    def growth_percent(self) -> float:
        return rss_growth(self.rss_kib["start"], self.rss_kib["end"])


def soak(
    proc: Proc,
    urls: Path,
    *,
    rate: float,
    seconds: float,
    headers: dict[str, str],
    pin: bool,
    workdir: Path,
    clients: int = 1000,
    warmup: float = 5.0,
) -> Soak:
    """``rate`` requests per second from ``clients`` keep-alive clients for ``seconds``, sampling ``proc``."""

    def sample(into: dict[str, int], fds: dict[str, int], name: str) -> None:
        pids = worker_pids(proc)
        into[name] = sum(rss_kib(pid) for pid in pids)
        fds[name] = fd_count(pids)

    rss: dict[str, int] = {}
    fds: dict[str, int] = {}
    sample(rss, fds, "before")
    settle = min(15.0, seconds / 6)
    started = latency.start(
        urls, rate=rate, seconds=seconds, warmup=warmup, headers=headers, pin=pin, clients=clients, workdir=workdir
    )
    began, ticks = time.monotonic(), proc.cpu_ticks()
    try:
        time.sleep(warmup + settle)
        sample(rss, fds, "start")
        time.sleep(max(0.0, began + warmup + seconds - 2 - time.monotonic()))
        sample(rss, fds, "end")
    finally:
        figures = latency.finish(started)
    cpu_seconds = (proc.cpu_ticks() - ticks) / CLK_TCK
    return Soak(seconds, clients, figures, rss, fds, 100 * cpu_seconds / (time.monotonic() - began))


def read_response(sock: socket.socket) -> int:
    """Reads one HTTP/1.1 response with a ``Content-Length`` (or none, for an empty body) from ``sock``; its
    status. The connection stays open for the next request."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response's headers")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding":
            raise ConnectionError("a chunked response: read_response reads Content-Length bodies only")
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the body")
        body += chunk
    return status


@dataclass
class IdleRss:
    connections: int
    before_kib: dict[int, int]  # per worker pid
    idle_kib: dict[int, int]
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def worst_mib(self) -> float:
        return max(self.idle_kib.values()) / 1024


def idle_rss(proc: Proc, port: int, headers: dict[str, str], count: int = 1000, settle: float = 2.0) -> IdleRss:
    """``count`` keep-alive connections to ``port``, one ``GET /`` each, held idle while ``proc``'s workers'
    RSS is sampled; then closed."""
    pids = worker_pids(proc)
    before = {pid: rss_kib(pid) for pid in pids}
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n{lines}\r\n".encode()
    sockets: list[socket.socket] = []
    statuses: dict[int, int] = {}
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sockets.append(sock)
            sock.sendall(request)
            status = read_response(sock)
            statuses[status] = statuses.get(status, 0) + 1
        time.sleep(settle)
        idle = {pid: rss_kib(pid) for pid in pids}
        for sock in sockets:  # every connection must still be open: a closed one would not count
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                if sock.recv(1) == b"":
                    raise ConnectionError("the gateway closed an idle keep-alive connection during the sample")
    finally:
        for sock in sockets:
            sock.close()
    return IdleRss(count, before, idle, statuses)


SOAK_GROWTH_LIMIT = 5.0  # % of the start RSS (BENCHMARK.md)


def soak_lines(result: Soak, capacity: float, load: float) -> list[str]:
    f, rss, fds = result.figures, result.rss_kib, result.fds
    return [
        f"S7, soak: {result.seconds / 60:g} min at {f.rate:,.0f} req/s ({load * 100:.0f} % of S3's {capacity:,.0f} "
        f"req/s at 50 connections, this run) from {result.clients:,} keep-alive clients (h2load --h1 --rps), "
        f"valid session cookie, gateway of S3 (1 worker, core 0): {f.requests:,} requests ({f.achieved:,.0f}/s), "
        f"**{f.errors} errors**, p50 {f.p50_ms:.2f} ms, p99 {f.p99_ms:.2f} ms, max {f.max_ms:.0f} ms. "
        f"RSS {rss['before'] / 1024:.1f} MiB before the load, {rss['start'] / 1024:.1f} MiB once it settled, "
        f"{rss['end'] / 1024:.1f} MiB at the end: **{result.growth_percent:+.1f} %**; open file descriptors "
        f"{fds['before']}, {fds['start']}, {fds['end']}; gateway CPU {result.cpu_percent:.0f} % of its core over the "
        "soak (warm-up included). (The cookie is re-sealed once a minute after its first "
        "minute, as for a browser that ignores Set-Cookie: h2load keeps no cookies.)",
    ]


def idle_lines(result: IdleRss) -> list[str]:
    before = ", ".join(f"{kib / 1024:.1f}" for kib in result.before_kib.values())
    idle = ", ".join(f"{kib / 1024:.1f}" for kib in result.idle_kib.values())
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(result.statuses.items()))
    return [
        f"RSS with {result.connections:,} idle keep-alive connections to S3's gateway (1 worker holding all of them; "
        f"one `GET /` with a valid cookie each, answers {statuses}, then idle): **{idle} MiB** per worker, "
        f"{before} MiB before they opened.",
    ]
