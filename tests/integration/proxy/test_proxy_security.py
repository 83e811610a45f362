"""The reverse proxy, attacked: forged identity headers, path confusion, open redirects, malformed requests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from mfa_gateway.web.server import start_site
from tests.helpers.servers import bound_port
from tests.integration.proxy.conftest import Stack, StackFactory

FORGED = {
    "Remote-User": "admin",
    "X-Auth-User": "admin",
    "X-Auth-Request-User": "admin",
    "Remote-Groups": "admins",
    "Remote-Email": "admin@evil.test",
    "X-Forwarded-User": "admin",
}


async def signed_in(stack: Stack) -> str:
    await stack.app_login()
    secret, _ = await stack.enroll_via_pages()
    return secret


async def test_forged_identity_headers_never_reach_the_app_on_a_bypass_route(make_stack: StackFactory) -> None:
    """On a bypass route the client's Remote-User & co. are stripped: the app sees no identity at all."""
    stack = await make_stack({"policy": {"rules": [{"path": "^/api/whoami$", "action": "bypass"}]}})
    response = await stack.raw("GET", "/api/whoami", FORGED)
    seen = json.loads(response.body)["identityHeaders"]
    assert not {k for k in seen if k in {h.lower() for h in FORGED}}, seen


async def test_forged_identity_headers_are_replaced_on_an_mfa_route(stack: Stack) -> None:
    """Signed in as alice with MFA, a client claiming to be admin is still alice to the app."""
    await signed_in(stack)
    response = await stack.raw("GET", "/api/whoami", FORGED)
    seen = json.loads(response.body)["identityHeaders"]
    assert response.status == 200
    assert seen["remote-user"] == "alice" and seen["x-auth-user"] == "alice" and seen["x-auth-request-user"] == "alice"
    assert "remote-groups" not in seen and "x-forwarded-user" not in seen


async def test_gateway_cookies_are_not_forwarded_but_the_apps_are(stack: Stack) -> None:
    """The app receives its own cookie and never the gateway's session or CSRF cookies."""
    await signed_in(stack)
    assert "mfa_session" in stack.jar and "legacy_session" in stack.jar
    response = await stack.raw("GET", "/api/whoami")
    assert json.loads(response.body)["user"] == "alice"  # the app saw its legacy_session
    echoed = await stack.raw("GET", "/api/whoami", {"X-Probe": "1"})
    assert b"mfa_session" not in echoed.body


@pytest.mark.parametrize(
    "target",
    [
        "/admin/../admin",
        "//admin",
        "/%61dmin",
        "/admin%2f",
        "/admin;x",
        "/public/..%2fadmin",
        "/public/%2e%2e/admin",
        "/%2e%2e/admin",
        "/admin%00",
        "/./admin",
        "/public/../admin",
        "/admin/%2e",
        "/a%zz/admin",
        "/%252e%252e/admin",
        "/admin\\",
        "/public%5c..%5cadmin",
    ],
)
async def test_path_tricks_never_reach_an_mfa_route_without_mfa(stack: Stack, target: str) -> None:
    """Encoded or dotted variants of /admin are refused (400) or challenged, never served without MFA."""
    response = await stack.raw("GET", target, {"Accept": "text/html"})
    assert b"Admin area" not in response.body, (target, response.status)
    assert response.status in (400, 302), (target, response.status)


async def test_percent_encoded_admin_still_needs_mfa_and_reaches_it_after(stack: Stack) -> None:
    """/%61dmin is /admin: challenged before MFA, and the same resource after MFA (no separate policy)."""
    assert (await stack.raw("GET", "/%61dmin", {"Accept": "text/html"})).status == 302
    await signed_in(stack)
    response = await stack.raw("GET", "/%61dmin")
    assert response.status == 200 and b"Admin area" in response.body


async def test_case_variants_are_caught_when_the_app_ignores_case(make_stack: StackFactory) -> None:
    """With case_insensitive_paths, /ADMIN matches the ^/admin rule (the app may serve it as /admin)."""
    stack = await make_stack(
        {
            "policy": {
                "case_insensitive_paths": True,
                "default": "bypass",
                "rules": [{"path": r"^/admin(/|$)", "action": "mfa"}],
            }
        }
    )
    response = await stack.raw("GET", "/ADMIN", {"Accept": "application/json"})
    assert response.status == 401 and json.loads(response.body)["code"] == "unauthenticated"


