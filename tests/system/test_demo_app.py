"""The legacy demo app behaves like a typical old web app: its own login form, its own session cookie, no MFA."""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from mfa_gateway.demo_app import COOKIE, create_demo_app

Client = TestClient[Any, Any]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
EXPECTED_CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"
ODD_NAME = "<b>x</b>"
ALICE_PASSWORD = "alice-password"
USERS = {"alice": ALICE_PASSWORD, ODD_NAME: "odd-password"}


@pytest.fixture
async def client(aiohttp_client: Any) -> Client:
    result: Client = await aiohttp_client(create_demo_app(USERS))
    return result


async def sign_in(client: Client, username: str = "alice", password: str = ALICE_PASSWORD, **form: str) -> Any:
    return await client.post("/login", data={"username": username, "password": password, **form}, allow_redirects=False)


def session_cookie(response: Any) -> str:
    morsel = response.cookies[COOKIE]
    value: str = morsel.value
    return value


async def test_login_success_sets_cookie_and_redirects_to_next(client: Client) -> None:
    """A good password answers 303 to the given relative `next` with an HttpOnly, SameSite=Lax session cookie."""
    response = await sign_in(client, next="/reports?year=2024")
    assert response.status == 303
    assert response.headers["Location"] == "/reports?year=2024"
    morsel = response.cookies[COOKIE]
    assert len(morsel.value) >= 43
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"
    assert not morsel["secure"]


async def test_login_without_next_goes_home(client: Client) -> None:
    """Without a `next` field a successful sign-in lands on "/"."""
    response = await sign_in(client)
    assert response.status == 303
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize(
    ("username", "password"), [("alice", "wrong"), ("nobody", "alice-password"), ("alice", ""), ("", "")]
)
async def test_login_failure_rerenders_form_without_cookie(client: Client, username: str, password: str) -> None:
    """A bad username or password re-renders the form with 200, an error message and no Set-Cookie at all."""
    response = await sign_in(client, username, password, next="/admin")
    assert response.status == 200
    assert "Set-Cookie" not in response.headers
    text = await response.text()
    assert "Invalid username or password." in text
    assert '<input type="hidden" name="next" value="/admin">' in text


@pytest.mark.parametrize(
    "bad_next", ["//evil.com", "https://evil.com", "/\\evil.com", "evil.com", "/\t/evil.com", "/x\\y", ""]
)
async def test_open_redirect_next_values_go_home(client: Client, bad_next: str) -> None:
    """`next` values that are not a plain path on this site (scheme, `//host`, backslash, whitespace) become "/"."""
    response = await sign_in(client, next=bad_next)
    assert response.status == 303
    assert response.headers["Location"] == "/"
    form = await client.get("/login", params={"next": bad_next})
    assert '<input type="hidden" name="next" value="/">' in await form.text()


async def test_login_form_carries_valid_next_and_labels(client: Client) -> None:
    """GET /login puts a valid `next` into the hidden field and labels both inputs."""
    text = await (await client.get("/login?next=/admin")).text()
    assert '<form method="post" action="/login">' in text
    assert '<input type="hidden" name="next" value="/admin">' in text
    assert '<label for="username">' in text
    assert '<label for="password">' in text
    assert 'id="username" name="username"' in text
    assert 'id="password" name="password" type="password"' in text


