"""Remembered devices through the real gateway in reverse-proxy mode, in front of the demo app's own login
(login interception): the code is skipped within the device's age, and not after it, not for another user, not
after signing out everywhere (on another replica too), and not on a rule that remembers no device."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from mfa_gateway.web.server import start_site
from tests.helpers.servers import bound_port
from tests.helpers.webauthn import SoftAuthenticator
from tests.integration.proxy.conftest import RawResponse, Stack, StackFactory
from tests.integration.proxy.test_forward_auth import FORWARD, forward_stack, nginx
from tests.integration.proxy.test_webauthn_pages import ORIGIN, RP_ID, WEBAUTHN, key_answer, register

DAY = 86400
DEVICE = "mfa-device"  # the demo's cookies are not Secure, so the name has no __Host- prefix
SESSION_COOKIES = ("mfa_session", "legacy_session", "mfa_session_pending")
REMEMBERING = {
    "policy": {
        "default": "mfa",
        "rules": [
            {"name": "public", "path": r"^/(public|static/.*|login|ws|slow|upload)?$", "action": "bypass"},
            {"name": "admin", "path": r"^/admin(/|$)", "action": "mfa", "remember_device": 30 * DAY},
            {"name": "reports", "path": r"^/reports(/|$)", "action": "mfa"},
        ],
    }
}


async def remembering_stack(make_stack: StackFactory, **extra: Any) -> Stack:
    return await make_stack({**REMEMBERING, **extra.pop("overrides", {})}, **extra)


async def enrolled(stack: Stack, user: str = "alice") -> str:
    """``user`` signs in to the app and enrolls through the pages; then signs out of everything but the device."""
    await stack.app_login(user)
    secret, _ = await stack.enroll_via_pages()
    forget_sessions(stack)
    stack.clock.advance(30)
    return secret


def forget_sessions(stack: Stack) -> None:
    """The browser closes: its session cookies go, a remembered device's cookie stays."""
    for name in SESSION_COOKIES:
        stack.jar.pop(name, None)


async def remember_on_challenge(stack: Stack, secret: str, user: str = "alice") -> str:
    """Sign in to the app, answer the challenge with the box ticked; the device cookie set."""
    await stack.app_login(user)
    page = await stack.raw("GET", "/_mfa/challenge?rd=/admin", {"Accept": "text/html"})
    assert page.status == 200 and b"Remember this device for 30 days" in page.body, page.body[:800]
    token = re.search(rb'name="csrf" value="([^"]+)"', page.body)
    assert token is not None
    fields = {"code": stack.code(secret), "rd": "/admin", "remember": "1", "csrf": token.group(1).decode()}
    answer = await stack.form("/_mfa/challenge", fields)
    assert answer.status == 303 and answer.header("Location") == "/admin", answer.body[:500]
    assert DEVICE in stack.jar
    return stack.jar[DEVICE]


async def challenge_after_app_login(stack: Stack, user: str = "alice") -> Any:
    """A fresh app login; the challenge page's answer (303 onwards: the code was skipped; 200: the form)."""
    forget_sessions(stack)
    await stack.app_login(user)
    return await stack.raw("GET", "/_mfa/challenge?rd=/admin", {"Accept": "text/html"})


def used(stack: Stack) -> list[tuple[str, str | None, str]]:
    return [(e.result, e.user_id, e.detail.get("reason", "")) for e in stack.audit.events if e.event == "device.used"]


async def test_a_remembered_device_skips_the_code_within_its_age_and_not_after(make_stack: StackFactory) -> None:
    """Ticked once, the next app login skips the code: the challenge page releases the held login at once and
    /admin opens. 30 days later (the clock moved, nothing slept) the form is back, with no stand-in."""
    stack = await remembering_stack(make_stack)
    secret = await enrolled(stack)
    await remember_on_challenge(stack, secret)
    assert (await stack.raw("GET", "/admin")).status == 200

    stack.clock.advance(29 * DAY)
    skipped = await challenge_after_app_login(stack)
    assert skipped.status == 303 and skipped.header("Location") == "/admin"  # the app's held answer, released
    admin = await stack.raw("GET", "/admin", {"Accept": "text/html"})
    assert admin.status == 200 and b"Signed in as alice" in admin.body

    stack.clock.advance(DAY)
    again = await challenge_after_app_login(stack)
    assert again.status == 200 and b'name="code"' in again.body
    assert used(stack) == [("success", "alice", ""), ("failure", "alice", "expired")]