SEEN_PATHS = web.AppKey("seen_paths", list[str])


async def record_path(request: web.Request) -> web.Response:
    request.app[SEEN_PATHS].append(request.raw_path)
    return web.Response(text="served by the app")


@pytest.fixture
async def recording_app() -> AsyncIterator[tuple[int, list[str]]]:
    """An app on loopback that answers every path and keeps each request target it receives, as received."""
    app = web.Application()
    app[SEEN_PATHS] = []
    app.router.add_route("*", "/{tail:.*}", record_path)
    runner = await start_site(app, "127.0.0.1", 0)
    yield bound_port(runner), app[SEEN_PATHS]
    await runner.cleanup()


ADMIN_RULE_BYPASS_DEFAULT = {"default": "bypass", "rules": [{"path": r"^/admin(/|$)", "action": "mfa"}]}


@pytest.mark.parametrize(
    "target",
    ["/admin.", "/admin%20", "/admin%2E", "/ADMIN./x", "/adm%C4%B1n", "/ADM%C4%B1N", "/adm%C4%B0n", "/%EF%BD%81dmin"],
)
async def test_windows_and_unicode_folding_variants_are_refused_before_the_app(
    make_stack: StackFactory, recording_app: tuple[int, list[str]], target: str
) -> None:
    """T-G21: with case_insensitive_paths, an mfa rule on /admin and a bypass default, a variant that a Windows or
    .NET/Java app reads as /admin (trailing dot or space, dotless or dotted I, fullwidth a) is 400 ambiguous_path,
    and the app never receives it; an ordinary bypassed path still does."""
    port, seen = recording_app
    stack = await make_stack({"policy": {"case_insensitive_paths": True, **ADMIN_RULE_BYPASS_DEFAULT}}, app_port=port)
    response = await stack.raw("GET", target, {"Accept": "application/json"})
    assert response.status == 400, (target, response.status, response.body[:200])
    assert json.loads(response.body)["code"] == "ambiguous_path"
    assert seen == []
    assert (await stack.raw("GET", "/public.html", {"Accept": "application/json"})).status == 200
    assert seen == ["/public.html"]


async def test_case_sensitive_apps_get_trailing_dots_as_sent(
    make_stack: StackFactory, recording_app: tuple[int, list[str]]
) -> None:
    """Without case_insensitive_paths the app is declared to compare bytes: /admin. and /adm%C4%B1n are paths of their
    own to it and to the policy alike (bypassed here), and the app receives exactly those paths, never /admin."""
    port, seen = recording_app
    stack = await make_stack({"policy": ADMIN_RULE_BYPASS_DEFAULT}, app_port=port)
    for target in ("/admin.", "/admin%20", "/adm%C4%B1n"):
        assert (await stack.raw("GET", target, {"Accept": "application/json"})).status == 200
    assert seen == ["/admin.", "/admin%20", "/adm%C4%B1n"]
    assert (await stack.raw("GET", "/admin", {"Accept": "application/json"})).status == 401


async def test_query_string_never_satisfies_a_path_rule(make_stack: StackFactory) -> None:
    """A bypass rule on ^/public does not match /admin?x=/public."""
    stack = await make_stack({"policy": {"rules": [{"path": "^/public", "action": "bypass"}]}})
    response = await stack.raw("GET", "/admin?x=/public", {"Accept": "text/html"})
    assert response.status == 302 and b"Admin area" not in response.body


async def test_deny_rule_is_403(make_stack: StackFactory) -> None:
    """A deny rule refuses even a fully authenticated user, as JSON for API clients."""
    stack = await make_stack({"policy": {"rules": [{"path": "^/reports", "action": "deny"}]}})
    response = await stack.raw("GET", "/reports", {"Accept": "application/json"})
    assert response.status == 403 and json.loads(response.body)["code"] == "forbidden"


