"""Builtin sign-in pages, account pages, enrollment policy, identity-only rules, and the Redis-free hot path."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
import redis.asyncio
from sqlalchemy import event

from mfa_gateway.core.model import TotpAlgorithm, TotpParams
from tests.helpers.gateway import add_user, current_code
from tests.integration.proxy.conftest import Stack, StackFactory

BUILTIN: dict[str, Any] = {
    "mode": "production",
    "identity": {"source": "builtin", "users_file": "users.yaml", "upstream_login": None},
    "session": {"cookie_name": "mfa_session", "secure": True},
    "policy": {
        "default": "mfa",
        "rules": [
            {"path": r"^/public$", "action": "bypass"},
            {"path": r"^/api/whoami$", "action": "identity"},
        ],
    },
}


async def builtin_stack(make_stack: StackFactory, extra: dict[str, Any] | None = None) -> Stack:
    stack = await make_stack({**BUILTIN, **(extra or {})})
    add_user(stack.settings, "carol", "carol password 1", "carol@example.test", ("staff", "admins"))
    return stack


async def sign_in(stack: Stack, rd: str = "/admin") -> Any:
    return await stack.csrf_form(
        f"/_mfa/signin?rd={rd}", "/_mfa/signin", {"username": "carol", "password": "carol password 1", "rd": rd}
    )


async def test_builtin_sign_in_then_enroll_then_through(make_stack: StackFactory) -> None:
    """Builtin: /admin → sign-in page → (not enrolled) enrollment → back to /admin with identity headers."""
    stack = await builtin_stack(make_stack)
    first = await stack.raw("GET", "/admin", {"Accept": "text/html"})
    assert first.status == 302 and first.header("Location") == "/_mfa/signin?rd=%2Fadmin"
    signed = await sign_in(stack)
    assert signed.status == 303 and signed.header("Location") == "/admin"
    challenged = await stack.raw("GET", "/admin", {"Accept": "text/html"})
    assert challenged.header("Location") == "/_mfa/challenge?rd=%2Fadmin"
    await stack.enroll_via_pages()
    whoami = json.loads((await stack.raw("GET", "/api/whoami")).body)
    assert whoami["identityHeaders"]["remote-user"] == "carol"
    assert whoami["identityHeaders"]["remote-email"] == "carol@example.test"
    assert whoami["identityHeaders"]["remote-groups"] == "staff,admins"


async def test_wrong_password_on_the_sign_in_page(make_stack: StackFactory) -> None:
    """A wrong password re-renders the form with 401 and sets no session."""
    stack = await builtin_stack(make_stack)
    response = await stack.csrf_form(
        "/_mfa/signin", "/_mfa/signin", {"username": "carol", "password": "nope", "rd": "/"}
    )
    assert response.status == 401 and b"Invalid user name or password." in response.body
    assert "mfa_session" not in stack.jar


async def test_identity_rule_needs_only_the_first_factor(make_stack: StackFactory) -> None:
    """An identity rule lets a signed-in user through without MFA and refuses an anonymous one."""
    stack = await builtin_stack(make_stack)
    anonymous = await stack.raw("GET", "/api/whoami", {"Accept": "application/json"})
    assert anonymous.status == 401
    await sign_in(stack)
    signed = await stack.raw("GET", "/api/whoami")
    assert signed.status in (200, 401)  # the app's own answer; the gateway let it through
    assert json.loads(signed.body)["identityHeaders"]["remote-user"] == "carol"


async def test_enrollment_policy_deny(make_stack: StackFactory) -> None:
    """With enrollment.unenrolled: deny, a user without MFA gets a 403 page instead of enrollment."""
    stack = await builtin_stack(make_stack, {"enrollment": {"unenrolled": "deny"}})
    await sign_in(stack)
    page = await stack.raw("GET", "/_mfa/challenge?rd=/admin", {"Accept": "text/html"})
    assert page.status == 403 and b"Ask an administrator" in page.body


async def test_backup_codes_page_regenerates_and_disable_signs_out(make_stack: StackFactory) -> None:
    """The account pages: new backup codes need a current code; disabling MFA revokes the session."""
    stack = await builtin_stack(make_stack)
    await sign_in(stack)
    secret, old_codes = await stack.enroll_via_pages()
    stack.clock.advance(30)
    fresh = await stack.csrf_form("/_mfa/backup-codes", "/_mfa/backup-codes", {"code": stack.code(secret)})
    new_codes = re.findall(rb"<li>([0-9A-Z-]{14})</li>", fresh.body)
    assert fresh.status == 200 and len(new_codes) == 10 and not {c.decode() for c in new_codes} & set(old_codes)
    before = dict(stack.jar)
    stack.clock.advance(30)
    off = await stack.csrf_form("/_mfa/disable", "/_mfa/disable", {"code": stack.code(secret)})
    assert off.status == 200 and b"signed out everywhere" in off.body
    replay = await stack.raw("GET", "/admin", {"Accept": "text/html"}, cookies=before)
    assert replay.status == 302


async def test_an_authenticated_proxied_request_sends_no_redis_command(
    make_stack: StackFactory, redis_url: str
) -> None:
    """The hot path: 50 authenticated proxied requests cause zero Redis commands (revocations are local) and no
    SQL statement (the account page's session records are written at issuance only, never read here)."""
    stack = await make_stack({"state": {"backend": "redis", "url": redis_url, "key_prefix": "hot:"}})
    await stack.app_login()
    await stack.enroll_via_pages()
    store: Any = stack.runtime.store
    statements: list[str] = []
    event.listen(store.engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(str(args[2])))
    read, transaction = store._read, store._transaction
    store._read = lambda *a, **k: statements.append("read") or read(*a, **k)
    store._transaction = lambda *a, **k: statements.append("transaction") or transaction(*a, **k)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await stack.runtime.sessions.live("alice")
        assert statements, "the counting sees the store's reads"
        statements.clear()
        before = (await client.info("stats"))["total_commands_processed"]
        for _ in range(50):
            assert (await stack.raw("GET", "/admin")).status == 200
        after = (await client.info("stats"))["total_commands_processed"]
    finally:
        await client.aclose()
    assert after - before <= 1, f"{after - before - 1} Redis commands for 50 proxied requests"  # INFO itself is one
    assert statements == [], f"{len(statements)} SQL statements for 50 proxied requests"


async def test_enrollment_deny_blocks_self_service_but_admin_enrollment_works(make_stack: StackFactory) -> None:
    """With unenrolled: deny, /enroll and api/mfa/enable refuse to start an enrollment; one started by an
    administrator (users enroll) is confirmed by the user with a code, after which MFA routes open."""
    from mfa_gateway.service.mfa import Caller

    stack = await builtin_stack(make_stack, {"enrollment": {"unenrolled": "deny"}})
    await sign_in(stack)
    start_page = await stack.raw("GET", "/_mfa/enroll?rd=/admin", {"Accept": "text/html"})
    assert start_page.status == 403
    api = await stack.raw("POST", "/_mfa/api/mfa/enable", {"Content-Type": "application/json"}, b"{}")
    assert api.status == 403 and json.loads(api.body)["code"] == "enrollment_disabled"
    started = await stack.runtime.mfa.start_enrollment(Caller("carol", None))  # what `users enroll` does
    confirm = await stack.csrf_form(
        "/_mfa/enroll?rd=/admin", "/_mfa/enroll/confirm", {"code": stack.code(started.secret), "rd": "/admin"}
    )
    assert confirm.status == 303 and confirm.header("Location") == "/admin"
    through = await stack.raw("GET", "/admin", {"Accept": "text/html"})
    assert through.header("Location") == "/login?next=/admin", "the gateway let it through to the app's own login"


ACCOUNT_PAGES = ("/_mfa/backup-codes", "/_mfa/disable")


async def test_account_pages_need_the_second_factor(make_stack: StackFactory) -> None:
    """Backup codes and disable act only for a session with a second factor. A password-only session is sent to
    the challenge (GET, and POST with a valid CSRF pair and a current code), and nothing is regenerated or turned
    off; with no session at all, builtin identity sends the browser to sign in."""
    stack = await builtin_stack(make_stack)
    await sign_in(stack)
    secret, backup = await stack.enroll_via_pages()
    events = len(stack.audit.events)

    stack.jar.clear()
    for page in ACCOUNT_PAGES:
        expected = "/_mfa/signin?" + urlencode({"rd": page})
        shown = await stack.raw("GET", page, {"Accept": "text/html"})
        assert (shown.status, shown.header("Location")) == (303, expected), page
        stack.clock.advance(30)
        sent = await stack.csrf_form("/_mfa/logout", page, {"code": stack.code(secret)})
        assert (sent.status, sent.header("Location")) == (303, expected), (page, sent.body[:300])

    stack.jar.clear()
    assert (await sign_in(stack)).status == 303
    assert stack.settings.session.cookie_name in stack.jar, "the sign-in set no first-factor session"
    for page in ACCOUNT_PAGES:
        expected = "/_mfa/challenge?" + urlencode({"rd": page})
        shown = await stack.raw("GET", page, {"Accept": "text/html"})
        assert (shown.status, shown.header("Location")) == (303, expected), (page, shown.body[:300])
        stack.clock.advance(30)
        sent = await stack.csrf_form("/_mfa/logout", page, {"code": stack.code(secret)})
        assert (sent.status, sent.header("Location")) == (303, expected), (page, sent.body[:300])

    acted = [e.event for e in stack.audit.events[events:] if e.event.startswith(("mfa.backup_codes", "mfa.disable"))]
    assert acted == [], "a password-only session reached the code check of an account page"
    status = await stack.runtime.mfa.status("carol")
    assert status.active and status.backup_codes_left == 10
    stepped_up = await stack.csrf_form(
        "/_mfa/challenge?rd=/admin", "/_mfa/challenge", {"code": backup[0], "rd": "/admin"}
    )
    assert (stepped_up.status, stepped_up.header("Location")) == (303, "/admin"), (
        "an old backup code failed: regenerated?"
    )
    assert (await stack.raw("GET", "/_mfa/backup-codes", {"Accept": "text/html"})).status == 200


async def test_account_pages_without_a_session_under_trusted_header(make_stack: StackFactory) -> None:
    """trusted_header has no sign-in page of its own: a request to an account page without any identity gets the
    401 "Sign-in required" page (GET and a CSRF-valid POST), not a redirect."""
    stack = await make_stack(
        {
            **BUILTIN,
            "identity": {"source": "trusted_header", "upstream_login": None},
            "trusted_proxies": ["127.0.0.1/32"],
        }
    )
    for page in ACCOUNT_PAGES:
        shown = await stack.raw("GET", page, {"Accept": "text/html"})
        assert shown.status == 401 and b"Sign in first." in shown.body, (page, shown.body[:300])
        sent = await stack.csrf_form("/_mfa/logout", page, {"code": "123456"})
        assert sent.status == 401 and b"Sign in first." in sent.body, (page, sent.body[:300])


async def setup_page(stack: Stack) -> tuple[str, str]:
    """After the app's login: start enrollment on the page; returns the page's HTML and its manual key."""
    await stack.app_login()
    setup = await stack.csrf_form("/_mfa/enroll?rd=/admin", "/_mfa/enroll", {"rd": "/admin"})
    assert setup.status == 200, setup.body[:500]
    page = setup.body.decode()
    key = re.search(r'id="manual-key"[^>]*>([A-Z2-7 ]+)<', page)
    assert key is not None
    return page, key.group(1).replace(" ", "")


async def test_manual_key_states_non_default_settings_and_they_produce_the_right_codes(
    make_stack: StackFactory,
) -> None:
    """With SHA256, 8 digits and 60 s, the page states all three beside the key typed by hand (an app left at SHA1,
    6 digits, 30 s would make codes that never match); a code made from the key and those settings confirms."""
    stack = await make_stack({"totp": {"algorithm": "SHA256", "digits": 8, "period": 60}})
    page, secret = await setup_page(stack)
    stated = re.search(r'<p id="manual-settings">([^<]+)</p>', page)
    assert stated is not None
    assert "algorithm SHA256" in stated.group(1) and "8 digits" in stated.group(1) and "60 seconds" in stated.group(1)
    assert "Enter the 8-digit code" in page
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    code = current_code(secret, stack.clock, TotpParams(TotpAlgorithm.SHA256, 8, 60))
    confirmed = await stack.form("/_mfa/enroll/confirm", {"code": code, "rd": "/admin", "csrf": token.group(1)})
    assert confirmed.status == 303


async def test_manual_key_with_default_settings_states_nothing_more(stack: Stack) -> None:
    """With the defaults every app assumes (SHA1, 6 digits, 30 s) the page shows the key alone: no settings line."""
    page, _ = await setup_page(stack)
    assert 'id="manual-settings"' not in page and "SHA1" not in page and "30 seconds" not in page
    assert "Enter the 6-digit code" in page


async def post_challenge(stack: Stack, code: str) -> Any:
    return await stack.csrf_form("/_mfa/challenge?rd=/admin", "/_mfa/challenge", {"code": code, "rd": "/admin"})


async def test_a_wrong_code_is_an_alert_tied_to_the_code_field(stack: Stack) -> None:
    """A wrong code re-renders the challenge with an alert (role=alert) that the code field points at
    (aria-describedby) and is marked invalid by (aria-invalid); a wrong backup code is not told to try "the newest"."""
    await stack.app_login()
    await stack.enroll_via_pages()
    wrong_totp = await post_challenge(stack, "000000")
    assert wrong_totp.status == 401
    assert b'<p id="code-error" class="error" role="alert">That code is not valid.' in wrong_totp.body
    field = re.search(rb'<input id="code"[^>]*>', wrong_totp.body)
    assert field is not None
    assert b'aria-invalid="true"' in field.group(0) and b'aria-describedby="code-error"' in field.group(0)
    assert b"Wait for the next code in your app" in wrong_totp.body
    wrong_backup = await post_challenge(stack, "AAAA-BBBB-CCCC")
    assert b"Each backup code works once" in wrong_backup.body and b"newest" not in wrong_backup.body


async def test_the_sign_in_error_is_an_alert_both_fields_point_at(make_stack: StackFactory) -> None:
    """A wrong password: the message is an alert, and the user name and password fields are marked invalid and
    described by it."""
    stack = await builtin_stack(make_stack)
    response = await stack.csrf_form(
        "/_mfa/signin", "/_mfa/signin", {"username": "carol", "password": "nope", "rd": "/"}
    )
    assert b'<p id="signin-error" class="error" role="alert">Invalid user name or password.</p>' in response.body
    for name in (b"username", b"password"):
        field = re.search(rb'<input id="' + name + rb'"[^>]*>', response.body)
        assert field is not None and b'aria-describedby="signin-error"' in field.group(0)
        assert b'aria-invalid="true"' in field.group(0)


@pytest.mark.parametrize(
    ("typed", "advice", "not_said"),
    [
        ("000000", b"Wait for the next code in your app", b"backup code"),
        ("AAAA-BBBB-CCCC", b"Each backup code works once: use one you have not used yet.", b"next code"),
    ],
)
async def test_the_lockout_page_says_how_long_and_advice_fits_the_code_typed(
    stack: Stack, typed: str, advice: bytes, not_said: bytes
) -> None:
    """Locked out on the challenge: a "Too many failed attempts" page (not a generic error) saying the wait in words
    (Retry-After: 60 is "1 minute"), advice for the kind of code that was typed, and a way back."""
    await stack.app_login()
    await stack.enroll_via_pages()
    for _ in range(10):
        locked = await post_challenge(stack, typed)
        if locked.status == 429:
            break
    assert locked.status == 429, locked.body[:500]
    assert locked.header("Retry-After") == "60"
    assert b"<h1>Too many failed attempts</h1>" in locked.body
    assert b'role="alert">Too many failed attempts. Try again in 1 minute. ' in locked.body
    assert advice in locked.body and not_said not in locked.body
    assert b">Back to the application</a>" in locked.body and b">Sign in again</a>" in locked.body


async def test_signed_out_pages_offer_to_sign_in_again(make_stack: StackFactory) -> None:
    """After signing out, and after turning MFA off, the page names what happened and links to the sign-in page."""
    stack = await builtin_stack(make_stack)
    await sign_in(stack)
    secret, _ = await stack.enroll_via_pages()
    stack.clock.advance(30)
    off = await stack.csrf_form("/_mfa/disable", "/_mfa/disable", {"code": stack.code(secret)})
    assert b"<h1>Two-factor authentication is off</h1>" in off.body
    assert b'<a href="/_mfa/signin?rd=%2F">Sign in again</a>' in off.body
    await sign_in(stack)
    out = await stack.csrf_form("/_mfa/logout", "/_mfa/logout", {})
    assert out.status == 200 and b"<h1>Signed out</h1>" in out.body
    assert b'<a href="/_mfa/signin?rd=%2F">Sign in again</a>' in out.body


async def test_the_manual_key_is_labelled_by_visible_text_not_aria_label_on_code(stack: Stack) -> None:
    """The enrollment page's manual key sits in a figure captioned by visible text; <code> carries no aria-label
    (a role that cannot be named: axe's aria-prohibited-attr)."""
    await stack.app_login()
    setup = await stack.csrf_form("/_mfa/enroll?rd=/admin", "/_mfa/enroll", {"rd": "/admin"})
    assert re.search(rb"<code[^>]*aria-label", setup.body) is None
    assert re.search(
        rb'<figure class="key"><figcaption[^>]*>Or enter this key by hand:</figcaption><p><code id="manual-key">',
        setup.body,
    )