async def test_a_device_cookie_is_not_for_another_user(make_stack: StackFactory) -> None:
    """alice's device cookie beside bob's app login: bob is asked for his code, and nothing is released."""
    stack = await remembering_stack(make_stack)
    bob_secret = await enrolled(stack, "bob")
    alice_secret = await enrolled(stack, "alice")
    assert bob_secret
    await remember_on_challenge(stack, alice_secret)
    swapped = await challenge_after_app_login(stack, "bob")
    assert swapped.status == 200 and b'name="code"' in swapped.body
    assert "legacy_session" not in stack.jar
    assert used(stack)[-1] == ("failure", "bob", "other_user")


async def test_a_session_a_device_stepped_up_opens_only_rules_that_remember(make_stack: StackFactory) -> None:
    """Stepped up by a device on /admin, the session is no MFA for /reports, whose rule remembers no device: the
    gate sends it to the challenge, and that page offers no box and skips nothing."""
    stack = await remembering_stack(make_stack)
    secret = await enrolled(stack)
    await remember_on_challenge(stack, secret)
    await challenge_after_app_login(stack)
    assert (await stack.raw("GET", "/admin")).status == 200
    reports = await stack.raw("GET", "/reports", {"Accept": "text/html"})
    assert reports.status == 302 and reports.header("Location") == "/_mfa/challenge?rd=%2Freports"
    page = await stack.raw("GET", "/_mfa/challenge?rd=/reports", {"Accept": "text/html"})
    assert page.status == 200 and b'name="code"' in page.body and b"Remember this device" not in page.body


async def test_sign_out_everywhere_forgets_the_device_on_every_replica(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    """Two gateways on one database and one app: the device remembered on the first skips the code on the second
    too; after "sign out everywhere" on the first, the second asks for the code again."""
    shared = {"overrides": {"store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"}}}
    first = await remembering_stack(make_stack, name="first", **shared)
    second = await remembering_stack(make_stack, name="second", app_port=first.app_port, **shared)
    second.runtime.keys = first.runtime.keys  # the same keys, as replicas have
    secret = await enrolled(first)
    device = await remember_on_challenge(first, secret)
    second.jar[DEVICE] = device
    assert (await challenge_after_app_login(second)).status == 303

    out = await first.raw("POST", "/_mfa/api/logout", {"Content-Type": "application/json"}, b'{"everywhere": true}')
    assert out.status == 200 and out.cookies().get(DEVICE) == '""'  # expired in this browser
    second.jar[DEVICE] = device  # a copy kept elsewhere
    refused = await challenge_after_app_login(second)
    assert refused.status == 200 and b'name="code"' in refused.body
    assert used(second)[-1] == ("failure", "alice", "revoked")


async def test_the_box_unticked_remembers_nothing(make_stack: StackFactory) -> None:
    """Answering the challenge without the box sets no device cookie and keeps no grant."""
    stack = await remembering_stack(make_stack)
    secret = await enrolled(stack)
    await stack.app_login()
    await stack.csrf_form("/_mfa/challenge?rd=/admin", "/_mfa/challenge", {"code": stack.code(secret), "rd": "/admin"})
    assert DEVICE not in stack.jar
    assert await stack.runtime.devices.grants("alice") == []


async def test_the_device_cookie_never_reaches_the_application(make_stack: StackFactory) -> None:
    """Like the session cookie, the device cookie is the gateway's own: the app behind it never receives it."""
    seen: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie", ""))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/public", echo)
    runner = await start_site(app, "127.0.0.1", 0)
    try:
        stack = await remembering_stack(make_stack, app_port=bound_port(runner))
        response = await stack.raw("GET", "/public", cookies={DEVICE: "x" * 43, "theirs": "1"})
        assert response.status == 200 and seen == ["theirs=1"]
    finally:
        await runner.cleanup()