async def test_step_up_freshness_max_age(make_stack: StackFactory) -> None:
    """An mfa rule with max_age 600 challenges again once the last MFA is older than ten minutes."""
    stack = await make_stack({"policy": {"rules": [{"path": r"^/admin(/|$)", "action": "mfa", "max_age": 600}]}})
    await signed_in(stack)
    assert (await stack.raw("GET", "/admin")).status == 200
    stack.clock.advance(601)
    stale = await stack.raw("GET", "/admin", {"Accept": "text/html"})
    assert stale.status == 302 and stale.header("Location") == "/_mfa/challenge?rd=%2Fadmin"


async def test_idle_and_absolute_session_limits(make_stack: StackFactory) -> None:
    """A session idle longer than idle_timeout ends; activity keeps it alive until the absolute ttl."""
    stack = await make_stack({"session": {"idle_timeout": 1800, "ttl": 7200}})
    await signed_in(stack)
    for _ in range(3):  # active every 25 minutes: still signed in at 75 minutes
        stack.clock.advance(1500)
        assert (await stack.raw("GET", "/admin")).status == 200
    stack.clock.advance(1801)
    assert (await stack.raw("GET", "/admin", {"Accept": "text/html"})).status == 302
    fresh = await make_stack({"session": {"idle_timeout": 1800, "ttl": 3000}}, name="abs")
    await signed_in(fresh)
    fresh.clock.advance(1500)
    assert (await fresh.raw("GET", "/admin")).status == 200
    fresh.clock.advance(1501)
    assert (await fresh.raw("GET", "/admin", {"Accept": "text/html"})).status == 302


async def test_a_refreshed_session_cookie_is_sealed_once_per_minute(make_stack: StackFactory) -> None:
    """A session last seen over a minute ago gets a refreshed cookie; clients that resend the old cookie within the
    next minute get that same value (sealed once), and a minute later a new one."""
    stack = await make_stack({"session": {"idle_timeout": 1800}})
    await signed_in(stack)
    name = stack.settings.session.cookie_name
    old = dict(stack.jar)
    stack.clock.advance(61)
    first = await stack.raw("GET", "/admin", cookies=old, keep=False)
    stack.clock.advance(10)
    second = await stack.raw("GET", "/admin", cookies=old, keep=False)
    assert first.status == second.status == 200
    assert first.cookies()[name] == second.cookies()[name] != old[name]
    stack.clock.advance(61)
    third = await stack.raw("GET", "/admin", cookies=old, keep=False)
    assert third.status == 200 and third.cookies()[name] not in (first.cookies()[name], old[name])
    stack.clock.advance(1700)  # idle for 1700 s since the last refresh: still within the 1800 s idle limit
    assert (await stack.raw("GET", "/admin", cookies={**old, name: third.cookies()[name]})).status == 200


@pytest.mark.parametrize(
    "rd",
    [
        "//evil.test/x",
        "https://evil.test/",
        "/\\evil.test",
        "javascript:alert(1)",
        "/%2F%2Fevil.test",
        "%09/evil.test",
        "https://127.0.0.1.evil.test/",
    ],
)
async def test_open_redirects_are_refused(stack: Stack, rd: str) -> None:
    """After MFA the gateway redirects only to a relative path or an allowed host; anything else goes to /."""
    from urllib.parse import quote

    await stack.app_login()
    secret, _ = await stack.enroll_via_pages()
    stack.clock.advance(30)
    response = await stack.csrf_form(
        f"/_mfa/challenge?rd={quote(rd, safe='')}", "/_mfa/challenge", {"code": stack.code(secret), "rd": rd}
    )
    assert response.status == 303 and response.header("Location") == "/", (rd, response.header("Location"))


async def test_page_forms_need_the_csrf_token(stack: Stack) -> None:
    """A POST to a gateway page without the CSRF token, or from another origin, is refused with 403."""
    await stack.app_login()
    missing = await stack.form("/_mfa/challenge", {"code": "123456", "rd": "/"})
    assert missing.status == 403
    page = await stack.raw("GET", "/_mfa/logout", {"Accept": "text/html"})
    import re

    token = re.search(rb'name="csrf" value="([^"]+)"', page.body)
    assert token is not None
    cross = await stack.raw(
        "POST",
        "/_mfa/logout",
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.test"},
        f"csrf={token.group(1).decode()}".encode(),
    )
    assert cross.status == 403