@pytest.mark.parametrize(("path", "heading"), [("/admin", "<h1>Admin area</h1>"), ("/reports", "<h1>Reports</h1>")])
async def test_protected_pages_need_a_session(client: Client, path: str, heading: str) -> None:
    """Without a session /admin and /reports answer 302 to /login?next=PATH; with one they show the user."""
    response = await client.get(path, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == f"/login?next={path}"
    await sign_in(client)
    response = await client.get(path, allow_redirects=False)
    assert response.status == 200
    text = await response.text()
    assert heading in text
    assert "Signed in as alice" in text


async def test_unknown_session_id_is_not_signed_in(client: Client) -> None:
    """A made-up cookie value is no session."""
    client.session.cookie_jar.update_cookies({COOKIE: secrets.token_urlsafe(32)})
    response = await client.get("/admin", allow_redirects=False)
    assert response.status == 302


async def test_home_and_public_pages(client: Client) -> None:
    """The home page says who is signed in and offers sign-in or sign-out; /public needs no login."""
    text = await (await client.get("/")).text()
    assert "Acme Legacy App" in text
    assert "not signed in" in text
    assert 'href="/login"' in text
    assert 'href="/admin"' in text and 'href="/reports"' in text
    await sign_in(client)
    text = await (await client.get("/")).text()
    assert "Signed in as alice" in text
    assert '<form method="post" action="/logout">' in text
    client.session.cookie_jar.clear()
    response = await client.get("/public", allow_redirects=False)
    assert response.status == 200
    assert "Public page" in await response.text()


async def test_logout_kills_the_session_server_side(client: Client) -> None:
    """POST /logout deletes the session and expires the cookie; replaying the old cookie value is not signed in."""
    old = session_cookie(await sign_in(client))
    assert (await client.get("/admin", allow_redirects=False)).status == 200
    response = await client.post("/logout", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/"
    assert response.cookies[COOKIE].value == ""
    assert response.cookies[COOKIE]["max-age"] == "0"
    client.session.cookie_jar.clear()
    replay = await client.get("/admin", allow_redirects=False, headers={"Cookie": f"{COOKIE}={old}"})
    assert replay.status == 302
    assert replay.headers["Location"] == "/login?next=/admin"


async def test_signing_in_again_replaces_the_session(client: Client) -> None:
    """A new sign-in gets a fresh session id and drops the one sent with it (no session fixation)."""
    first = session_cookie(await sign_in(client))
    second = session_cookie(await sign_in(client))
    assert first != second
    client.session.cookie_jar.clear()
    stale = await client.get("/admin", allow_redirects=False, headers={"Cookie": f"{COOKIE}={first}"})
    assert stale.status == 302


async def test_whoami_reports_user_and_echoes_identity_headers(client: Client) -> None:
    """/api/whoami answers 401 {"user": null} or the user, and echoes x-auth-*, remote-*, x-forwarded-* headers."""
    sent = {"X-Auth-User": "alice", "Remote-User": "alice", "X-Forwarded-For": "10.0.0.1", "X-Other": "no"}
    response = await client.get("/api/whoami", headers=sent)
    assert response.status == 401
    body = await response.json()
    assert body["user"] is None
    assert body["identityHeaders"] == {"x-auth-user": "alice", "remote-user": "alice", "x-forwarded-for": "10.0.0.1"}
    await sign_in(client)
    response = await client.get("/api/whoami")
    assert response.status == 200
    assert await response.json() == {"user": "alice", "identityHeaders": {}}


async def test_odd_username_is_escaped(client: Client) -> None:
    """A username full of markup is shown escaped on the admin and home pages and returned verbatim as JSON."""
    await sign_in(client, ODD_NAME, "odd-password")
    for path in ("/admin", "/"):
        text = await (await client.get(path)).text()
        assert "Signed in as &lt;b&gt;x&lt;/b&gt;" in text
        assert ODD_NAME not in text
    response = await client.get("/api/whoami")
    assert response.content_type == "application/json"
    assert (await response.json())["user"] == ODD_NAME


async def test_failed_login_escapes_the_echoed_username(client: Client) -> None:
    """The re-rendered form echoes the typed username escaped, so it cannot inject markup."""
    text = await (await sign_in(client, '"><b>x</b>', "wrong")).text()
    assert "&quot;&gt;&lt;b&gt;x&lt;/b&gt;" in text
    assert "<b>x</b>" not in text


async def test_upload_streams_and_hashes_a_large_body(client: Client) -> None:
    """POST /upload reads a 5 MB chunked body as a stream and returns its size and SHA-256."""
    data = secrets.token_bytes(5 * 1024 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 100_000):
            yield data[start : start + 100_000]

    response = await client.post("/upload", data=chunks())
    assert response.status == 200
    assert await response.json() == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    response = await client.post("/upload", data=io.BytesIO(data))
    assert await response.json() == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


async def test_websocket_echoes_text_and_binary(client: Client) -> None:
    """/ws echoes text and binary frames without any login."""
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("hello")
        message = await ws.receive()
        assert (message.type, message.data) == (WSMsgType.TEXT, "hello")
        await ws.send_bytes(b"\x00\x01\xff")
        message = await ws.receive()
        assert (message.type, message.data) == (WSMsgType.BINARY, b"\x00\x01\xff")


async def test_slow_waits_then_answers_ok(client: Client) -> None:
    """/slow?ms=N answers "ok" after the delay; a non-integer or negative delay is a 400."""
    response = await client.get("/slow?ms=20")
    assert response.status == 200
    assert await response.text() == "ok"
    assert (await client.get("/slow?ms=abc")).status == 400
    assert (await client.get("/slow?ms=-1")).status == 400


async def test_every_response_has_csp_and_no_store_and_no_script(client: Client) -> None:
    """Every page (and redirect, error, stylesheet) sends the CSP and no-store; no page contains a <script."""
    paths = ["/", "/login", "/login?next=/admin", "/public", "/admin", "/reports", "/static/app.css", "/missing"]
    responses = [await client.get(path, allow_redirects=False) for path in paths]
    await sign_in(client)
    responses += [await client.get(path, allow_redirects=False) for path in ("/", "/admin", "/reports")]
    responses.append(await sign_in(client, "alice", "wrong"))
    for response in responses:
        assert response.headers["Content-Security-Policy"] == EXPECTED_CSP, response.url
        assert response.headers["Cache-Control"] == "no-store", response.url
        text = (await response.text()).lower()
        assert "<script" not in text
        assert "style=" not in text
        assert "<style" not in text


async def test_stylesheet_is_served_as_css(client: Client) -> None:
    """The only style is the stylesheet at /static/app.css, which every page links."""
    response = await client.get("/static/app.css")
    assert response.status == 200
    assert response.content_type == "text/css"
    assert '<link rel="stylesheet" href="/static/app.css">' in await (await client.get("/public")).text()
