"""Which forward-auth answers a front proxy may reuse (``forward_auth.cache_ttl``), and for how long, as the gateway
says it: ``X-Accel-Expires`` first for nginx, ``Cache-Control: private, max-age`` for every dialect, one second short of
the nearest bound; every other answer ``X-Accel-Expires: 0`` and ``Cache-Control: no-store``. Time is the stack's
FakeClock. tests/system/test_forward_auth_cache.py shows a real nginx keeping exactly what these headers allow.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mfa_gateway.core.session import Session, seal
from tests.integration.proxy.conftest import RawResponse, Stack, StackFactory
from tests.integration.proxy.test_forward_auth import FORWARD, forward_stack, nginx, traefik

ADMIN = "https://app.example.test/admin"
NOT_REUSABLE = {"X-Accel-Expires": "0", "Cache-Control": "no-store"}


async def reuse_stack(make_stack: StackFactory, ttl: int = 30, **extra: Any) -> Stack:
    return await forward_stack(make_stack, forward_auth={"cache_ttl": ttl}, **extra)


def sealed(stack: Stack, **changes: Any) -> dict[str, str]:
    """carol's step-up session cookie, issued and stepped up now unless ``changes`` say otherwise."""
    now = stack.clock()
    session = Session.start("carol", ("pwd", "otp"), now=now, ttl=3600, auth_time=now, mfa_time=now)
    session = dataclasses.replace(session, **changes)
    return {stack.settings.session.cookie_name: seal(session, stack.runtime.keys.session_keyring)}


def caching(response: RawResponse) -> dict[str, str | None]:
    return {name: response.header(name) for name in ("X-Accel-Expires", "Cache-Control")}


def names(response: RawResponse) -> list[str]:
    return [name.lower() for name, _ in response.headers]


async def test_no_answer_is_reusable_by_default(make_stack: StackFactory) -> None:
    """Without forward_auth.cache_ttl an allowed answer says X-Accel-Expires: 0 and Cache-Control: no-store, which
    nginx obeys even where a proxy_cache_valid (ingress-nginx's default 5 minutes) would keep it."""
    stack = await forward_stack(make_stack)
    allowed = await stack.raw("GET", "/_mfa/auth", nginx(ADMIN), cookies=sealed(stack))
    assert allowed.status == 200 and allowed.header("Remote-User") == "carol"
    assert caching(allowed) == NOT_REUSABLE


async def test_an_allowed_answer_for_a_session_is_reusable_for_the_ttl(make_stack: StackFactory) -> None:
    """With cache_ttl 30, carol's allowed answer is reusable for 29 s: for nginx X-Accel-Expires: 29 ahead of
    Cache-Control (nginx 1.22 obeys it only there), for Traefik and Caddy Cache-Control: private, max-age=29."""
    stack = await reuse_stack(make_stack)
    cookies = sealed(stack)
    for_nginx = await stack.raw("GET", "/_mfa/auth", nginx(ADMIN), cookies=cookies)
    assert for_nginx.status == 200 and for_nginx.header("Remote-User") == "carol"
    assert caching(for_nginx) == {"X-Accel-Expires": "29", "Cache-Control": "private, max-age=29"}
    assert names(for_nginx).index("x-accel-expires") < names(for_nginx).index("cache-control")
    for_traefik = await stack.raw("GET", "/_mfa/auth", traefik("/admin"), cookies=cookies)
    assert for_traefik.status == 200 and for_traefik.header("Remote-User") == "carol"
    assert caching(for_traefik) == {"X-Accel-Expires": None, "Cache-Control": "private, max-age=29"}


@pytest.mark.parametrize(
    ("extra", "changes", "seconds"),
    [
        ({"session": {**FORWARD["session"], "idle_timeout": 20}}, {"seen": 6}, 13),  # 14 s before the session goes idle
        ({}, {"expires": 9.5}, 8),  # 9.5 s before the session ends
        (
            {"policy": {"default": "mfa", "rules": [{"path": "^/admin", "action": "mfa", "max_age": 60}]}},
            {"mfa": 48},
            11,
        ),
    ],
    ids=["idle", "absolute", "freshness"],
)
async def test_no_answer_is_reusable_beyond_the_sessions_bounds(
    make_stack: StackFactory, extra: dict[str, Any], changes: dict[str, float], seconds: int
) -> None:
    """The reuse time stops one second short of the session's idle timeout, its end, and the rule's max_age since
    the last MFA, whichever comes first, however long cache_ttl is."""
    stack = await reuse_stack(make_stack, 300, **extra)
    now = stack.clock()
    session: dict[str, float] = {}
    if "seen" in changes:
        session = {"last_seen": now - changes["seen"], "issued_at": now - 1000, "auth_time": now - 1000}
    if "expires" in changes:
        session = {"expires_at": now + changes["expires"]}
    if "mfa" in changes:
        session = {"mfa_time": now - changes["mfa"]}
    response = await stack.raw("GET", "/_mfa/auth", nginx(ADMIN), cookies=sealed(stack, **session))
    assert response.status == 200
    assert caching(response) == {"X-Accel-Expires": str(seconds), "Cache-Control": f"private, max-age={seconds}"}


