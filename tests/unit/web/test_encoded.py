"""An answer written from header lines encoded once (``web.encoded``) is, on the wire, the answer aiohttp's own
``web.Response`` writes for the same headers: the same status line, header lines and empty body, the same
keep-alive or close for every HTTP version and ``Connection`` header; only aiohttp's ``Server`` line is left out.
Headers that could split the header block are refused when they are encoded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mfa_gateway.web.app import create_app
from mfa_gateway.web.encoded import EncodedAnswer, encode_lines
from mfa_gateway.web.server import start_site
from tests.helpers.gateway import FakeClock, make_runtime, make_settings
from tests.helpers.servers import bound_port

HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("X-Accel-Expires", "0"),
    ("Cache-Control", "no-store"),
    ("Remote-User", "zoë"),
    ("Remote-Groups", "admins,ops"),
    ("Remote-Groups", "second line of the same name"),
]


@pytest.fixture
async def port() -> AsyncIterator[int]:
    """One server answering ``/aiohttp`` with ``web.Response`` and ``/encoded`` with ``EncodedAnswer``."""

    async def plain(request: web.Request) -> web.StreamResponse:
        response = web.Response()
        response.headers.extend(HEADERS)
        return response

    async def encoded(request: web.Request) -> web.StreamResponse:
        return EncodedAnswer(encode_lines(HEADERS))

    def closing(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        async def answer(request: web.Request) -> web.StreamResponse:
            response = await handler(request)
            response.force_close()
            return response

        return answer

    app = web.Application()
    app.router.add_route("*", "/aiohttp", plain)
    app.router.add_route("*", "/encoded", encoded)
    app.router.add_route("*", "/aiohttp/closed", closing(plain))
    app.router.add_route("*", "/encoded/closed", closing(encoded))
    runner = await start_site(app, "127.0.0.1", 0)
    yield bound_port(runner)
    await runner.cleanup()


async def exchange(port: int, request: bytes) -> tuple[bytes, bool]:
    """What the server writes for ``request``, and whether it kept the connection open: the request is sent again
    after the first answer, and a connection kept alive answers it too, where a closed one reads as ended."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        try:
            writer.write(request)
            await writer.drain()
            second = await asyncio.wait_for(reader.read(65536), 10)
        except ConnectionError:
            second = b""
    finally:
        writer.close()
    return first, bool(second)


def comparable(data: bytes) -> tuple[bytes, list[bytes], set[bytes]]:
    """An answer's status line, its header lines in order, and the lines aiohttp adds itself (``Content-Length``,
    ``Connection``), whose place differs; without ``Date`` and ``Server`` (the one changes every second, the other is
    aiohttp's alone). The bodies are empty."""
    status, *lines = data.split(b"\r\n\r\n")[0].split(b"\r\n")
    names = [line.split(b":")[0].lower() for line in lines]
    added = {line for line, name in zip(lines, names, strict=True) if name in (b"content-length", b"connection")}
    ordered = [
        line
        for line, name in zip(lines, names, strict=True)
        if name not in (b"date", b"server", b"content-length", b"connection")
    ]
    return status, ordered, added


@pytest.mark.parametrize(
    ("version", "connection"),
    [("1.1", None), ("1.1", "close"), ("1.1", "keep-alive"), ("1.0", None), ("1.0", "keep-alive"), ("1.0", "close")],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("force_close", [False, True])
async def test_the_answer_on_the_wire_is_aiohttps_own(
    port: int, version: str, connection: str | None, method: str, force_close: bool
) -> None:
    """The same lines in the same order but for ``Date`` and ``Server``, and the connection kept or closed alike,
    also when the handler closes it (``force_close``)."""
    seen = {}
    for path in ("/aiohttp", "/encoded"):
        extra = f"Connection: {connection}\r\n" if connection else ""
        target = path + "/closed" if force_close else path
        one = f"{method} {target} HTTP/{version}\r\nHost: x\r\n{extra}\r\n".encode("ascii")
        seen[path] = await exchange(port, one)
    (plain, plain_kept), (encoded, encoded_kept) = seen["/aiohttp"], seen["/encoded"]
    assert comparable(encoded) == comparable(plain)
    kept = not force_close and connection != "close" and (version == "1.1" or connection == "keep-alive")
    assert encoded_kept == plain_kept == kept
    assert comparable(plain)[0] == f"HTTP/{version} 200 OK".encode("ascii")
    assert b"\r\nDate: " in encoded and b"\r\nServer:" not in encoded
    assert b"Remote-User: zo\xc3\xab\r\n" in encoded  # values as UTF-8, as aiohttp writes them


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Remote-User", "eve\r\nSet-Cookie: s=x"),
        ("Remote-User", "eve\nX: y"),
        ("Remote-User", "eve\rX: y"),
        ("Remote-User", "eve\x00"),
        ("Remote-User", "eve\x0bX"),
        ("Remote-User", "eve\x1f"),
        ("Remote-User", "eve\x7f"),
        ("Remote User", "eve"),
        ("Remote-User:", "eve"),
        ("", "eve"),
    ],
)
def test_a_header_that_could_split_the_block_is_refused(name: str, value: str) -> None:
    """A control character in a value (CR and LF would split the block; aiohttp refuses them all but tab), or a name
    that is not a token, raises naming the header, never its value; a tab is a value's own."""
    with pytest.raises(ValueError, match="cannot be sent") as refused:
        encode_lines([("Cache-Control", "no-store"), (name, value)])
    assert value not in str(refused.value)
    assert encode_lines([("Remote-User", "eve\tbob")]) == b"Remote-User: eve\tbob\r\n"


def test_text_without_a_utf8_form_is_refused_without_quoting_it() -> None:
    with pytest.raises(ValueError, match="cannot be sent") as refused:
        encode_lines([("Remote-User", "eve\ud800")])
    assert "eve" not in str(refused.value)


def test_what_is_added_after_encoding_raises_instead_of_vanishing() -> None:
    """A header, a cookie or a status set on an encoded answer would never be sent: each raises."""
    answer = EncodedAnswer(encode_lines(HEADERS))
    with pytest.raises(TypeError):
        answer.headers["X-Late"] = "1"
    with pytest.raises(TypeError, match="takes no cookie"):
        answer.set_cookie("s", "x")
    with pytest.raises(TypeError, match="takes no cookie"):
        answer.cookies["s"] = "x"
    with pytest.raises(TypeError, match="is a 200"):
        answer.set_status(403)


def test_the_gateways_applications_register_no_prepare_signal(tmp_path: Path) -> None:
    """``EncodedAnswer`` skips ``on_response_prepare``: no application of the gateway's may register one, or the
    headers it adds would be missing from the forward-auth answer."""
    runtime, _ = make_runtime(make_settings(tmp_path), FakeClock())
    app = create_app(runtime)
    applications = [app, *(resource._app for resource in app.router.resources() if hasattr(resource, "_app"))]
    assert len(applications) >= 2  # the root and the {prefix} sub-application
    assert all(not application.on_response_prepare for application in applications)
