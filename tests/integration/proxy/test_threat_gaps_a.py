"""Gaps of the threat model closed with gateway tests: the sealing of pending sign-ins (T-G12), the client address
behind trusted proxies and the ``networks`` rules fed from it (T-I7), and the 503 pages while sessions cannot be
checked (T-G9)."""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio
from multidict import CIMultiDict

from mfa_gateway.core.keyring import Keyring, new_keyring_document
from mfa_gateway.service.pending import PURPOSE
from mfa_gateway.web import html
from tests.helpers.gateway import add_user
from tests.helpers.support import eventually
from tests.integration.proxy.conftest import RawResponse, Stack, StackFactory

APP_COOKIE = "legacy_session"
SESSION_COOKIE = "mfa_session"
PENDING_COOKIE = "mfa_session_pending"
PASSWORD = "correct horse battery"


# -- helpers ---------------------------------------------------------------------------------------------------


def new_browser(stack: Stack) -> Stack:
    """Another browser in front of the same gateway: the same servers and runtime, a cookie jar of its own."""
    return replace(stack, jar={})


async def enrolled_alice(stack: Stack) -> str:
    """alice signs in to the app through the gateway and sets up TOTP; her TOTP secret. The clock then moves on a
    step, so the next code is a fresh one."""
    await stack.app_login("alice")
    secret, _ = await stack.enroll_via_pages()
    stack.clock.advance(30)
    return secret


async def held_sign_in(stack: Stack, user: str = "alice") -> tuple[Stack, str]:
    """A new browser whose app login the gateway holds; the browser and its challenge id (the pending cookie)."""
    browser = new_browser(stack)
    held = await browser.app_login(user)
    assert held.status == 303 and APP_COOKIE not in held.cookies(), held.headers
    return browser, browser.jar[PENDING_COOKIE]


async def sealed_pending(stack: Stack, challenge_id: str) -> bytes:
    sealed = await stack.runtime.state.get_challenge(challenge_id, stack.clock())
    assert sealed is not None, "the pending sign-in is not in shared state"
    return sealed


async def store_pending(stack: Stack, challenge_id: str, payload: bytes) -> None:
    """Write ``payload`` as the pending sign-in of ``challenge_id``, as anyone who can write the shared state can."""
    await stack.runtime.state.put_challenge(challenge_id, payload, stack.clock(), stack.runtime.pending.ttl)


async def answer_challenge(browser: Stack, code: str) -> RawResponse:
    return await browser.csrf_form("/_mfa/logout", "/_mfa/challenge", {"code": code, "rd": "/admin"})


async def assert_nothing_released(browser: Stack, response: RawResponse) -> None:
    """A clean refusal page: no app session and no gateway session handed out, and the app stays closed."""
    assert response.status == 401, (response.status, response.body[:300])
    assert (response.header("Content-Type") or "").startswith("text/html")
    assert b"Sign-in required" in response.body
    released = response.cookies()
    assert APP_COOKIE not in released and SESSION_COOKIE not in released
    assert APP_COOKIE not in browser.jar and SESSION_COOKIE not in browser.jar
    admin = await browser.raw("GET", "/admin", {"Accept": "text/html"})
    assert admin.status == 302 and b"Admin area" not in admin.body


# -- T-G12: pending sign-ins are sealed, bound to their challenge id, and refused when tampered with ----------------


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


async def _redis_values(url: str, prefix: str) -> bytes:
    """Every key and value under ``prefix``, as someone reading the shared state would see them."""
    client = redis.asyncio.Redis.from_url(url)
    chunks: list[object] = []
    try:
        async for key in client.scan_iter(match=prefix + "*"):
            chunks.append(key)
            kind = _bytes(await client.type(key))
            if kind == b"string":
                chunks.append(await client.get(key) or b"")
            elif kind == b"hash":
                chunks += [item for pair in (await client.hgetall(key)).items() for item in pair]
            elif kind == b"zset":
                chunks += await client.zrange(key, 0, -1)
            elif kind == b"set":
                chunks += list(await client.smembers(key))
            elif kind == b"list":
                chunks += await client.lrange(key, 0, -1)
            else:
                raise AssertionError(f"a Redis value of type {kind!r}: read it here too")
    finally:
        await client.aclose()
    return b"\n".join(_bytes(chunk) for chunk in chunks)


