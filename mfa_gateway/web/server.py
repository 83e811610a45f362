"""Running the gateway: one or more worker processes on one port (SO_REUSEPORT), graceful shutdown on SIGTERM.

Each worker is a full gateway (its own connection pools and revocation feed); ``workers > 1`` therefore needs
Redis for shared state, which the config validation enforces.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import ssl
import tempfile
from collections.abc import Awaitable, Callable

from aiohttp import web

from mfa_gateway import logs
from mfa_gateway.config import Settings
from mfa_gateway.web.protocol import GatewayRunner

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # mfa_gateway.runtime.metrics reads it; not imported here, see serve()

log = logging.getLogger("mfa_gateway")
SHUTDOWN_TIMEOUT = 15.0
"""Seconds in-flight requests get to finish after SIGTERM before connections are closed."""

Extra = Callable[[], Awaitable[web.AppRunner]]


class ListenerUnavailable(Exception):
    """A listener could not bind its address: the message names the config key, the address and the fix."""


async def start_site(
    app: web.Application, host: str, port: int, *, reuse_port: bool = False, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    runner = GatewayRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port, backlog=1024, ssl_context=ssl_context).start()
    except OSError:
        await runner.cleanup()  # the app's cleanup_ctx ran at setup: undo it
        raise
    return runner


async def listen(
    app: web.Application,
    key: str,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    ssl_context: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """``start_site``, with a bind failure (port taken, address not local, no permission) told by its config key."""
    try:
        return await start_site(app, host, port, reuse_port=reuse_port, ssl_context=ssl_context)
    except OSError as exc:
        fix = "stop the program holding it or choose another port" if exc.errno == errno.EADDRINUSE else "fix it"
        reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()  # asyncio's strerror repeats the address
        raise ListenerUnavailable(f"{key}: cannot listen on {host}:{port}: {reason}; {fix}") from None


async def _serve(
    settings: Settings,
    *,
    reuse_port: bool,
    extra: Extra | None = None,
    admin: bool = True,
    workers: tuple[int, ...] = (),
) -> None:
    from mfa_gateway.runtime import build_runtime
    from mfa_gateway.web.admin_listener import create_admin_app
    from mfa_gateway.web.app import create_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runners = [await extra()] if extra is not None else []
    runtime = build_runtime(settings, require_secrets=False)

    def refresh_everywhere() -> asyncio.Future[None]:
        """Re-read every secret in this process, and have the other workers do the same (SIGHUP)."""
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)
        return asyncio.ensure_future(runtime.refresh_secrets())

    loop.add_signal_handler(signal.SIGHUP, lambda: _keep(refresh_everywhere(), "SIGHUP: refreshing secrets"))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # blocked by serve() until this handler exists
    try:
        where = settings.listen
        runners.append(await listen(create_app(runtime), "listen.port", where.host, where.port, reuse_port=reuse_port))
        if admin and settings.admin.enabled:
            admin_app = create_admin_app(runtime, refresh_everywhere)
            runners.append(await listen(admin_app, "admin.port", settings.admin.host, settings.admin.port))
    except ListenerUnavailable:
        for runner in reversed(runners):  # what did start stops cleanly (the app's cleanup closes the runtime)
            await runner.cleanup()
        raise
    if admin and settings.admin.enabled:
        log.info("admin listener (metrics) on http://%s:%d/metrics", settings.admin.host, settings.admin.port)
    # Everything built at start-up (config, keys, SQLAlchemy, pydantic models) lives as long as the process: moving
    # it out of the collector's reach keeps per-request garbage collection cheap on the hot path.
    gc.collect()
    gc.freeze()
    log.info("mfa-gateway listening on http://%s:%d", settings.listen.host, settings.listen.port)
    await stop.wait()
    log.info("shutting down: finishing in-flight requests")
    for runner in reversed(runners):
        await runner.cleanup()


def _keep(task: asyncio.Future[None], message: str) -> None:
    """Run a refresh started by a signal to its end (a task nobody holds could be collected mid-way)."""
    log.info(message)
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Future[None]] = set()


def run_worker(
    settings: Settings,
    reuse_port: bool = False,
    extra: Extra | None = None,
    admin: bool = True,
    workers: tuple[int, ...] = (),
) -> None:
    logs.configure(settings.log_level, settings.log_format)  # spawned workers start with no logging set up
    serving = _serve(settings, reuse_port=reuse_port, extra=extra, admin=admin, workers=workers)
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on every platform)
        asyncio.run(serving)
    else:
        uvloop.run(serving)


def serve(settings: Settings, extra: Extra | None = None) -> None:
    """Serve until SIGTERM/SIGINT, in ``settings.workers`` processes sharing the port.

    The first process also serves the admin listener; with several workers their metrics meet in a fresh
    directory (prometheus-client's multiprocess mode), made before any worker imports the metrics library. A
    SIGHUP to the first process, or the admin refresh endpoint, reaches every worker.
    """
    if settings.workers == 1:
        run_worker(settings, extra=extra)
        return
    # A SIGHUP (forwarded by the first worker, or sent to the process group) must not kill a worker that has not
    # installed its handler yet: workers inherit it blocked and unblock it once handled (pending ones then arrive).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    metrics_dir = tempfile.mkdtemp(prefix="mfa-gateway-metrics-")
    os.environ[MULTIPROCESS_ENV] = metrics_dir
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=run_worker, args=(settings, True, None, False), daemon=False)
        for _ in range(settings.workers - 1)
    ]
    for child in children:
        child.start()
    try:
        run_worker(settings, True, extra, workers=tuple(child.pid for child in children if child.pid is not None))
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
        for child in children:
            child.join(timeout=SHUTDOWN_TIMEOUT + 5)
        shutil.rmtree(metrics_dir, ignore_errors=True)