# -- forward-auth mode ---------------------------------------------------------------------------------------

FORWARD_POLICY = {
    "default": "mfa",
    "rules": [
        {"path": r"^/public(/|$)", "action": "bypass"},
        {"name": "app", "action": "mfa", "remember_device": 30 * DAY},
    ],
}
SECURE_DEVICE = "__Host-mfa-device"
JSON = {"Content-Type": "application/json"}


def set_cookie(response: RawResponse, name: str) -> str:
    return next(v for k, v in response.headers if k.lower() == "set-cookie" and v.startswith(name + "="))


async def builtin_sign_in(stack: Stack) -> RawResponse:
    """carol signs in with her password (the session cookie gone, the device cookie kept); the challenge page's
    answer."""
    stack.jar.pop("mfa_session", None)
    signed = await stack.csrf_form(
        "/_mfa/signin", "/_mfa/signin", {"username": "carol", "password": "carol password 1", "rd": "/admin"}
    )
    assert signed.status == 303 and signed.header("Location") == "/_mfa/challenge?rd=%2Fadmin"
    return await stack.raw("GET", "/_mfa/challenge?rd=/admin", {"Accept": "text/html"})


async def test_forward_auth_a_remembered_device_skips_the_code_within_its_age(make_stack: StackFactory) -> None:
    """Builtin sign-in behind a forward-auth proxy: with the box ticked, the device cookie is __Host-, HttpOnly,
    Secure, SameSite=Lax, Path=/, no Domain, Max-Age the rule's 30 days. The next password sign-in skips the code
    and {prefix}/auth allows the new session; 30 days on, the code is asked again and /auth refuses."""
    stack = await forward_stack(make_stack, policy=FORWARD_POLICY)
    await stack.csrf_form(
        "/_mfa/signin", "/_mfa/signin", {"username": "carol", "password": "carol password 1", "rd": "/admin"}
    )
    secret, _ = await stack.enroll_via_pages()
    stack.clock.advance(30)
    page = await builtin_sign_in(stack)
    assert page.status == 200 and b"Remember this device for 30 days" in page.body
    token = re.search(rb'name="csrf" value="([^"]+)"', page.body)
    assert token is not None
    fields = {"code": stack.code(secret), "rd": "/admin", "remember": "1", "csrf": token.group(1).decode()}
    answer = await stack.form("/_mfa/challenge", fields)
    assert answer.status == 303
    attributes = {part.strip() for part in set_cookie(answer, SECURE_DEVICE).split(";")[1:]}
    assert attributes == {"HttpOnly", "Secure", "SameSite=Lax", "Path=/", f"Max-Age={30 * DAY}"}
    assert len(stack.jar[SECURE_DEVICE]) == 43

    stack.clock.advance(10 * DAY)
    skipped = await builtin_sign_in(stack)
    assert skipped.status == 303 and skipped.header("Location") == "/admin"
    allowed = await stack.raw("GET", "/_mfa/auth", nginx("https://app.example.test/admin"))
    assert allowed.status == 200 and allowed.header("Remote-User") == "carol"

    stack.clock.advance(20 * DAY)
    asked = await builtin_sign_in(stack)
    assert asked.status == 200 and b'name="code"' in asked.body
    refused = await stack.raw("GET", "/_mfa/auth", nginx("https://app.example.test/admin", Accept="text/html"))
    assert refused.status == 401 and json.loads(refused.body)["code"] == "mfa_required"


HEADER_IDENTITY = {"source": "trusted_header", "header": "X-Forwarded-User", "users_file": None}


async def header_enrolled(stack: Stack, user: str) -> str:
    """``user`` (named by the trusted proxy's header) enrolls through the API; returns the TOTP secret."""
    who = {**JSON, "X-Forwarded-User": user}
    enabled = await stack.raw("POST", "/_mfa/api/mfa/enable", who, b"{}", cookies={})
    secret = json.loads(enabled.body)["data"]["secret"]
    body = json.dumps({"token": stack.code(secret)}).encode()
    assert (await stack.raw("POST", "/_mfa/api/mfa/verify", who, body, cookies={})).status == 200
    stack.clock.advance(30)
    return str(secret)