async def test_a_held_app_login_is_never_in_clear_in_shared_state(make_stack: StackFactory, redis_url: str) -> None:
    """T-G12. While alice's app login is held (in Redis, waiting for her code), nothing in Redis holds the app's
    session cookie, its name, or alice's name in clear; the same held answer, released after the code, carries that
    cookie."""
    prefix = f"t{secrets.token_hex(4)}:"
    stack = await make_stack({"state": {"backend": "redis", "url": redis_url, "key_prefix": prefix}})
    secret = await enrolled_alice(stack)
    browser, challenge_id = await held_sign_in(stack)
    dump = await _redis_values(redis_url, prefix)
    sealed = await sealed_pending(stack, challenge_id)
    assert sealed in dump
    released = await answer_challenge(browser, stack.code(secret))
    assert released.status == 303 and released.header("Location") == "/admin"
    app_session = released.cookies()[APP_COOKIE]
    assert len(app_session) >= 32
    assert app_session.encode() not in dump
    assert APP_COOKIE.encode() not in dump
    assert b"alice" not in sealed and b"intercept" not in sealed
    assert (await browser.raw("GET", "/admin")).status == 200


def _flipped(stack: Stack, challenge_id: str, sealed: bytes) -> bytes:
    altered = bytearray(sealed)
    altered[-20] ^= 0x01  # a bit of the ciphertext body (the last 16 bytes are the tag)
    return bytes(altered)


def _truncated(stack: Stack, challenge_id: str, sealed: bytes) -> bytes:
    return sealed[:24]


def _plaintext_of(stack: Stack, challenge_id: str, sealed: bytes) -> bytes:
    """The pending sign-in in clear (the test reads it with the gateway's key; an attacker knows the format)."""
    return stack.runtime.keys.keyring.decrypt(sealed, purpose=PURPOSE, context=challenge_id).plaintext


def _unsealed(stack: Stack, challenge_id: str, sealed: bytes) -> bytes:
    return _plaintext_of(stack, challenge_id, sealed)


def _sealed_with_another_key(stack: Stack, challenge_id: str, sealed: bytes) -> bytes:
    """An attacker's own key, under the key id the gateway's keyring uses."""
    forger = Keyring.from_json(new_keyring_document(stack.runtime.keys.keyring.primary))
    return forger.encrypt(_plaintext_of(stack, challenge_id, sealed), purpose=PURPOSE, context=challenge_id)


def _sealed_for_another_purpose(stack: Stack, challenge_id: str, sealed: bytes) -> bytes:
    """The gateway's own key and the right challenge id, but sealed for another purpose (a session cookie's)."""
    plaintext = _plaintext_of(stack, challenge_id, sealed)
    return stack.runtime.keys.keyring.encrypt(plaintext, purpose="session", context=challenge_id)


def _sealed_without_context(stack: Stack, challenge_id: str, sealed: bytes) -> bytes:
    """The gateway's own key and purpose, bound to no challenge id (as session cookies are sealed)."""
    return stack.runtime.keys.keyring.encrypt(_plaintext_of(stack, challenge_id, sealed), purpose=PURPOSE, context="")


