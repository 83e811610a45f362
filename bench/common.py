"""What the bench scripts share: the cores of mode A, CPU ticks, nginx configurations, and Redis command counts."""

from __future__ import annotations

import os
import socket
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
SUT_CPU, LOAD_CPU = "0", "1"
NGINX_TEMPLATES = Path(__file__).resolve().parent / "nginx"


def render(template: str, out: Path, values: dict[str, str | int]) -> Path:
    """bench/nginx/``template`` with each ``{{KEY}}`` replaced by its value, written to ``out``."""
    text = (NGINX_TEMPLATES / template).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    out.write_text(text)
    return out


def redis_commandstats(port: int) -> dict[str, int]:
    """Calls per command since the server started (RESP by hand: no client library needed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        data = b""
        while b"\r\n" not in data:
            data += sock.recv(65536)
        header, _, rest = data.partition(b"\r\n")
        size = int(header[1:])
        while len(rest) < size + 2:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    calls: dict[str, int] = {}
    for line in rest[:size].decode().splitlines():
        if line.startswith("cmdstat_"):
            name, _, stats = line.partition(":")
            fields = dict(part.split("=", 1) for part in stats.split(","))
            calls[name.removeprefix("cmdstat_")] = int(fields["calls"])
    return calls


def redis_calls_since(port: int, before: dict[str, int]) -> dict[str, int]:
    """Commands run since ``before`` (a ``redis_commandstats``), by name; the probe's own ``INFO`` left out."""
    return {
        name: count - before.get(name, 0)
        for name, count in redis_commandstats(port).items()
        if name != "info" and count - before.get(name, 0) > 0
    }
