"""The gateway in front of the bundled legacy app, both served on loopback, with injected time.

``raw`` sends a request exactly as written (no client-side URL normalisation), for path and header tricks.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mfa_gateway import demo
from mfa_gateway.adapters.audit import MemoryAudit
from mfa_gateway.config import Settings
from mfa_gateway.demo_app import create_demo_app
from mfa_gateway.runtime import Runtime
from mfa_gateway.web.app import create_app
from mfa_gateway.web.server import start_site
from tests.helpers.gateway import FakeClock, current_code, make_runtime, make_settings
from tests.helpers.servers import bound_port
from tests.helpers.support import merge_overrides

APP_USERS = {"alice": "alice-password", "bob": "bob-password"}


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def cookies(self) -> dict[str, str]:
        jar = {}
        for name, value in self.headers:
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                jar[key.strip()] = rest.split(";", 1)[0]
        return jar


@dataclass
class Stack:
    gateway_port: int
    app_port: int
    runtime: Runtime
    audit: MemoryAudit
    clock: FakeClock
    settings: Settings
    jar: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    async def raw(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        body: bytes = b"",
        *,
        cookies: dict[str, str] | None = None,
        keep: bool = True,
        hosts: tuple[str, ...] | None = None,
        version: str = "1.1",
    ) -> RawResponse:
        """Send one request (HTTP/1.1 unless ``version``) byte for byte; keep Set-Cookie values in ``jar`` if ``keep``.

        ``headers`` as a list sends repeated names; ``hosts`` replaces the gateway's own ``Host`` line (``()``: no
        ``Host`` at all, two values: two lines)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.gateway_port)
        try:
            host_lines = [
                f"Host: {host}" for host in (hosts if hosts is not None else (f"127.0.0.1:{self.gateway_port}",))
            ]
            lines = [f"{method} {target} HTTP/{version}", *host_lines, "Connection: close"]
            jar = self.jar if cookies is None else cookies
            if jar:
                lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in jar.items()))
            for name, value in headers.items() if isinstance(headers, dict) else headers or ():
                lines.append(f"{name}: {value}")
            if body:
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
            await writer.wait_closed()
        response = parse_response(data)
        if keep and cookies is None:
            for name, value in response.cookies().items():
                if value and value != '""':  # a deleted cookie comes back as name=""; Max-Age=0
                    self.jar[name] = value
                else:
                    self.jar.pop(name, None)
        return response

    async def send(self, data: bytes, *, half_close: bool = False) -> bytes:
        """Write ``data`` as it is (no request line or header added) and read until the gateway closes; with
        ``half_close``, shut down the sending side first, as a client does when its body ends early."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.gateway_port)
        try:
            writer.write(data)
            await writer.drain()
            if half_close:
                writer.write_eof()
            return await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def code(self, secret: str, offset: int = 0) -> str:
        return current_code(secret, self.clock, offset=offset)

    async def form(self, path: str, fields: dict[str, str], **kwargs: Any) -> RawResponse:
        from urllib.parse import urlencode

        return await self.raw(
            "POST", path, {"Content-Type": "application/x-www-form-urlencoded"}, urlencode(fields).encode(), **kwargs
        )

    async def csrf_form(self, page: str, action: str, fields: dict[str, str]) -> RawResponse:
        """Load a gateway page (to get its CSRF token), then submit its form."""
        shown = await self.raw("GET", page, {"Accept": "text/html"})
        token = re.search(rb'name="csrf" value="([^"]+)"', shown.body)
        assert token is not None, shown.body[:500]
        return await self.form(action, {**fields, "csrf": token.group(1).decode()})

    async def app_login(self, user: str = "alice", next_path: str = "/admin") -> RawResponse:
        return await self.form("/login", {"username": user, "password": APP_USERS[user], "next": next_path})

    async def enroll_via_pages(self) -> tuple[str, list[str]]:
        """After an intercepted login: set up TOTP through the pages; returns the secret and backup codes."""
        setup = await self.csrf_form("/_mfa/enroll?rd=/admin", "/_mfa/enroll", {"rd": "/admin"})
        assert setup.status == 200, setup.body[:500]
        key = re.search(rb'id="manual-key"[^>]*>([A-Z2-7 ]+)<', setup.body)
        codes = re.findall(rb"<li>([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})</li>", setup.body)
        assert key is not None and len(codes) == 10
        secret = key.group(1).decode().replace(" ", "")
        token = re.search(rb'name="csrf" value="([^"]+)"', setup.body)
        assert token is not None
        confirmed = await self.form(
            "/_mfa/enroll/confirm", {"code": self.code(secret), "rd": "/admin", "csrf": token.group(1).decode()}
        )
        assert confirmed.status == 303, confirmed.body[:500]
        return secret, [c.decode() for c in codes]


def parse_response(data: bytes) -> RawResponse:
    """One HTTP/1.1 response as read from the socket (the body as it came, not de-chunked)."""
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in header_lines)]
    return RawResponse(int(status_line.split()[1]), parsed, payload)


StackFactory = Callable[..., Awaitable[Stack]]

TEST_APP_BYPASS = {"name": "public", "path": r"^/(public|static/.*|login|ws|slow|upload)?$", "action": "bypass"}


def intercepting(app_url: str) -> dict[str, Any]:
    """The demo's login-interception settings (one definition: ``demo.in_front_of``), with the test app's extra
    public routes (WebSocket, slow and upload endpoints) bypassed."""
    settings = demo.in_front_of(app_url)
    rules = [TEST_APP_BYPASS if rule["name"] == "public pages" else rule for rule in settings["policy"]["rules"]]
    assert TEST_APP_BYPASS in rules, "demo.in_front_of has no 'public pages' rule to widen"
    return {**settings, "policy": {**settings["policy"], "rules": rules}}


@pytest.fixture
async def make_stack(tmp_path: Path) -> AsyncIterator[StackFactory]:
    runners: list[web.AppRunner] = []

    async def factory(
        overrides: dict[str, Any] | None = None, *, name: str = "gw", app_port: int | None = None
    ) -> Stack:
        """A gateway in front of a new demo app, or in front of the app already at ``app_port`` (replicas)."""
        if app_port is None:
            app_runner = await start_site(create_demo_app(APP_USERS), "127.0.0.1", 0)
            runners.append(app_runner)
            app_port = bound_port(app_runner)
        merged = merge_overrides(intercepting(f"http://127.0.0.1:{app_port}"), overrides or {})
        settings = make_settings(tmp_path / name, merged)
        clock = FakeClock()
        runtime, audit = make_runtime(settings, clock)
        gateway_runner = await start_site(create_app(runtime), "127.0.0.1", 0)
        runners.append(gateway_runner)
        gateway_port = bound_port(gateway_runner)
        if not await runtime.revocations.wait_healthy(5.0):  # healthy on its first event-loop turns
            pytest.fail("the gateway's revocation view did not become healthy")
        return Stack(gateway_port, app_port, runtime, audit, clock, settings)

    yield factory
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    return await make_stack()
