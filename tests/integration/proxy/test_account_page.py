"""The account page through the real gateway: it needs an MFA session, lists the user's sessions (this one marked)
and second factors, ends another session by its public id, and "sign out everywhere else" keeps this browser's
session only; every action is a plain form with a CSRF token (no JavaScript)."""

from __future__ import annotations

import re

from tests.integration.proxy.conftest import Stack, StackFactory
from tests.integration.proxy.test_pages_and_policy import builtin_stack, sign_in


async def through(stack: Stack, cookies: dict[str, str] | None = None) -> bool:
    """Whether the gateway lets the request for /admin through to the application (whose answer is its own login
    redirect) rather than sending it to the gateway's sign-in or challenge."""
    answer = await stack.raw("GET", "/admin", {"Accept": "text/html"}, cookies=cookies)
    return not answer.header("Location").startswith("/_mfa/")


async def two_sessions(make_stack: StackFactory) -> tuple[Stack, dict[str, str], dict[str, str]]:
    """carol enrolled and signed in twice (two browsers): the stack, the first browser's and this one's cookies."""
    stack = await builtin_stack(make_stack)
    await sign_in(stack)
    secret, _ = await stack.enroll_via_pages()
    first = dict(stack.jar)
    stack.jar.clear()
    await sign_in(stack)
    stack.clock.advance(30)
    passed = await stack.csrf_form("/_mfa/challenge", "/_mfa/challenge", {"code": stack.code(secret), "rd": "/admin"})
    assert passed.status == 303
    return stack, first, dict(stack.jar)


async def test_the_account_page_needs_a_second_factor(make_stack: StackFactory) -> None:
    """Anonymous: sent to sign in; after the password alone: sent to the challenge, never shown the page."""
    stack = await builtin_stack(make_stack)
    anonymous = await stack.raw("GET", "/_mfa/account", {"Accept": "text/html"})
    assert anonymous.status == 303 and anonymous.header("Location").startswith("/_mfa/signin")
    await sign_in(stack)
    await stack.enroll_via_pages()
    stack.jar.clear()
    await sign_in(stack)
    pending = await stack.raw("GET", "/_mfa/account", {"Accept": "text/html"})
    assert pending.status == 303 and pending.header("Location").startswith("/_mfa/challenge")


async def test_the_account_page_lists_sessions_and_ends_another(make_stack: StackFactory) -> None:
    """Two sessions listed, this one marked and without an end button; the other's button ends it (its cookie
    then goes back to sign-in) and this one goes on; the factors' sections link to their pages."""
    stack, first, _ = await two_sessions(make_stack)
    page = await stack.raw("GET", "/_mfa/account", {"Accept": "text/html"})
    assert page.status == 200
    for heading in (b"<h2>Sessions</h2>", b"<h2>Remembered devices</h2>", b"Authenticator app and backup codes"):
        assert heading in page.body
    assert page.body.count(b"(this session)") == 1 and b'href="/_mfa/backup-codes"' in page.body
    [other] = re.findall(
        rb'action="/_mfa/account/sessions/end"><input type="hidden" name="id" value="([^"]+)"', page.body
    )
    ended = await stack.csrf_form("/_mfa/account", "/_mfa/account/sessions/end", {"id": other.decode()})
    assert ended.status == 303 and ended.header("Location") == "/_mfa/account"
    assert not await through(stack, first)
    assert await through(stack)
    again = await stack.csrf_form("/_mfa/account", "/_mfa/account/sessions/end", {"id": other.decode()})
    assert again.status == 404


async def test_sign_out_everywhere_else_from_the_page(make_stack: StackFactory) -> None:
    """The button ends the other browser's session and this one's old cookie; this browser gets a new cookie that
    works, and the page then lists this session alone."""
    stack, first, before = await two_sessions(make_stack)
    done = await stack.csrf_form("/_mfa/account", "/_mfa/account/end-others", {})
    assert done.status == 303 and done.header("Location") == "/_mfa/account"
    assert not await through(stack, first)
    assert not await through(stack, before)
    assert await through(stack)
    page = await stack.raw("GET", "/_mfa/account", {"Accept": "text/html"})
    assert page.body.count(b"<h3>") == 1 and b"(this session)" in page.body
