"""{prefix}/auth answered in-process: who may ask, how each proxy dialect is answered, identity headers."""

from __future__ import annotations

import json
from typing import Any

from tests.helpers.gateway import add_user
from tests.integration.proxy.conftest import Stack, StackFactory

FORWARD: dict[str, Any] = {
    "mode": "production",
    "trusted_proxies": ["127.0.0.1/32"],
    "identity": {"source": "builtin", "users_file": "users.yaml", "upstream_login": None},
    "session": {"cookie_name": "mfa_session", "secure": True},
    "policy": {"default": "mfa", "rules": [{"path": r"^/public(/|$)", "action": "bypass"}]},
}
HEADERS = ("Remote-User", "X-Auth-Request-User", "X-Auth-User", "Remote-Email", "X-Auth-Request-Email", "Remote-Groups")


async def forward_stack(make_stack: StackFactory, *, name: str = "gw", **extra: Any) -> Stack:
    stack = await make_stack({**FORWARD, **extra}, name=name)
    add_user(stack.settings, "carol", "carol password 1", "carol@example.test")
    return stack


def nginx(url: str, method: str = "GET", **more: str) -> dict[str, str]:
    return {"X-Original-URL": url, "X-Original-Method": method, **more}


def traefik(uri: str, method: str = "GET", **more: str) -> dict[str, str]:
    return {
        "X-Forwarded-Uri": uri,
        "X-Forwarded-Host": "app.example.test",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Method": method,
        **more,
    }


async def mfa_cookies(stack: Stack) -> dict[str, str]:
    await stack.csrf_form(
        "/_mfa/signin", "/_mfa/signin", {"username": "carol", "password": "carol password 1", "rd": "/"}
    )
    await stack.enroll_via_pages()
    return dict(stack.jar)


async def test_only_trusted_proxies_are_answered(make_stack: StackFactory) -> None:
    """From a peer outside trusted_proxies, X-Original-*/X-Forwarded-* are not believed: 403, never 200."""
    stack = await forward_stack(make_stack, trusted_proxies=["10.0.0.0/8"])
    for headers in (nginx("https://app.example.test/public"), traefik("/public")):
        response = await stack.raw("GET", "/_mfa/auth", headers)
        assert response.status == 403 and json.loads(response.body)["code"] == "untrusted_proxy"


async def test_bypass_is_200_with_every_identity_header_present_and_empty(make_stack: StackFactory) -> None:
    """On a bypass route the answer carries all identity headers, empty, so the proxy overwrites client copies."""
    stack = await forward_stack(make_stack)
    response = await stack.raw("GET", "/_mfa/auth", nginx("https://app.example.test/public", **{"Remote-User": "x"}))
    assert response.status == 200
    assert {name: response.header(name) for name in HEADERS} == dict.fromkeys(HEADERS, "")


async def test_nginx_dialect_challenge_is_401_with_location(make_stack: StackFactory) -> None:
    """nginx auth_request passes only 2xx/401/403: the sign-in redirect travels as Location on a 401."""
    stack = await forward_stack(make_stack)
    response = await stack.raw("GET", "/_mfa/auth", nginx("https://app.example.test/admin?x=1", Accept="text/html"))
    assert response.status == 401 and response.header("Location") == "/_mfa/signin?rd=%2Fadmin%3Fx%3D1"


async def test_traefik_dialect_redirects_browsers_and_401s_apis(make_stack: StackFactory) -> None:
    """Traefik/Caddy: a browser gets a 302 to sign in; an API client a 401 JSON."""
    stack = await forward_stack(make_stack)
    browser = await stack.raw("GET", "/_mfa/auth", traefik("/admin", Accept="text/html"))
    assert browser.status == 302 and browser.header("Location") == "/_mfa/signin?rd=%2Fadmin"
    api = await stack.raw("GET", "/_mfa/auth", traefik("/admin", Accept="application/json"))
    assert api.status == 401 and json.loads(api.body)["code"] == "unauthenticated"


async def test_signed_in_with_mfa_gets_200_and_the_real_identity(make_stack: StackFactory) -> None:
    """After MFA, the answer names the user; a client-sent Remote-User on the original request changes nothing."""
    stack = await forward_stack(make_stack)
    cookies = await mfa_cookies(stack)
    response = await stack.raw(
        "GET", "/_mfa/auth", nginx("https://app.example.test/admin", **{"Remote-User": "root"}), cookies=cookies
    )
    assert response.status == 200
    assert response.header("Remote-User") == "carol" and response.header("Remote-Email") == "carol@example.test"


async def test_unparsable_or_ambiguous_targets_are_denied(make_stack: StackFactory) -> None:
    """A target that cannot be parsed, or whose path is ambiguous, is denied (403), never allowed; one without a
    readable host is a 400 ``invalid_host`` (see tests/integration/proxy/test_hosts.py)."""
    stack = await forward_stack(make_stack)
    for headers in (
        nginx("not a url"),
        nginx("https://app.example.test/public/..%2fadmin"),
        nginx("javascript:alert(1)"),
        traefik("admin"),
        traefik("/public/%2e%2e/admin"),
    ):
        response = await stack.raw("GET", "/_mfa/auth", headers)
        assert response.status == 403, (headers, response.status)
    hostless = await stack.raw("GET", "/_mfa/auth", {"X-Forwarded-Uri": "/public"})
    assert hostless.status == 400 and json.loads(hostless.body)["code"] == "invalid_host"


async def test_method_of_the_original_request_is_what_policy_sees(make_stack: StackFactory) -> None:
    """A rule for POST only applies to the original method, not to the subrequest's GET."""
    stack = await forward_stack(
        make_stack, policy={"default": "bypass", "rules": [{"path": "^/api/", "methods": ["POST"], "action": "deny"}]}
    )
    post = await stack.raw("GET", "/_mfa/auth", nginx("https://app.example.test/api/x", "POST"))
    get = await stack.raw("GET", "/_mfa/auth", nginx("https://app.example.test/api/x", "GET"))
    assert (post.status, get.status) == (403, 200)


async def test_a_client_added_original_url_cannot_redirect_the_decision(make_stack: StackFactory) -> None:
    """Caddy/Traefik pass client headers on: X-Forwarded-Uri /admin plus a client's X-Original-URL /public is
    refused in auto mode, and each fixed dialect reads only its own headers."""
    spoofed = {**traefik("/admin"), "X-Original-URL": "https://app.example.test/public"}
    auto = await forward_stack(make_stack)
    assert (await auto.raw("GET", "/_mfa/auth", spoofed)).status == 403
    fixed = await forward_stack(make_stack, name="traefik", forward_auth={"dialect": "traefik"})
    response = await fixed.raw("GET", "/_mfa/auth", {**spoofed, "Accept": "application/json"})
    assert response.status == 401, "the traefik dialect judges /admin, not the client's /public"
    nginx_only = await forward_stack(make_stack, name="nginx", forward_auth={"dialect": "nginx"})
    flipped = {
        **nginx("https://app.example.test/admin", Accept="application/json"),
        "X-Forwarded-Uri": "/public",
        "X-Forwarded-Host": "app.example.test",
    }
    assert (await nginx_only.raw("GET", "/_mfa/auth", flipped)).status == 401