Tamper = Callable[[Stack, str, bytes], bytes]
TAMPERINGS: dict[str, Tamper] = {
    "a-flipped-bit": _flipped,
    "truncated": _truncated,
    "unsealed-plaintext": _unsealed,
    "sealed-with-another-key": _sealed_with_another_key,
    "sealed-for-another-purpose": _sealed_for_another_purpose,
    "sealed-without-its-challenge-id": _sealed_without_context,
}


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
async def test_a_tampered_held_sign_in_releases_nothing(make_stack: StackFactory, tamper: Tamper) -> None:
    """T-G12. alice's held app login, altered or forged in shared state between her loading the challenge page and
    sending the right code: the page refuses with a clean 401 (no 500, no traceback), neither the app's session
    cookie nor a gateway session is handed out, and /admin stays closed."""
    stack = await make_stack()
    secret = await enrolled_alice(stack)
    browser, challenge_id = await held_sign_in(stack)
    shown = await browser.raw("GET", "/_mfa/challenge?rd=/admin", {"Accept": "text/html"})
    assert shown.status == 200 and b'name="code"' in shown.body  # untampered, the pending sign-in opens
    await store_pending(stack, challenge_id, tamper(stack, challenge_id, await sealed_pending(stack, challenge_id)))
    page = await browser.raw("GET", "/_mfa/challenge?rd=/admin", {"Accept": "text/html"})
    assert page.status == 401 and b'name="code"' not in page.body
    await assert_nothing_released(browser, await answer_challenge(browser, stack.code(secret)))


async def test_a_held_sign_in_moved_to_another_users_challenge_releases_nothing(stack: Stack) -> None:
    """T-G12. alice's sealed held login copied under bob's challenge id (bob's browser holds that id): it does not
    open there, so alice's right code sent from bob's browser releases nothing; under its own id the same payload
    still opens and releases alice's login."""
    secret = await enrolled_alice(stack)
    alice, alice_id = await held_sign_in(stack, "alice")
    bob, bob_id = await held_sign_in(stack, "bob")
    await store_pending(stack, bob_id, await sealed_pending(stack, alice_id))
    await assert_nothing_released(bob, await answer_challenge(bob, stack.code(secret)))
    released = await answer_challenge(alice, stack.code(secret))
    assert released.status == 303 and APP_COOKIE in released.cookies()
    admin = await alice.raw("GET", "/admin")
    assert admin.status == 200 and b"Signed in as alice" in admin.body


# The same through the JSON API (builtin identity): api/login answers mfaRequired with a challenge id.

BUILTIN = {"identity": {"source": "builtin", "upstream_login": None}}


async def builtin_stack(make_stack: StackFactory) -> Stack:
    stack = await make_stack(BUILTIN)
    add_user(stack.settings, "alice", PASSWORD, "alice@example.test")
    return stack


async def call(browser: Stack, path: str, body: dict[str, Any]) -> tuple[RawResponse, dict[str, Any]]:
    answer = await browser.raw(
        "POST", "/_mfa/api" + path, {"Content-Type": "application/json"}, json.dumps(body).encode()
    )
    return answer, json.loads(answer.body)


async def api_enrolled_alice(stack: Stack) -> str:
    """alice turns MFA on through the API; her TOTP secret. The clock then moves on a step."""
    browser = new_browser(stack)
    answer, data = await call(browser, "/login", {"username": "alice", "password": PASSWORD})
    assert answer.status == 200 and "mfaRequired" not in data, data
    _, enabled = await call(browser, "/mfa/enable", {})
    secret = str(enabled["data"]["secret"])
    verified, _ = await call(browser, "/mfa/verify", {"token": stack.code(secret)})
    assert verified.status == 200
    stack.clock.advance(30)
    return secret


async def api_pending(stack: Stack) -> tuple[Stack, str]:
    """A new client whose password was right: it holds a challenge id (in the body and as the pending cookie)."""
    browser = new_browser(stack)
    answer, data = await call(browser, "/login", {"username": "alice", "password": PASSWORD})
    assert answer.status == 200 and data["mfaRequired"] is True, data
    assert browser.jar[PENDING_COOKIE] == data["challengeId"]
    return browser, str(data["challengeId"])


