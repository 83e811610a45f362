"""What a reverse proxy must get right: streaming, WebSockets, hop-by-hop headers, forwarding headers, errors."""

from __future__ import annotations

import hashlib
import json
import resource
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers.support import eventually
from tests.integration.proxy.conftest import Stack, StackFactory

CHUNK = b"\x5a" * (1 << 20)


async def _chunks(count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield CHUNK


async def test_a_large_upload_streams_through_with_flat_memory(stack: Stack) -> None:
    """512 MiB pass client → gateway → app intact, and the process grows by far less than the body."""
    count = 512
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            stack.url + "/upload", data=_chunks(count), headers={"Content-Type": "application/octet-stream"}
        ) as response,
    ):
        body = await response.json()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    expected = hashlib.sha256()
    for _ in range(count):
        expected.update(CHUNK)
    assert body == {"bytes": count * len(CHUNK), "sha256": expected.hexdigest()}
    assert grown_mib < 64, f"peak RSS grew {grown_mib:.0f} MiB for a {count} MiB upload"


async def test_websockets_pass_through(stack: Stack) -> None:
    """A WebSocket to the app through the gateway echoes text and binary frames."""
    async with aiohttp.ClientSession() as session, session.ws_connect(stack.url + "/ws") as ws:
        await ws.send_str("hello")
        assert (await ws.receive(timeout=5)).data == "hello"
        await ws.send_bytes(b"\x00\x01")
        assert (await ws.receive(timeout=5)).data == b"\x00\x01"


async def test_hop_by_hop_and_connection_named_headers_are_removed(make_stack: StackFactory) -> None:
    """Keep-Alive, TE, Proxy-Authorization and any header named in Connection never reach the app."""
    stack = await make_stack({"policy": {"rules": [{"path": "^/api/whoami$", "action": "bypass"}]}})
    response = await stack.raw(
        "GET",
        "/api/whoami",
        {
            "Connection": "close, X-Forwarded-Secret",
            "X-Forwarded-Secret": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic eDp5",
        },
    )
    seen = json.loads(response.body)["identityHeaders"]
    assert "x-forwarded-secret" not in seen


async def test_forwarding_headers_are_set_and_client_copies_not_trusted(make_stack: StackFactory) -> None:
    """X-Forwarded-For/Proto/Host describe the real peer; a client's own X-Forwarded-For is not believed."""
    stack = await make_stack({"policy": {"rules": [{"path": "^/api/whoami$", "action": "bypass"}]}})
    response = await stack.raw(
        "GET",
        "/api/whoami",
        {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "evil", "X-Forwarded-Proto": "https"},
    )
    seen = json.loads(response.body)["identityHeaders"]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{stack.gateway_port}"


async def test_upstream_down_is_502_and_the_gateway_stays_healthy(make_stack: StackFactory) -> None:
    """The app unreachable: 502 as JSON for APIs and as a page for browsers; healthz still answers."""
    from tests.helpers.servers import free_port

    stack = await make_stack({"upstream": {"url": f"http://127.0.0.1:{free_port()}"}})
    api = await stack.raw("GET", "/public", {"Accept": "application/json"})
    assert api.status == 502 and json.loads(api.body)["code"] == "upstream_unavailable"
    page = await stack.raw("GET", "/public", {"Accept": "text/html"})
    assert page.status == 502 and b"<!doctype html>" in page.body
    assert (await stack.raw("GET", "/_mfa/healthz")).status == 200


async def test_upstream_timeout_is_504(make_stack: StackFactory) -> None:
    """An app silent for longer than upstream.read_timeout gives 504."""
    stack = await make_stack({"upstream": {"read_timeout": 0.3}})
    response = await stack.raw("GET", "/slow?ms=3000", {"Accept": "application/json"})
    assert response.status == 504 and json.loads(response.body)["code"] == "upstream_timeout"


async def test_responses_pass_unchanged(stack: Stack) -> None:
    """The app's status, headers and body come back as sent; the gateway adds none of its own page headers."""
    direct_headers = {}
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{stack.app_port}/public") as direct:
        direct_body = await direct.read()
        direct_headers = dict(direct.headers)
    proxied = await stack.raw("GET", "/public")
    assert proxied.status == 200 and proxied.body == direct_body
    assert proxied.header("Content-Security-Policy") == direct_headers["Content-Security-Policy"]


