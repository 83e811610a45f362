"""The sign-in page's passkey form through the real gateway (builtin sign-in, WebAuthn on), with the software
authenticator's answer posted as the script posts it (a form: ceremonyId, credential, rd, csrf).

Pinned: the page offers *Sign in with a passkey* (hidden until the script shows it) above the password form, which
is still there; a verified answer signs in with both factors and continues to ``rd``, a foreign ``rd`` replaced by
``/``; an answer without user verification re-renders the page with 401 saying why and sets no session.
"""

from __future__ import annotations

import json
from typing import Any

from mfa_gateway.service.mfa import Caller
from mfa_gateway.service.webauthn import WebAuthnService
from tests.helpers.webauthn import SoftAuthenticator
from tests.integration.proxy.conftest import Stack, StackFactory
from tests.integration.proxy.test_pages_and_policy import builtin_stack

ORIGIN = "https://app.example.test"
RP_ID = "example.test"
WEBAUTHN = {"webauthn": {"origins": [ORIGIN], "rp_id": RP_ID}}


async def passkey_stack(make_stack: StackFactory) -> tuple[Stack, WebAuthnService, SoftAuthenticator]:
    """carol with one passkey, registered through the service (as the keys page would)."""
    stack = await builtin_stack(make_stack, WEBAUTHN)
    service = stack.runtime.webauthn
    assert service is not None
    key = SoftAuthenticator(ORIGIN, RP_ID)
    caller = Caller("carol", "192.0.2.1")
    started = await service.start_registration(caller, binding="ff:x", name="Passkey", unenrolled="enroll")
    await service.finish_registration(
        caller,
        binding="ff:x",
        ceremony_id=started.ceremony_id,
        response=key.create(started.options),
        unenrolled="enroll",
    )
    return stack, service, key


async def post_answer(stack: Stack, service: WebAuthnService, key: SoftAuthenticator, rd: str, **answer: Any) -> Any:
    started = await service.start_passkey()
    fields = {"ceremonyId": started.ceremony_id, "credential": json.dumps(key.get(started.options, **answer)), "rd": rd}
    return await stack.csrf_form("/_mfa/signin", "/_mfa/signin/passkey", fields)


async def test_the_sign_in_page_offers_a_passkey_above_the_password_form(make_stack: StackFactory) -> None:
    """The passkey form (data-webauthn=authenticate, options from api/webauthn/passkey/options) is hidden until the
    script shows it, comes before the password form, and the page loads the script."""
    stack, _, _ = await passkey_stack(make_stack)
    page = (await stack.raw("GET", "/_mfa/signin?rd=/admin", {"Accept": "text/html"})).body.decode()
    passkey = page.index('action="/_mfa/signin/passkey"')
    assert 'data-options="/_mfa/api/webauthn/passkey/options"' in page
    assert passkey < page.index('action="/_mfa/signin"') and "<div data-webauthn-part hidden>" in page
    assert "Sign in with a passkey" in page and "/_mfa/static/webauthn.js" in page


async def test_a_passkey_signs_in_from_the_page_and_goes_on_to_rd(make_stack: StackFactory) -> None:
    """A verified answer: 303 to rd with a session cookie whose session has both factors (the MFA route /admin is
    let through to the application); a foreign rd goes to / instead."""
    stack, service, key = await passkey_stack(make_stack)
    signed_in = await post_answer(stack, service, key, "/admin")
    assert (signed_in.status, signed_in.header("Location")) == (303, "/admin"), signed_in.body[:300]
    assert "mfa_session" in stack.jar
    through = await stack.raw("GET", "/admin")  # the application's own answer, not the gateway's challenge
    assert not (through.header("Location") or "").startswith("/_mfa/"), through.headers
    elsewhere = await post_answer(stack, service, key, "https://evil.example/")
    assert (elsewhere.status, elsewhere.header("Location")) == (303, "/")


async def test_a_refused_passkey_says_why_and_signs_nobody_in(make_stack: StackFactory) -> None:
    """An answer without user verification: the sign-in page again, 401, the reason in words, no session."""
    stack, service, key = await passkey_stack(make_stack)
    refused = await post_answer(stack, service, key, "/admin", verified=False)
    assert refused.status == 401 and b"did not check your PIN, fingerprint or face" in refused.body
    assert b'action="/_mfa/signin"' in refused.body
    assert "mfa_session" not in stack.jar