def assert_api_refused(answer: RawResponse, data: dict[str, Any]) -> None:
    """401 challenge_expired as JSON: no token, no session cookie."""
    assert answer.status == 401 and data == {
        "success": False,
        "error": "The sign-in has expired; sign in again.",
        "code": "challenge_expired",
    }
    assert SESSION_COOKIE not in answer.cookies()


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
async def test_api_refuses_a_tampered_pending_sign_in(make_stack: StackFactory, tamper: Tamper) -> None:
    """T-G12. A pending sign-in from api/login, altered or forged in shared state: api/mfa/challenge with its
    challenge id and the right code answers 401 challenge_expired, with no token and no session cookie."""
    stack = await builtin_stack(make_stack)
    secret = await api_enrolled_alice(stack)
    browser, challenge_id = await api_pending(stack)
    await store_pending(stack, challenge_id, tamper(stack, challenge_id, await sealed_pending(stack, challenge_id)))
    answer, data = await call(browser, "/mfa/challenge", {"challengeId": challenge_id, "token": stack.code(secret)})
    assert_api_refused(answer, data)


async def test_api_refuses_a_pending_moved_to_another_challenge_id_or_a_forged_id(make_stack: StackFactory) -> None:
    """T-G12. One sign-in's sealed payload copied over another's challenge id does not open there; a pending cookie
    altered by one character, or an overlong forged id, names no sign-in. Each is 401 challenge_expired with nothing
    released, and none of them used up the genuine sign-in, which then completes with the same code."""
    stack = await builtin_stack(make_stack)
    secret = await api_enrolled_alice(stack)
    first, first_id = await api_pending(stack)
    second, second_id = await api_pending(stack)
    await store_pending(stack, second_id, await sealed_pending(stack, first_id))
    code = stack.code(secret)
    assert_api_refused(*await call(second, "/mfa/challenge", {"challengeId": second_id, "token": code}))
    altered = first_id[:-1] + ("A" if first_id[-1] != "A" else "B")
    cookie_only = dict(first.jar, **{PENDING_COOKIE: altered})
    answer = await first.raw(
        "POST",
        "/_mfa/api/mfa/challenge",
        {"Content-Type": "application/json"},
        json.dumps({"token": code}).encode(),
        cookies=cookie_only,
    )
    assert_api_refused(answer, json.loads(answer.body))
    assert_api_refused(*await call(first, "/mfa/challenge", {"challengeId": first_id + "x" * 64, "token": code}))
    answer, data = await call(first, "/mfa/challenge", {"challengeId": first_id, "token": code})
    assert answer.status == 200 and data["user"]["id"] == "alice" and data["token"]
    assert SESSION_COOKIE in answer.cookies()


async def test_a_pending_sealed_under_a_retired_key_is_refused(make_stack: StackFactory) -> None:
    """T-G12. A pending sign-in sealed under key test-1: while test-1 is still in the keyring (decrypt-only after a
    rotation) such a sign-in completes; once test-1 is removed, the other one is refused (401 challenge_expired,
    nothing released) although alice's code is right, as a new sign-in under the new key shows with the same code."""
    stack = await builtin_stack(make_stack)
    secret = await api_enrolled_alice(stack)
    first, first_id = await api_pending(stack)
    second, second_id = await api_pending(stack)
    keyring_file = Path(stack.settings.secrets.keyring.removeprefix("file:"))
    old = json.loads(keyring_file.read_text())
    assert old["primary"] == "test-1"
    new = json.loads(new_keyring_document("test-2"))
    old["keys"][0]["status"] = "decrypt-only"
    keyring_file.write_text(json.dumps({"primary": "test-2", "keys": new["keys"] + old["keys"]}))
    await stack.runtime.secrets.cache.refresh()  # what SIGHUP or the cache TTL does in a running gateway
    answer, data = await call(first, "/mfa/challenge", {"challengeId": first_id, "token": stack.code(secret)})
    assert answer.status == 200 and data["token"]  # decrypt-only still opens (and moves the TOTP secret to test-2)
    enrollment = await stack.runtime.store.get_enrollment("alice")
    assert enrollment is not None and enrollment.key_id == "test-2"
    keyring_file.write_text(json.dumps({"primary": "test-2", "keys": new["keys"]}))
    await stack.runtime.secrets.cache.refresh()
    assert set(stack.runtime.keys.keyring.statuses) == {"test-2"}
    stack.clock.advance(30)
    code = stack.code(secret)
    assert_api_refused(*await call(second, "/mfa/challenge", {"challengeId": second_id, "token": code}))
    third, third_id = await api_pending(stack)
    answer, data = await call(third, "/mfa/challenge", {"challengeId": third_id, "token": code})
    assert answer.status == 200 and data["token"]