async def test_pages_send_a_strict_csp_and_no_script(stack: Stack) -> None:
    """Gateway pages: CSP without script sources, frame-ancestors none, and no <script> in the markup."""
    await stack.app_login()
    for path in ("/_mfa/enroll", "/_mfa/logout"):
        page = await stack.raw("GET", path, {"Accept": "text/html"})
        csp = page.header("Content-Security-Policy") or ""
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
        assert b"<script" not in page.body.lower()


@pytest.mark.parametrize(
    ("request_line", "expected"),
    [
        ("GET /admin HTTP/1.1\r\nHost: a\r\nHost: b", 400),
        ("GET /adm\x00in HTTP/1.1", 400),
        ("GET admin HTTP/1.1", 400),
    ],
)
async def test_malformed_requests_fail_closed(stack: Stack, request_line: str, expected: int) -> None:
    """Requests the server cannot parse safely are refused before any policy runs."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", stack.gateway_port)
    writer.write((request_line + "\r\nConnection: close\r\n\r\n").encode("latin-1"))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    assert data.split(b" ", 2)[1] == str(expected).encode(), data[:200]
    assert b"Admin area" not in data


async def test_underscore_spellings_and_routing_headers_never_reach_the_app(make_stack: StackFactory) -> None:
    """Remote_User & co. (read as REMOTE_USER by CGI/WSGI apps), routing headers and method overrides from a
    client are stripped, even on a bypass route."""
    stack = await make_stack({"policy": {"rules": [{"path": "^/api/whoami$", "action": "bypass"}]}})
    sent = {
        "Remote_User": "admin",
        "X_Auth_User": "admin",
        "X-Original-URL": "/admin",
        "X-Rewrite-URL": "/admin",
        "Forwarded": "for=1.2.3.4;host=evil",
        "X-Real-IP": "1.2.3.4",
        "X-HTTP-Method-Override": "DELETE",
        "X-Forwarded-Port": "443",
        "X_Forwarded_For": "1.2.3.4",
        "X_Forwarded_Host": "evil.test",
    }
    response = await stack.raw("GET", "/api/whoami", sent)
    seen = json.loads(response.body)["identityHeaders"]
    assert set(seen) <= {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}, seen
    assert "1.2.3.4" not in json.dumps(seen) and "evil.test" not in json.dumps(seen)


async def test_signing_out_revokes_the_session_from_before_the_step_up(make_stack: StackFactory) -> None:
    """The first-factor cookie saved before MFA is revoked at step-up, so it is dead after sign-out as well."""
    from tests.helpers.gateway import add_user

    stack = await make_stack(
        {
            "identity": {"source": "builtin", "users_file": "users.yaml", "upstream_login": None},
            "policy": {"rules": [{"path": "^/api/whoami$", "action": "identity"}]},
        }
    )
    add_user(stack.settings, "carol", "carol password 1")
    await stack.csrf_form(
        "/_mfa/signin", "/_mfa/signin", {"username": "carol", "password": "carol password 1", "rd": "/"}
    )
    first_factor_only = dict(stack.jar)
    before = await stack.raw("GET", "/api/whoami", cookies=first_factor_only)
    assert json.loads(before.body)["identityHeaders"]["remote-user"] == "carol"  # the first factor works before
    await stack.enroll_via_pages()
    await stack.csrf_form("/_mfa/logout", "/_mfa/logout", {})
    again = await stack.raw("GET", "/api/whoami", {"Accept": "application/json"}, cookies=first_factor_only)
    assert again.status == 401 and json.loads(again.body)["code"] == "unauthenticated"


async def test_a_locked_out_user_gets_a_429_page_with_retry_after(stack: Stack) -> None:
    """Five wrong codes on a page lock the user out: the next attempt, even with the right code, is a 429 page with
    Retry-After (the page-side twin of the API's lockout)."""
    await stack.app_login()
    secret, _ = await stack.enroll_via_pages()
    for _ in range(5):
        stack.clock.advance(1)
        wrong = await stack.csrf_form("/_mfa/disable", "/_mfa/disable", {"code": "000000"})
        assert wrong.status == 401, wrong.status
    stack.clock.advance(30)
    locked = await stack.csrf_form("/_mfa/disable", "/_mfa/disable", {"code": stack.code(secret)})
    assert locked.status == 429 and int(locked.header("Retry-After") or "0") > 0
    assert b"<html" in locked.body.lower()
