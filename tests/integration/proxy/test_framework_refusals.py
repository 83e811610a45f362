"""Requests aiohttp itself refuses (its parser, its ``Expect`` check, its router), sent as raw bytes to a real gateway.

Each is answered in the gateway's documented shape (JSON ``{"success": false, "error", "code"}``, or a page for a
browser), quotes none of the request's bytes, logs at most one line and no traceback, and leaves the upstream-error
metric alone: an anonymous client can neither flood the error log nor fire the upstream-error alert.
"""

from __future__ import annotations

import logging

import pytest

from tests.integration.proxy.conftest import RawResponse, Stack, parse_response
from tests.integration.proxy.test_request_bodies import MARKER, PREFIX, json_error, upstream_errors

HOST = b"Host: 127.0.0.1\r\nConnection: close\r\n"
MARK = MARKER.encode()


def _refused_quietly(stack: Stack, caplog: pytest.LogCaptureFixture, data: bytes, response: RawResponse) -> None:
    """No byte sequence of the request quoted back, at most one log line about it, no traceback, no metric."""
    assert MARK not in response.body and all(MARKER not in value for _, value in response.headers)
    records = [r for r in caplog.records if r.name != "mfa_gateway.access"]
    assert len(records) <= 1, [(r.name, r.getMessage()) for r in records]
    assert all(r.levelno < logging.WARNING and not r.exc_info for r in records)
    assert all(MARKER not in r.getMessage() for r in records)  # the access event logs the path, as for any request
    assert upstream_errors(stack) == 0


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"GE\x01T /" + MARK + b" HTTP/1.1\r\n" + HOST + b"\r\n", 400, "malformed_request"),
        (b"G(E)T /public HTTP/1.1\r\n" + HOST + b"X-Note: " + MARK + b"\r\n\r\n", 400, "malformed_request"),
        (b"GET /public HTTP/1.1\r\n" + HOST + b"X-Note: " + MARK + b"\x00x\r\n\r\n", 400, "malformed_request"),
        (b"GET /public HTTP/1.1\r\n" + HOST + b"X-Note: " + MARK + b"\x01x\r\n\r\n", 400, "malformed_request"),
        (b"GET /public HTTP/1.1\r\n" + HOST + b"X-" + MARK + b"\x7f: x\r\n\r\n", 400, "malformed_request"),
        (b"POST /public HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: " + MARK + b"\r\n\r\n", 400, "malformed_request"),
        (b"POST /upload HTTP/1.1\r\n" + HOST + b"Content-Length: 1" + MARK + b"\r\n\r\n", 400, "malformed_request"),
        (b"GET /" + MARK + b" HTTP/1.1\r\n" + HOST + b"X-Long: " + b"a" * 9000 + b"\r\n\r\n", 400, "malformed_request"),
        (
            b"POST /upload HTTP/1.1\r\n" + HOST + b"Expect: 100-continue-" + MARK + b"\r\nContent-Length: 2\r\n\r\nok",
            417,
            "expectation_failed",
        ),
        (
            b"POST " + PREFIX.encode() + b"/api/mfa/verify HTTP/1.1\r\n" + HOST + b"Expect: " + MARK + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            417,
            "expectation_failed",
        ),
        (
            b"POST " + PREFIX.encode() + b"/api/mfa/verify HTTP/1.1\r\n" + HOST + b"Content-Encoding: " + MARK + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            415,
            "unsupported_encoding",
        ),
        (
            b"GET " + PREFIX.encode() + b"/api/" + MARK + b" HTTP/1.1\r\n" + HOST + b"Accept: text/html\r\n\r\n",
            404,
            "not_found",
        ),
        (b"GET " + PREFIX.encode() + b"/" + MARK + b" HTTP/1.1\r\n" + HOST + b"\r\n", 404, "not_found"),
        (b"DELETE " + PREFIX.encode() + b"/api/mfa/status HTTP/1.1\r\n" + HOST + b"\r\n", 405, "method_not_allowed"),
    ],
)
async def test_framework_refusals_answer_json_in_the_documented_shape(
    stack: Stack, caplog: pytest.LogCaptureFixture, data: bytes, status: int, code: str
) -> None:
    """A bad method token, NUL or other control bytes in a header, an invalid Transfer-Encoding or Content-Length, a
    header line over the limit (400 malformed_request); an unknown Expect (417); an unsupported Content-Encoding on
    a gateway route (415); an unknown route under {prefix} (404); a wrong method (405): JSON, quoting nothing."""
    response = parse_response(await stack.send(data))
    assert response.status == status and json_error(response) == code
    assert response.header("X-Content-Type-Options") == "nosniff"
    _refused_quietly(stack, caplog, data, response)


