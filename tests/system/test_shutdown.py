"""Graceful shutdown of a real `mfa-gateway serve` process: stop accepting, finish what is in flight, exit 0."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.helpers.gateway import FAST_HASHING, write_keys
from tests.helpers.servers import bound_port, start_gateway
from tests.helpers.support import eventually


async def test_sigterm_finishes_in_flight_requests_and_refuses_new_ones(tmp_path: Path) -> None:
    """SIGTERM while a proxied request waits on the app: the gateway stops listening at once, the request still
    completes with the app's answer, and the process exits 0."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()  # the test decides when the app answers: no sleeping
        return web.Response(text="finished after SIGTERM")

    app = web.Application()
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    app_port = bound_port(runner)
    document = {
        "admin": {"enabled": False},
        "upstream": {"url": f"http://127.0.0.1:{app_port}"},
        "policy": {"default": "bypass"},
        "identity": {"source": "builtin", "users_file": "users.yaml"},
        "store": {"url": "sqlite+aiosqlite:///mfa.db"},
        "hashing": FAST_HASHING,
        "secrets": write_keys(tmp_path / "keys"),
        "audit": {"path": "audit.log", "store": False},
    }
    (tmp_path / "users.yaml").write_text("users: {}\n")
    try:
        gateway = await asyncio.to_thread(start_gateway, document, tmp_path / "gateway.yaml", tmp_path / "serve.log")
    except BaseException:
        await runner.cleanup()
        raise
    process, port = gateway.process, gateway.port
    try:
        async with aiohttp.ClientSession() as session:
            in_flight = asyncio.create_task(session.get(f"http://127.0.0.1:{port}/slow"))
            await asyncio.wait_for(arrived.wait(), 10)
            process.send_signal(signal.SIGTERM)

            async def refused() -> bool:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    return True
                writer.close()
                await writer.wait_closed()
                return False

            await eventually(
                refused, "the gateway to stop accepting connections after SIGTERM", within=4, interval=0.02
            )
            release.set()
            response = await asyncio.wait_for(in_flight, 10)
            assert response.status == 200 and await response.text() == "finished after SIGTERM"
            response.release()
        assert await asyncio.to_thread(process.wait, 20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        await runner.cleanup()