async def test_redis_down_fails_closed_and_recovers(
    make_stack: StackFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Redis stopped: protected routes 503 (revocations cannot be trusted), through the proxy and through
    forward-auth, bypass routes serve; Redis back: MFA routes work again without a restart."""
    from tests.helpers.servers import running_redis

    with running_redis(tmp_path_factory.mktemp("redis")) as redis_server:
        stack = await make_stack(
            {
                "state": {"backend": "redis", "url": redis_server.url},
                "trusted_proxies": ["127.0.0.1/32"],  # so forward-auth answers this test's requests
            }
        )
        await stack.app_login()
        await stack.enroll_via_pages()
        assert (await stack.raw("GET", "/admin")).status == 200
        redis_server.stop()
        revocations = stack.runtime.revocations
        await eventually(lambda: not revocations.healthy, "the revocation feed to notice Redis is gone", within=10)
        down = await stack.raw("GET", "/admin", {"Accept": "application/json"})
        assert down.status == 503 and json.loads(down.body)["code"] == "dependency_unavailable"
        asked = {"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.test"}
        auth = await stack.raw("GET", "/_mfa/auth", {**asked, "X-Forwarded-Uri": "/admin"})
        assert auth.status == 503 and json.loads(auth.body)["code"] == "dependency_unavailable"  # forward-auth too
        assert (await stack.raw("GET", "/public")).status == 200
        assert (await stack.raw("GET", "/_mfa/healthz")).status == 200
        assert (await stack.raw("GET", "/_mfa/readyz")).status == 503
        redis_server.start()
        # reconnection backoff is at most 10 s
        await eventually(lambda: revocations.healthy, "the revocation feed to reconnect to Redis", within=20)
        assert (await stack.raw("GET", "/admin")).status == 200


async def test_postgres_down_fails_closed_and_recovers(make_stack: StackFactory) -> None:
    """PostgreSQL stopped: the challenge answers 503 (no enrollment can be read), a session already
    stepped up keeps working (the hot path never reads the store), bypass routes serve, readyz fails and healthz
    passes; PostgreSQL back: sign-in with MFA works again without a restart."""
    import tempfile

    from tests.helpers.servers import running_postgres

    with tempfile.TemporaryDirectory(prefix="mfa-pg-fault-") as workdir, running_postgres(Path(workdir)) as pg:
        pg.create_database("faults")
        stack = await make_stack({"store": {"url": pg.url_for("faults")}})
        await stack.app_login()
        secret, _ = await stack.enroll_via_pages()
        assert (await stack.raw("GET", "/admin")).status == 200
        signed_in = dict(stack.jar)
        pg.stop()
        assert (await stack.raw("GET", "/admin", cookies=signed_in)).status == 200
        stack.jar.clear()
        assert (await stack.app_login()).status == 303  # the app's login is held; the challenge needs the store
        refused = await stack.raw("GET", "/_mfa/challenge?rd=%2Fadmin", {"Accept": "text/html"})
        assert refused.status == 503 and b"try again shortly" in refused.body
        assert (await stack.raw("GET", "/public", cookies={})).status == 200
        assert (await stack.raw("GET", "/_mfa/healthz")).status == 200
        ready = await stack.raw("GET", "/_mfa/readyz")
        assert ready.status == 503 and json.loads(ready.body)["checks"]["store"] == "unavailable"
        pg.start()

        async def ready_again() -> bool:
            return (await stack.raw("GET", "/_mfa/readyz")).status == 200

        # the pool's pre-ping notices the new server on the next checkout
        await eventually(ready_again, "readyz to pass with PostgreSQL back", within=5)
        stack.jar.clear()
        assert (await stack.app_login()).status == 303
        stack.clock.advance(30)
        challenged = await stack.csrf_form(
            "/_mfa/challenge", "/_mfa/challenge", {"code": stack.code(secret), "rd": "/admin"}
        )
        assert challenged.status == 303
        assert (await stack.raw("GET", "/admin")).status == 200