# -- T-I7: the client behind trusted proxies, and networks rules decided on it ----------------------------------

OFFICE = "203.0.113.0/24"
BLOCKED = "198.51.100.0/24"
NETWORK_RULES = {
    "policy": {
        "default": "mfa",
        "rules": [
            {"name": "blocked network", "networks": [BLOCKED], "action": "deny"},
            {"name": "office", "path": r"^/api/whoami$", "networks": [OFFICE], "action": "bypass"},
            {"name": "the proxies' own range", "path": r"^/api/whoami$", "networks": ["127.0.0.0/8"], "action": "deny"},
        ],
    }
}
TRUSTED = {"trusted_proxies": ["127.0.0.1/32", "10.0.0.0/8"]}
PEER = "127.0.0.1"

# X-Forwarded-For header lines sent by the (trusted) peer → the client the gateway sees, and what became of a
# GET /api/whoami: "app" (the office bypass let it through), "forbidden" (the blocked-network or the proxies' range
# deny), or "unauthenticated" (no rule for this client: the default mfa rule wants a sign-in).
HOP_CASES: list[tuple[str, list[str], str, str]] = [
    ("office-behind-one-proxy", ["203.0.113.9, 10.1.2.3"], "203.0.113.9", "app"),
    ("spoofed-left-most-hop-is-ignored", ["198.51.100.7, 203.0.113.9, 10.1.2.3"], "203.0.113.9", "app"),
    ("blocked-client-prepending-an-office-hop", ["203.0.113.9, 198.51.100.7, 10.1.2.3"], "198.51.100.7", "forbidden"),
    ("outside-client-prepending-an-office-hop", ["203.0.113.9, 192.0.2.44"], "192.0.2.44", "unauthenticated"),
    ("several-trusted-hops-skipped", ["198.51.100.7, 203.0.113.9, 10.0.0.5, 10.1.2.3"], "203.0.113.9", "app"),
    ("header-lines-joined-in-order", ["198.51.100.7", "203.0.113.9, 10.1.2.3"], "203.0.113.9", "app"),
    ("blank-hops-skipped", [" , 203.0.113.9 ,, 10.1.2.3 , "], "203.0.113.9", "app"),
    ("garbage-beyond-the-nearest-untrusted-hop", ["not-an-ip, 203.0.113.9, 10.1.2.3"], "203.0.113.9", "app"),
    # An unparsable nearest untrusted hop leaves the client unknown: no networks rule matches it, neither a hop
    # further left nor the proxies' own range (the access log then names the peer).
    ("garbage-as-the-nearest-untrusted-hop", ["203.0.113.9, not-an-ip, 10.1.2.3"], PEER, "unauthenticated"),
    ("hop-with-a-port-counts-without-it", ["203.0.113.9, 198.51.100.7:4711"], "198.51.100.7", "forbidden"),
    ("bracketed-ipv6-hop-with-a-port", ["203.0.113.9, [2001:db8::9]:4711"], "2001:db8::9", "unauthenticated"),
    ("only-trusted-hops-the-client-is-the-proxy", ["10.0.0.5, 10.1.2.3"], PEER, "forbidden"),
    ("ipv6-client", ["203.0.113.9, 2001:db8::9, 10.1.2.3"], "2001:db8::9", "unauthenticated"),
    (
        "ipv4-mapped-client-counts-as-ipv4",
        ["198.51.100.7, ::ffff:203.0.113.9"],
        "203.0.113.9",
        "app",
    ),
]


