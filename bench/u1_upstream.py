"""U1, the benchmark's slow upstream: every answer waits 10 ms, then sends a body of 4-16 KB (BENCHMARK.md).

nginx cannot wait before answering, so U1 is a small aiohttp app. The body's size is a pure function of the request
path (``body_size``), so a run that cycles through a fixed list of paths (``paths``) sends the same mix of sizes
through every scenario, and a size can be checked from the outside.

    python bench/u1_upstream.py --port 8082 [--delay-ms 10]
"""

from __future__ import annotations

import argparse
import asyncio
import zlib

import uvloop
from aiohttp import web
from minimal_proxy import serve_until_stopped

MIN_BODY, MAX_BODY = 4096, 16384
DELAY = web.AppKey("delay", float)


def body_size(path: str) -> int:
    """4,096 to 16,384 bytes, the same for the same path (CRC-32 of the path, spread over the range)."""
    return MIN_BODY + zlib.crc32(path.encode()) % (MAX_BODY - MIN_BODY + 1)


def paths(count: int = 64) -> list[str]:
    """The paths a fixed-rate run cycles through: ``/u1/0`` ... , sizes spread over the whole range."""
    return [f"/u1/{n}" for n in range(count)]


BODY = b"u" * MAX_BODY


async def answer(request: web.Request) -> web.Response:
    await asyncio.sleep(request.app[DELAY])
    return web.Response(body=BODY[: body_size(request.path)], content_type="text/plain")


def create_app(delay: float) -> web.Application:
    app = web.Application()
    app[DELAY] = delay
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


async def serve(args: argparse.Namespace) -> None:
    await serve_until_stopped(create_app(args.delay_ms / 1000), args.host, args.port, "U1", backlog=4096)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=10.0, help="wait before answering (default 10)")
    uvloop.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