async def test_an_unknown_page_under_the_prefix_is_an_html_404_for_browsers(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A browser asking for an unknown page under {prefix} gets the gateway's HTML 404 page (its CSP included)."""
    data = b"GET " + PREFIX.encode() + b"/" + MARK + b" HTTP/1.1\r\n" + HOST + b"Accept: text/html\r\n\r\n"
    response = parse_response(await stack.send(data))
    assert response.status == 404 and (response.header("Content-Type") or "").startswith("text/html")
    assert b"<h1>Not Found</h1>" in response.body
    assert "frame-ancestors 'none'" in (response.header("Content-Security-Policy") or "")
    _refused_quietly(stack, caplog, data, response)


@pytest.mark.parametrize("path", ["/api/mfa/status", "/api/" + MARKER])
async def test_a_websocket_upgrade_on_the_api_is_answered_as_a_plain_request(
    stack: Stack, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """No route under {prefix}/api serves a WebSocket: an upgrade request gets the route's ordinary JSON answer
    (401 without a session, 404 for no route), never a 101 and never a 500."""
    data = (
        b"GET "
        + (PREFIX + path).encode()
        + b" HTTP/1.1\r\n"
        + HOST.replace(b"close", b"Upgrade, close")
        + b"Upgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    response = parse_response(await stack.send(data))
    assert response.status in (401, 404) and json_error(response) in ("unauthenticated", "not_found")
    _refused_quietly(stack, caplog, data, response)


async def test_many_malformed_requests_leave_one_info_line_each(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """Twenty malformed requests: twenty info lines from mfa_gateway.http, nothing at warning or above."""
    for _ in range(20):
        response = parse_response(await stack.send(b"GET /public HTTP/1.1\r\n" + HOST + b"X-A: \x00\r\n\r\n"))
        assert response.status == 400
    refused = [r for r in caplog.records if r.name == "mfa_gateway.http"]
    assert len(refused) == 20 and all(r.levelno == logging.INFO and not r.exc_info for r in refused)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [
        (b"/public%0A" + MARK, 404, "not_found"),  # the catch-all route's ``.*`` stops at a line feed: no route
        (b"/%5Fmfa/api/mfa/status", 401, "unauthenticated"),  # the router decodes: the {prefix} API, not the app
        (PREFIX.encode() + b"%2Fapi/mfa/status", 400, "ambiguous_path"),  # an encoded slash stays one: the proxy's
    ],
)
async def test_paths_are_served_by_whom_the_router_would_choose(
    stack: Stack, caplog: pytest.LogCaptureFixture, target: bytes, status: int, code: str
) -> None:
    """The server hands paths outside {prefix} straight to the proxy (protocol.PROXIED), deciding as the router does:
    on the decoded path, ``/`` kept encoded; a path the catch-all route does not match is the router's 404 and a
    spelling of a {prefix} path is the gateway's own route, never the app's."""
    data = b"GET " + target + b" HTTP/1.1\r\n" + HOST + b"\r\n"
    response = parse_response(await stack.send(data))
    assert response.status == status and json_error(response) == code
    assert upstream_errors(stack) == 0