async def _whoami(stack: Stack, caplog: pytest.LogCaptureFixture, forwarded_for: list[str]) -> tuple[str, str, Any]:
    """GET /api/whoami with these X-Forwarded-For lines: what became of it (see HOP_CASES), the client address the
    gateway logged for it, and the JSON body."""
    headers = CIMultiDict([("Accept", "application/json"), *(("X-Forwarded-For", line) for line in forwarded_for)])
    caplog.clear()
    async with aiohttp.ClientSession() as session, session.get(stack.url + "/api/whoami", headers=headers) as answer:
        body = await answer.json()
    logged = [r for r in caplog.records if r.name == "mfa_gateway.access"]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    outcome = "app" if "identityHeaders" in body else str(body["code"])  # the demo app's whoami is 401 unsigned
    return outcome, str(logged[0].__dict__["client_ip"]), body


async def test_behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """T-I7. From a trusted proxy, the client is the nearest X-Forwarded-For hop outside trusted_proxies (walking
    from the right, over several header lines, skipping blank hops; a port is dropped; an unparsable nearest hop leaves
    the client unknown, never the proxy's own address).
    The access log names that client, and the networks rules are decided on it: a client cannot reach the office
    bypass or escape the blocked-network deny by prepending a hop of its choosing."""
    caplog.set_level(logging.INFO, logger="mfa_gateway.access")
    stack = await make_stack({**TRUSTED, **NETWORK_RULES})
    seen = {name: await _whoami(stack, caplog, lines) for name, lines, _, _ in HOP_CASES}
    expected = {name: (outcome, client) for name, _, client, outcome in HOP_CASES}
    assert {name: (outcome, client) for name, (outcome, client, _) in seen.items()} == expected
    _, _, body = seen["spoofed-left-most-hop-is-ignored"]
    # the app receives the trusted chain extended with the peer (it may apply its own trusted-proxy rule)
    assert body["identityHeaders"]["x-forwarded-for"] == "198.51.100.7, 203.0.113.9, 10.1.2.3, 127.0.0.1"


async def test_forward_auth_decides_networks_rules_on_the_nearest_untrusted_hop(make_stack: StackFactory) -> None:
    """T-I7. Forward-auth asked by a trusted ingress decides the same way: the office client behind a spoofed
    left-most hop is let through (bypass), a blocked-network client prepending an office hop is refused (403)."""
    stack = await make_stack({**TRUSTED, **NETWORK_RULES})
    asked = {
        "X-Forwarded-Method": "GET",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "app.test",
        "X-Forwarded-Uri": "/api/whoami",
        "Accept": "application/json",
    }
    office = await stack.raw("GET", "/_mfa/auth", {**asked, "X-Forwarded-For": "198.51.100.7, 203.0.113.9, 10.1.2.3"})
    assert office.status == 200
    blocked = await stack.raw("GET", "/_mfa/auth", {**asked, "X-Forwarded-For": "203.0.113.9, 198.51.100.7, 10.1.2.3"})
    assert blocked.status == 403 and json.loads(blocked.body)["code"] == "forbidden"