async def test_forward_auth_behind_an_sso_header_not_for_another_user_nor_after_signing_out_everywhere(
    make_stack: StackFactory,
) -> None:
    """An SSO proxy names the user (trusted header). carol asks the API to remember her browser; later the challenge
    page skips her code and /auth allows. bob's header with carol's device cookie is asked for his code. After
    carol signs out everywhere, her device cookie skips nothing."""
    stack = await make_stack({**FORWARD, "policy": FORWARD_POLICY, "identity": HEADER_IDENTITY})
    await header_enrolled(stack, "bob")
    secret = await header_enrolled(stack, "carol")
    carol = {**JSON, "X-Forwarded-User": "carol"}
    body = json.dumps({"token": stack.code(secret), "rememberDevice": True}).encode()
    remembered = await stack.raw("POST", "/_mfa/api/mfa/challenge", carol, body, cookies={})
    assert remembered.status == 200, remembered.body
    device = remembered.cookies()[SECURE_DEVICE]

    stack.clock.advance(DAY)
    asked = await stack.raw(
        "GET", "/_mfa/auth", nginx("https://app.example.test/admin", **{"X-Forwarded-User": "carol"})
    )
    assert asked.status == 401 and json.loads(asked.body)["code"] == "mfa_required"
    page = {"Accept": "text/html", "X-Forwarded-User": "carol"}
    skipped = await stack.raw("GET", "/_mfa/challenge?rd=/admin", page, cookies={SECURE_DEVICE: device})
    assert skipped.status == 303 and skipped.header("Location") == "/admin"
    session = skipped.cookies()["mfa_session"]
    allowed = await stack.raw(
        "GET",
        "/_mfa/auth",
        nginx("https://app.example.test/admin", **{"X-Forwarded-User": "carol"}),
        cookies={"mfa_session": session},
    )
    assert allowed.status == 200 and allowed.header("Remote-User") == "carol"

    bobs_page = {"Accept": "text/html", "X-Forwarded-User": "bob"}
    swapped = await stack.raw("GET", "/_mfa/challenge?rd=/admin", bobs_page, cookies={SECURE_DEVICE: device})
    assert swapped.status == 200 and b'name="code"' in swapped.body

    out = await stack.raw("POST", "/_mfa/api/logout", carol, b'{"everywhere": true}', cookies={"mfa_session": session})
    assert out.status == 200
    after = await stack.raw("GET", "/_mfa/challenge?rd=/admin", page, cookies={SECURE_DEVICE: device})
    assert after.status == 200 and b'name="code"' in after.body


async def test_a_security_key_can_remember_the_device_too(make_stack: StackFactory) -> None:
    """alice answers the challenge with her key, the key form's own box ticked: the device is remembered as with a
    code, and her next app login skips the challenge. Unticked (the first answer), nothing is remembered."""
    stack = await remembering_stack(make_stack, overrides=WEBAUTHN)
    await stack.app_login()
    await stack.enroll_via_pages()
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(stack, key)
    forget_sessions(stack)
    await stack.app_login()
    page = await stack.raw("GET", "/_mfa/challenge?rd=/admin", {"Accept": "text/html"})
    keys_form = page.body.split(b'data-webauthn="authenticate"')[1].split(b"</form>")[0]
    assert b'id="remember-key" name="remember"' in keys_form, page.body[:1500]
    assert page.body.count(b'name="remember"') == 2 and page.body.count(b'id="remember"') == 1
    unticked = await stack.form("/_mfa/challenge/webauthn", await key_answer(stack, key))
    assert unticked.status == 303 and DEVICE not in stack.jar, unticked.body[:500]
    forget_sessions(stack)
    await stack.app_login()
    ticked = await stack.form("/_mfa/challenge/webauthn", {**await key_answer(stack, key), "remember": "1"})
    assert ticked.status == 303 and ticked.header("Location") == "/admin", ticked.body[:500]
    assert DEVICE in stack.jar
    again = await challenge_after_app_login(stack)
    assert again.status == 303 and again.header("Location") == "/admin", again.body[:500]