async def test_a_bearer_tokens_answer_is_reusable_until_the_token_expires(make_stack: StackFactory) -> None:
    """A gateway-issued JWT expiring in 10.5 s: the answer is reusable for 9 s."""
    stack = await reuse_stack(make_stack)
    now = stack.clock()
    session = stack.settings.session
    claims = {"iss": session.jwt_issuer, "aud": session.jwt_audience, "sub": "carol", "iat": now, "exp": now + 10.5}
    token = stack.runtime.keys.signing_keys.issue({**claims, "auth_time": now, "amr": ["pwd", "otp"], "sid": "s1"})
    response = await stack.raw("GET", "/_mfa/auth", nginx(ADMIN, Authorization=f"Bearer {token}"), cookies={})
    assert response.status == 200 and response.header("Remote-User") == "carol"
    assert caching(response) == {"X-Accel-Expires": "9", "Cache-Control": "private, max-age=9"}


async def test_refusals_challenges_bypasses_and_anonymous_answers_are_never_reusable(
    make_stack: StackFactory,
) -> None:
    """With cache_ttl on, every answer that is not an allowed one for a session says X-Accel-Expires: 0 and
    Cache-Control: no-store: a bypass route (anonymous or signed in), a challenge in either dialect, a redirect, a
    denial, a refused target or host, an untrusted peer."""
    stack = await reuse_stack(
        make_stack,
        policy={
            "default": "mfa",
            "rules": [{"path": "^/public", "action": "bypass"}, {"path": "^/closed", "action": "deny"}],
        },
    )
    carol = sealed(stack)
    answers = {
        "bypass, anonymous": await stack.raw("GET", "/_mfa/auth", nginx("https://app.example.test/public")),
        "bypass, signed in": await stack.raw(
            "GET", "/_mfa/auth", nginx("https://app.example.test/public"), cookies=carol
        ),
        "challenge": await stack.raw("GET", "/_mfa/auth", nginx(ADMIN, Accept="text/html"), cookies={}),
        "redirect": await stack.raw("GET", "/_mfa/auth", traefik("/admin", Accept="text/html"), cookies={}),
        "api challenge": await stack.raw("GET", "/_mfa/auth", traefik("/admin"), cookies={}),
        "mfa required": await stack.raw("GET", "/_mfa/auth", nginx(ADMIN), cookies=sealed(stack, mfa_time=None)),
        "denied": await stack.raw("GET", "/_mfa/auth", nginx("https://app.example.test/closed"), cookies=carol),
        "invalid target": await stack.raw("GET", "/_mfa/auth", nginx("not a url"), cookies=carol),
        "invalid host": await stack.raw("GET", "/_mfa/auth", {"X-Forwarded-Uri": "/admin"}, cookies=carol),
    }
    untrusted = await reuse_stack(make_stack, name="untrusted", trusted_proxies=["10.0.0.0/8"])
    answers["untrusted"] = await untrusted.raw("GET", "/_mfa/auth", nginx(ADMIN), cookies=sealed(untrusted))
    assert {name: answer.status for name, answer in answers.items()} == {
        "bypass, anonymous": 200,
        "bypass, signed in": 200,
        "challenge": 401,
        "redirect": 302,
        "api challenge": 401,
        "mfa required": 401,
        "denied": 403,
        "invalid target": 403,
        "invalid host": 400,
        "untrusted": 403,
    }
    for name, answer in answers.items():
        assert caching(answer) == NOT_REUSABLE, (name, answer.headers)


async def test_an_answer_that_refreshes_the_session_cookie_is_never_reusable(make_stack: StackFactory) -> None:
    """A session last seen over a minute ago gets its cookie re-sealed in the answer (Set-Cookie, for the proxy to
    pass to this client): that answer says X-Accel-Expires: 0 and no-store, so no proxy keeps it and no Set-Cookie
    is ever replayed; the refreshed cookie's next answer is reusable again."""
    stack = await reuse_stack(make_stack)
    now = stack.clock()
    stale = sealed(stack, last_seen=now - 120, issued_at=now - 120, auth_time=now - 120, mfa_time=now - 120)
    refreshing = await stack.raw("GET", "/_mfa/auth", nginx(ADMIN), cookies=stale)
    assert refreshing.status == 200 and refreshing.header("Set-Cookie")
    assert caching(refreshing) == NOT_REUSABLE
    cookie_name = stack.settings.session.cookie_name
    refreshed = {cookie_name: refreshing.cookies()[cookie_name]}
    again = await stack.raw("GET", "/_mfa/auth", nginx(ADMIN), cookies=refreshed)
    assert again.status == 200 and again.header("Set-Cookie") is None
    assert caching(again) == {"X-Accel-Expires": "29", "Cache-Control": "private, max-age=29"}