async def test_from_an_untrusted_peer_x_forwarded_for_is_ignored(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """T-I7. The peer (127.0.0.1) outside trusted_proxies: whatever X-Forwarded-For says, the client is the peer.
    An office address sent in the header reaches neither the office bypass nor the access log: the loopback deny
    rule decides."""
    caplog.set_level(logging.INFO, logger="mfa_gateway.access")
    rules = [
        {"name": "office", "path": r"^/api/whoami$", "networks": [OFFICE], "action": "bypass"},
        {"name": "loopback", "path": r"^/api/whoami$", "networks": ["127.0.0.0/8"], "action": "deny"},
        {"name": "open", "path": r"^/public$", "action": "bypass"},
    ]
    stack = await make_stack({"trusted_proxies": ["10.0.0.0/8"], "policy": {"rules": rules}})
    for lines in (["203.0.113.9"], ["203.0.113.9, 10.1.2.3"], ["10.1.2.3"], ["198.51.100.7", "203.0.113.9"]):
        outcome, client, _ = await _whoami(stack, caplog, lines)
        assert (outcome, client) == ("forbidden", PEER), lines
    public = await stack.raw("GET", "/public", {"X-Forwarded-For": "203.0.113.9, 10.1.2.3"})
    assert public.status == 200


# -- T-G9: while sessions cannot be checked, pages answer 503 as pages ---------------------------------------


def assert_503_page(response: RawResponse, title: bytes) -> None:
    """503 as an HTML page with Retry-After and the pages' security headers: not JSON, not a traceback."""
    assert response.status == 503, (response.status, response.body[:300])
    assert response.header("Content-Type") == "text/html; charset=utf-8"
    assert response.header("Retry-After") == "5"
    assert response.header("Content-Security-Policy") == html.csp()
    assert response.header("X-Frame-Options") == "DENY"
    assert response.header("Cache-Control") == "no-store"
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert response.header("Referrer-Policy") == "no-referrer"
    assert response.body.startswith(b"<!doctype html>") and b"<h1>" + title + b"</h1>" in response.body
    assert b"try again shortly" in response.body
    assert b"Traceback" not in response.body and b'"code"' not in response.body
    assert b'name="code"' not in response.body  # no form to go on with


async def test_pages_answer_503_as_html_while_revocations_are_unavailable(
    make_stack: StackFactory, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """T-G9. Redis stopped, so the revocation view is stale: a browser presenting its stepped-up session to the
    challenge, backup-code and disable pages (GET, and a form POST), or a sign-in held in Redis to the challenge
    page, gets a 503 HTML page with Retry-After: 5 and the pages' CSP and security headers; a browser asking for a
    protected app page gets a 503 page too. The log says which dependency each page lacked, and why Redis failed."""
    from tests.helpers.servers import running_redis

    with running_redis(tmp_path_factory.mktemp("redis")) as redis_server:
        stack = await make_stack({"state": {"backend": "redis", "url": redis_server.url}})
        secret = await enrolled_alice(stack)
        held, _ = await held_sign_in(stack, "bob")
        shown = await stack.raw("GET", "/_mfa/backup-codes", {"Accept": "text/html"})
        token = re.search(rb'name="csrf" value="([^"]+)"', shown.body)
        assert shown.status == 200 and token is not None
        redis_server.stop()
        revocations = stack.runtime.revocations
        await eventually(lambda: not revocations.healthy, "the revocation feed to notice Redis is gone", within=10)
        browser = {"Accept": "text/html"}
        for page in ("/_mfa/challenge?rd=%2Fadmin", "/_mfa/backup-codes", "/_mfa/disable"):
            assert_503_page(await stack.raw("GET", page, browser), b"Please try again shortly")
        posted = await stack.form("/_mfa/backup-codes", {"code": stack.code(secret), "csrf": token.group(1).decode()})
        assert_503_page(posted, b"Please try again shortly")
        assert_503_page(await held.raw("GET", "/_mfa/challenge?rd=%2Fadmin", browser), b"Please try again shortly")
        assert_503_page(await stack.raw("GET", "/admin", browser), b"Request refused")
    said = [(r.name, r.getMessage()) for r in caplog.records]
    assert said.count(("mfa_gateway.web", "dependency unavailable: redis")) >= 5  # the five pages above
    assert ("mfa_gateway.adapters.state.redis", "redis unavailable: ConnectionError") in said


async def test_networks_written_in_ipv4_mapped_form_match_ipv4_clients(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """T-I7. ``trusted_proxies`` and ``networks`` written in IPv4-mapped IPv6 form (``::ffff:127.0.0.1/128``,
    ``::ffff:203.0.113.0/120``) mean the IPv4 networks they stand for: the loopback proxy is trusted and the office
    client behind it reaches the office bypass."""
    caplog.set_level(logging.INFO, logger="mfa_gateway.access")
    mapped = {
        "trusted_proxies": ["::ffff:127.0.0.1/128"],
        "policy": {
            "default": "mfa",
            "rules": [
                {"name": "office", "path": r"^/api/whoami$", "networks": ["::ffff:203.0.113.0/120"], "action": "bypass"}
            ],
        },
    }
    stack = await make_stack(mapped)
    outcome, client, _ = await _whoami(stack, caplog, ["203.0.113.9"])
    assert (outcome, client) == ("app", "203.0.113.9")
