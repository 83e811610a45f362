"""Request bodies, sent byte for byte over a socket to a real gateway.

The bodies the gateway reads itself (the JSON API, the pages' forms, an intercepted login) are read strictly:
whatever it cannot read is a 4xx with a stable code, never a 500. The bodies it proxies reach the app exactly as the
client sent them, compressed or not: a recording app on a raw socket sees the bytes and headers that arrived.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.integration.proxy.conftest import RawResponse, Stack, StackFactory, parse_response
from tests.integration.proxy.test_interception import FORM_ONLY

MARKER = "ZQXMARKER"
TOO_DEEP = 17  # one level over the documented limit (web.bodies.MAX_JSON_DEPTH)
PREFIX = "/_mfa"


@dataclass
class Received:
    """One request as the app's socket saw it: the request line, the headers, the body with its chunk framing
    removed, and whether the body arrived whole."""

    line: str
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass
class RecordingApp:
    """An app on a raw socket that records every request and answers ``200 ok`` to each."""

    port: int = 0
    received: list[Received] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        line, *rest = head.split("\r\n")
        headers = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in rest if h)]
        fields = {k.lower(): v for k, v in headers}
        body, complete = b"", True
        try:
            if "content-length" in fields:
                body = await reader.readexactly(int(fields["content-length"]))
            elif fields.get("transfer-encoding", "").lower() == "chunked":
                body = await _dechunk(reader)
        except asyncio.IncompleteReadError as short:
            body, complete = short.partial, False
        self.received.append(Received(line, headers, body, complete))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()


async def _dechunk(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")  # the empty trailer section
    return body


@pytest.fixture
async def recording_app() -> AsyncIterator[RecordingApp]:
    app = RecordingApp()
    server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
    app.port = server.sockets[0].getsockname()[1]
    yield app
    server.close()
    await server.wait_closed()


def request(
    method: str, target: str, headers: dict[str, str], body: bytes = b"", *, length: int | None = None
) -> bytes:
    """The bytes of one HTTP/1.1 request, ``Content-Length`` set to ``length`` (or the body's length)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if "Transfer-Encoding" not in headers:
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def upstream_errors(stack: Stack) -> float:
    """The upstream-error counter of the stack's gateway, both kinds (the alert fires on it)."""
    registry = stack.runtime.metrics.registry
    kinds = ("unavailable", "timeout")
    return sum(registry.get_sample_value("mfa_gateway_upstream_errors_total", {"kind": kind}) or 0 for kind in kinds)


def json_error(response: RawResponse) -> str:
    """The stable code of a JSON error in the documented shape (asserting the shape)."""
    assert (response.header("Content-Type") or "").startswith("application/json"), response.headers
    body = json.loads(response.body)
    assert set(body) == {"success", "error", "code"} and body["success"] is False, body
    code: str = body["code"]
    return code


def quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing at warning or above, and no traceback at any level."""
    loud = [(r.name, r.getMessage()[:120]) for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == []


JSON = {"Content-Type": "application/json"}
VERIFY = PREFIX + "/api/mfa/verify"  # reads its body before it asks who is calling: no sign-in needed


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"token": ' + b"[" * TOO_DEEP + b"]" * TOO_DEEP + b"}", "json_too_deep"),
        (b"[" * 5000 + b"]" * 5000, "json_too_deep"),
        (b'{"a": "[[[[[[[[[[[[[[[[[[[[", "token": 5}', "invalid_field"),  # brackets in strings are not nesting
        (b'{"token": 1e999999}', "invalid_json"),
        (b'{"token": -1e400}', "invalid_json"),
        (b'{"token": ' + b"9" * 5000 + b"}", "invalid_json"),
        (b'{"token": NaN}', "invalid_json"),
        (b'{"token": Infinity}', "invalid_json"),
        (b'{"token": "123456", "token": "654321"}', "duplicate_key"),
        (b'{"a": {"b": 1, "b": 2}, "token": "123456"}', "duplicate_key"),
        (b'{"token": "12\xff3456"}', "invalid_json"),
        (b'{"token": "\\ud800"}', "invalid_json"),
        (b'{"token": "123456", "x": [["\\udfff"]]}', "invalid_json"),
        (b'{"\\ud800": 1, "token": "123456"}', "invalid_json"),
        ('{"token": "123456"}'.encode("utf-16"), "invalid_json"),
        (b'\xef\xbb\xbf{"token": "123456"}', "invalid_json"),
        (b'["token"]', "invalid_json"),
        (b'"token"', "invalid_json"),
        (b"null", "invalid_json"),
        (b'{"token": 123456}', "invalid_field"),
        (b'{"token": ["123456"]}', "invalid_field"),
        (b'{"token": ', "invalid_json"),
    ],
)
async def test_unreadable_json_is_a_400_with_a_stable_code(
    stack: Stack, caplog: pytest.LogCaptureFixture, body: bytes, code: str
) -> None:
    """Deep nesting, numbers out of range or too long (Python's int parsing would raise past 4300 digits),
    NaN/Infinity, duplicate keys at any level, invalid UTF-8, lone surrogate escapes anywhere, a BOM or UTF-16, a
    top level that is not an object, a field of the wrong type, a truncated document: each a 400 with its code."""
    response = parse_response(await stack.send(request("POST", VERIFY, JSON, body)))
    assert response.status == 400 and json_error(response) == code
    quiet(caplog)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", "application/jsonx"],
)
async def test_json_routes_need_the_json_content_type_in_utf8(
    stack: Stack, caplog: pytest.LogCaptureFixture, content_type: str | None
) -> None:
    """A missing or other content type, or a charset other than UTF-8, is 415 json_required."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = parse_response(await stack.send(request("POST", VERIFY, headers, b'{"token": "123456"}')))
    assert response.status == 415 and json_error(response) == "json_required"
    quiet(caplog)


async def test_a_large_number_is_refused_by_size_first(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """A 100,000-digit integer is over the API's 16 KiB: 413 body_too_large, decided on the declared length."""
    body = b'{"token": ' + b"7" * 100_000 + b"}"
    response = parse_response(await stack.send(request("POST", VERIFY, JSON, body)))
    assert response.status == 413 and json_error(response) == "body_too_large"
    quiet(caplog)


async def test_a_json_body_that_ends_early_is_refused_not_a_500(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """Content-Length larger than what is sent, then the client half-closes: the request ends as 400
    incomplete_body (the client has gone, so nobody reads it), with no error logged."""
    caplog.set_level(logging.INFO, logger="mfa_gateway.access")
    await stack.send(request("POST", VERIFY, JSON, b'{"token": "12', length=100), half_close=True)
    await _access_event(caplog, VERIFY, 400)
    quiet(caplog)


async def _access_event(caplog: pytest.LogCaptureFixture, path: str, status: int) -> None:
    """Wait (on the event loop, not the clock) for the access event of ``path`` and check its status."""
    for _ in range(200):
        events = [r for r in caplog.records if r.name == "mfa_gateway.access" and getattr(r, "path", None) == path]
        if events:
            assert [getattr(r, "status", None) for r in events] == [status]
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"no access event for {path}")


# -- page forms ---------------------------------------------------------------------------------------------------

LOGOUT = PREFIX + "/logout"
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("multipart/form-data", b"csrf=" + MARKER.encode(), 415),
        ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=csrf\r\n\r\nx\r\n--b--", 415),
        (FORM + "; charset=" + MARKER, b"csrf=x", 415),
        ("application/json", b'{"csrf": "x"}', 415),
        (FORM, b"csrf=%ff" + MARKER.encode(), 400),
        (FORM, b"csrf=\xff" + MARKER.encode(), 400),
        (FORM, b"csrf=a&csrf=" + MARKER.encode(), 400),
    ],
)
async def test_page_forms_that_cannot_be_read_are_refused_with_a_page(
    stack: Stack, caplog: pytest.LogCaptureFixture, content_type: str, body: bytes, status: int
) -> None:
    """Another content type or charset (415), invalid UTF-8 raw or percent-encoded, or a repeated field (400): an
    HTML page, quoting nothing, instead of a 500 (or a form read with replacement characters)."""
    response = parse_response(await stack.send(request("POST", LOGOUT, {"Content-Type": content_type}, body)))
    assert response.status == status
    assert (response.header("Content-Type") or "").startswith("text/html")
    assert MARKER.encode() not in response.body
    quiet(caplog)


# -- an intercepted login -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"username": "alice", "password": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"username": "alice", "password": 1e999999}',
        b'{"username": "alice", "password": ' + b"1" * 20_000 + b"}",
        b'{"username": "\\ud800alice", "password": "alice-password"}',
        b'{"username": "alice", "x": {"y": 1, "y": 2}}',
        b'["alice"]',
    ],
)
async def test_an_intercepted_json_login_that_cannot_be_read_is_refused(
    make_stack: StackFactory, recording_app: RecordingApp, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    """The gateway reads the user name from a JSON login form as strictly as the API's bodies: 400
    login_not_understood, and the app never sees the form."""
    stack = await make_stack({"identity": {"upstream_login": FORM_ONLY}}, app_port=recording_app.port)
    response = parse_response(await stack.send(request("POST", "/login", JSON, body)))
    assert response.status == 400 and json_error(response) == "login_not_understood"
    assert recording_app.received == []
    quiet(caplog)


async def test_an_intercepted_login_that_ends_early_never_reaches_the_app(
    recording_app: RecordingApp, make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A login form cut short (Content-Length larger than what is sent, then a half-close) is refused whole: the app
    never receives a truncated form, and it is not counted as an upstream error."""
    stack = await make_stack(app_port=recording_app.port)
    caplog.set_level(logging.INFO, logger="mfa_gateway.access")
    form = b"username=alice&password=alice-pass"
    await stack.send(request("POST", "/login", {"Content-Type": FORM}, form, length=200), half_close=True)
    await _access_event(caplog, "/login", 400)
    assert recording_app.received == [] and upstream_errors(stack) == 0
    quiet(caplog)


# -- proxied bodies -----------------------------------------------------------------------------------------------

PAYLOAD = (MARKER + " a body the app decodes itself. ") * 200


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(PAYLOAD.encode())),
        ("deflate", zlib.compress(PAYLOAD.encode())),
        ("br", b"\x1b\x0b\x00\xf8\xa5\x80" + MARKER.encode()),  # any bytes: the gateway does not look
        ("gzip", b"not gzip at all " + MARKER.encode()),
        ("x-" + MARKER.lower(), b"an encoding nobody knows"),
    ],
)
async def test_a_proxied_body_reaches_the_app_byte_for_byte(
    make_stack: StackFactory, recording_app: RecordingApp, caplog: pytest.LogCaptureFixture, encoding: str, body: bytes
) -> None:
    """A compressed body (or one that only claims to be) is forwarded as sent: same bytes, same Content-Encoding and
    Content-Length; the app decides what it means. The gateway never decompresses it (aiohttp's server would)."""
    stack = await make_stack(app_port=recording_app.port)
    headers = {"Content-Type": "application/octet-stream", "Content-Encoding": encoding}
    response = parse_response(await stack.send(request("POST", "/upload", headers, body)))
    assert response.status == 200 and response.body == b"ok"
    [received] = recording_app.received
    assert received.complete and received.body == body
    assert received.header("Content-Encoding") == encoding
    assert received.header("Content-Length") == str(len(body))
    assert upstream_errors(stack) == 0
    quiet(caplog)


async def test_a_chunked_compressed_body_reaches_the_app_whole(
    make_stack: StackFactory, recording_app: RecordingApp, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunked, gzip-labelled body arrives with the same content (re-chunked) and its Content-Encoding."""
    stack = await make_stack(app_port=recording_app.port)
    body = gzip.compress(PAYLOAD.encode())
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:100], body[100:101], body[101:]))
    headers = {"Content-Encoding": "gzip", "Transfer-Encoding": "chunked"}
    response = parse_response(await stack.send(request("POST", "/upload", headers, chunks + b"0\r\n\r\n")))
    assert response.status == 200
    [received] = recording_app.received
    assert received.complete and received.body == body and received.header("Content-Encoding") == "gzip"
    quiet(caplog)


async def test_a_proxied_body_that_ends_early_is_not_an_upstream_error(
    make_stack: StackFactory, recording_app: RecordingApp, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that breaks off its body mid-way is the client's doing: 400 incomplete_body in the access log, no
    upstream error counted or logged (an anonymous client must not fire the upstream-error alert)."""
    stack = await make_stack(app_port=recording_app.port)
    caplog.set_level(logging.INFO, logger="mfa_gateway.access")
    data = request("POST", "/upload", {"Content-Type": "text/plain"}, b"only part of it", length=1000)
    await stack.send(data, half_close=True)
    await _access_event(caplog, "/upload", 400)
    assert upstream_errors(stack) == 0
    assert all(not received.complete for received in recording_app.received)
    quiet(caplog)


# -- encoded bodies on the gateway's own routes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "content_type", "body"),
    [
        (VERIFY, "application/json", gzip.compress(b'{"token": "123456"}')),
        (VERIFY, "application/json", b'{"token": "123456"}'),  # claims gzip, is not
        (LOGOUT, FORM, gzip.compress(b"csrf=x")),
        ("/login", FORM, gzip.compress(b"username=alice&password=alice-password")),
        ("/login", FORM, b"username=alice&password=alice-password"),
    ],
)
async def test_the_gateway_never_decompresses_a_body_it_reads(
    make_stack: StackFactory,
    recording_app: RecordingApp,
    caplog: pytest.LogCaptureFixture,
    target: str,
    content_type: str,
    body: bytes,
) -> None:
    """The API, the pages and an intercepted login refuse a Content-Encoding with 415 unsupported_encoding (no
    decompression bomb, no 500, no 502 counted against the app), whether or not the body really is gzip."""
    stack = await make_stack(app_port=recording_app.port)
    headers = {"Content-Type": content_type, "Content-Encoding": "gzip"}
    response = parse_response(await stack.send(request("POST", target, headers, body)))
    assert response.status == 415
    if target != LOGOUT:
        assert json_error(response) == "unsupported_encoding"
    assert recording_app.received == [] and upstream_errors(stack) == 0
    quiet(caplog)
