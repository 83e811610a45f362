"""Security keys in a real browser: the Debian Chromium through Playwright, with a CDP virtual authenticator
(``WebAuthn.addVirtualAuthenticator``: CTAP2, internal, user verification, presence simulated) as the key.

The gateway serves ``http://localhost:PORT`` (a secure context for Chromium, so WebAuthn runs; plain http only for
localhost with ``mode: demo``), with the relying party id ``localhost``. Its listening sockets are bound first, so
the origins are known before the gateway is configured; time is a ``FakeClock``. axe-core checks each new page and
state (``Axe``). Each test pins one thing the browser and the gateway do together: a key registered on the keys page
releases an intercepted application login, and a replayed answer is refused; a copied key whose counter went
backwards is refused (in a browser without the JSON helpers, so the script's own conversion runs; and without
JavaScript the key-only challenge explains itself); an answer without user verification where it is required is
refused, by Chromium and, when a client ignores the requirement, by the gateway; an answer made on another origin
under the same relying party id is refused; a resident key registered on the keys page signs in alone from the
sign-in page (a passkey), into a session a phishing-resistant rule lets through.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web
from playwright.async_api import CDPSession, Page, Response, Route

from mfa_gateway.adapters.audit import MemoryAudit
from mfa_gateway.demo import in_front_of
from mfa_gateway.demo_app import create_demo_app
from mfa_gateway.web.app import create_app
from mfa_gateway.web.server import GatewayRunner
from tests.helpers.browser import Axe, launch, new_page, serving
from tests.helpers.gateway import FakeClock, add_user, current_code, make_runtime, make_settings
from tests.helpers.webauthn import unb64url

PREFIX = "/_mfa"
APP_USER, APP_PASSWORD = "demo", "demo-password"
USER, PASSWORD = "carol", "carol password 1"
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


def listening_socket() -> socket.socket:
    """A loopback socket already bound and listening: its port is known before the gateway is configured."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextlib.asynccontextmanager
async def gateway_on(app: web.Application, *sockets: socket.socket) -> AsyncIterator[None]:
    """One gateway application served on each of ``sockets`` (one runner: one runtime behind every port)."""
    runner = GatewayRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        yield
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def gateway(
    stack: contextlib.AsyncExitStack,
    tmp_path: Path,
    *extra: socket.socket,
    intercept: bool = False,
    webauthn: dict[str, Any] | None = None,
    more: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[str, MemoryAudit, FakeClock]]:
    """A gateway on ``http://localhost:PORT`` (and on the ``extra`` sockets) in front of the demo app, with WebAuthn
    for that one origin (``webauthn``: more of the section); the demo's login interception (``intercept``) or the
    builtin sign-in; ``more``: other sections. Yields the origin, the audit events and the clock."""
    main = listening_socket()
    origin = f"http://localhost:{main.getsockname()[1]}"
    app_url = await stack.enter_async_context(serving(create_demo_app({APP_USER: APP_PASSWORD})))
    identity = (
        in_front_of(app_url)
        if intercept
        else {"mode": "demo", "upstream": {"url": app_url}, "session": {"secure": False, "cookie_name": "mfa_session"}}
    )
    section = {"origins": [origin], "rp_id": "localhost", **(webauthn or {})}
    settings = make_settings(tmp_path, {**identity, "webauthn": section, **(more or {})})
    if not intercept:
        add_user(settings, USER, PASSWORD)
    clock = FakeClock()
    runtime, audit = make_runtime(settings, clock)
    async with gateway_on(create_app(runtime), main, *extra):
        yield origin, audit, clock


async def virtual_authenticator(page: Page, **options: Any) -> tuple[CDPSession, str]:
    """A CTAP2 platform authenticator with user verification for ``page`` (``options`` override), as the key."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable", {"enableUI": False})
    added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {**AUTHENTICATOR, **options}})
    return cdp, str(added["authenticatorId"])


async def credentials(cdp: CDPSession, authenticator: str) -> list[dict[str, Any]]:
    found = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    return list(found["credentials"])


def path_of(page: Page) -> str:
    return urlsplit(page.url).path


async def heading(page: Page) -> str:
    return await page.locator("h1").inner_text()


async def alert(page: Page) -> str:
    return await page.locator("#webauthn-error").inner_text()


async def sign_in(page: Page, start: str = "/admin") -> None:
    """The gateway's own sign-in (builtin identity), on the way to ``start``."""
    await page.goto(start)
    assert path_of(page) == f"{PREFIX}/signin", f"expected the gateway's sign-in, got {page.url}"
    await page.fill("#username", USER)
    await page.fill("#password", PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()


async def sign_out(page: Page) -> None:
    await page.goto(f"{PREFIX}/logout")
    await page.get_by_role("button", name="Sign out").click()
    assert "You are signed out" in await page.content()


async def register_key(page: Page, name: str) -> None:
    """On the keys page: type a name, register with the virtual authenticator, back on the list with it."""
    await page.fill("#name", name)
    async with page.expect_navigation(url=re.compile(r".*/security-keys\b.*")):
        await page.get_by_role("button", name="Register a security key or passkey").click()
    assert name in await page.locator("ul.keys").inner_text(), f"{name} is not listed after registering"


async def use_key(page: Page) -> None:
    """Press the challenge's key button and wait for the page its form leads to."""
    async with page.expect_navigation():
        await page.get_by_role("button", name="Use your security key or passkey").click()


def assert_script_policy(response: Response | None, why: str) -> None:
    """The policy of a page that loads the gateway's script: only its own origin, nothing unsafe."""
    assert response is not None, why
    policy = response.headers.get("content-security-policy", "")
    directives = {part.strip().split(" ")[0]: part.strip() for part in policy.split(";") if part.strip()}
    assert directives.get("script-src") == "script-src 'self'", f"{why}: {policy!r}"
    assert directives.get("default-src") == "default-src 'none'", f"{why}: {policy!r}"
    assert "unsafe-" not in policy, f"{why}: CSP allows something unsafe: {policy!r}"


async def test_browser_registers_a_key_and_releases_an_intercepted_login_with_it_once(tmp_path: Path) -> None:
    """Login interception (the demo): after enrolling an app, the user registers a key on the keys page and renames
    it; signed out and back, the challenge offers the key first, and the key releases the held application login to
    /admin. Verifying again with the key in that session works; the form body the script posted for it, sent again
    with the same cookies, is refused (401, "already answered", no session issued). The key is removed with a code.
    Each new page passes axe-core; the keys page is served under the script policy."""
    async with contextlib.AsyncExitStack() as stack:
        origin, _, clock = await stack.enter_async_context(gateway(stack, tmp_path, intercept=True))
        browser = await launch(stack)
        page, axe = await new_page(stack, browser, origin), Axe(browser, origin)
        await virtual_authenticator(page)
        complaints: list[str] = []
        page.on("console", lambda m: complaints.append(m.text) if m.type == "error" else None)

        # An authenticator app first (the demo's own walk), then the keys page.
        await page.goto("/admin")
        await page.fill("#username", APP_USER)
        await page.fill("#password", APP_PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("button", name="Set up authenticator app").click()
        secret = (await page.locator("#manual-key").inner_text()).replace(" ", "")
        await page.fill("input[name=code]", current_code(secret, clock))
        await page.get_by_role("button", name="Confirm and continue").click()
        assert path_of(page) == "/admin", page.url
        listed = await page.goto(f"{PREFIX}/security-keys?rd=/admin")
        assert_script_policy(listed, "the keys page")
        assert await page.locator("form[data-webauthn=register]").is_visible()
        await axe.check(page, "keys page without a key")
        await register_key(page, "Laptop key")
        listing = await page.locator("ul.keys").inner_text()
        assert "Last used\nNever" in listing.replace("\t", "\n"), listing
        await axe.check(page, "keys page with a key")
        await page.get_by_role("link", name="Rename Laptop key").click()
        await axe.check(page, "rename page")
        await page.fill("#name", "Blue key")
        await page.get_by_role("button", name="Rename").click()
        assert "Blue key" in await page.locator("ul.keys").inner_text()

        # Signed out and back: the key first, and it releases the held login.
        await sign_out(page)
        clock.advance(30)
        await page.goto("/admin")
        await page.fill("#username", APP_USER)
        await page.fill("#password", APP_PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        assert path_of(page) == f"{PREFIX}/challenge", page.url
        button = page.get_by_role("button", name="Use your security key or passkey")
        assert await button.is_visible()
        code_field = page.locator("input[name=code]")
        first = await page.evaluate(
            "([a, b]) => !!(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING)",
            [await button.element_handle(), await code_field.element_handle()],
        )
        assert first, "the key button must come before the code form"
        await axe.check(page, "challenge with a key and a code form")
        await use_key(page)
        assert path_of(page) == "/admin" and "Admin area" in await page.content(), page.url

        # Verified again in the same session (as the keys page asks before adding a key), and that answer sent
        # again, as a replaying attacker with the victim's cookies would: the same session and first factor, a
        # correctly signed answer, but its ceremony was taken. Refused, nothing issued.
        await page.goto(f"{PREFIX}/challenge?rd=/admin")
        async with page.expect_request(lambda r: r.url.endswith("/challenge/webauthn")) as sent:
            await use_key(page)
        assert path_of(page) == "/admin", page.url
        posted = await sent.value
        body = posted.post_data
        assert posted.method == "POST" and body is not None and "ceremonyId=" in body and "credential=" in body
        replayed = await page.request.post(
            posted.url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert replayed.status == 401, replayed.status
        assert "already answered" in await replayed.text()
        set_cookies = [h["value"] for h in replayed.headers_array if h["name"].lower() == "set-cookie"]
        assert not [c for c in set_cookies if c.startswith(("mfa_session=", "legacy_session="))], set_cookies

        # Removed with a code.
        await page.goto(f"{PREFIX}/security-keys?rd=/admin")
        await page.get_by_role("link", name="Remove Blue key").click()
        assert await page.get_by_role("button", name="Confirm with a security key or passkey").is_visible()
        await axe.check(page, "remove page with a key and a code form")
        clock.advance(30)
        await page.fill("input[name=code]", current_code(secret, clock))
        await page.get_by_role("button", name="Remove with this code").click()
        assert "no security keys or passkeys yet" in await page.content()
        assert len(axe.checked) == 5, axe.checked
        policy = [text for text in complaints if "Content Security Policy" in text or "TrustedHTML" in text]
        assert not policy, f"the pages broke their own policy: {policy}"


WITHOUT_JSON_HELPERS = """
delete PublicKeyCredential.parseCreationOptionsFromJSON;
delete PublicKeyCredential.parseRequestOptionsFromJSON;
delete PublicKeyCredential.prototype.toJSON;
"""
"""A browser without WebAuthn Level 3's JSON helpers: the script's own base64url conversion runs instead."""


async def test_browser_refuses_a_copied_key_whose_counter_went_backwards(tmp_path: Path) -> None:
    """Builtin sign-in, a key as the only factor, in a browser without the JSON helpers (the script's fallback):
    the enrollment page leads to the keys page, the key is registered and its state copied (a clone); the key signs
    in (no code form on the challenge). The copy put back in its place answers with a counter the gateway has seen:
    refused on the challenge (401, "went backwards") and audited. Without JavaScript, the challenge explains what
    to do instead of offering a code form, and so does a browser without WebAuthn."""
    async with contextlib.AsyncExitStack() as stack:
        origin, audit, clock = await stack.enter_async_context(gateway(stack, tmp_path))
        browser = await launch(stack)
        page, axe = await new_page(stack, browser, origin), Axe(browser, origin)
        await page.context.add_init_script(WITHOUT_JSON_HELPERS)
        cdp, authenticator = await virtual_authenticator(page)

        await sign_in(page, "/api/whoami")
        assert path_of(page) == f"{PREFIX}/enroll", page.url
        assert await page.evaluate("typeof PublicKeyCredential.parseCreationOptionsFromJSON") == "undefined"
        await page.get_by_role("link", name="Use a security key or passkey instead").click()
        assert "It becomes your second factor" in await page.content()
        await axe.check(page, "keys page for a first key")
        await register_key(page, "Only key")
        [clone] = await credentials(cdp, authenticator)

        await sign_out(page)
        await sign_in(page, "/api/whoami")
        assert path_of(page) == f"{PREFIX}/challenge", page.url
        assert await page.locator("input[name=code]").count() == 0, "a key-only user gets no code form"
        assert not await page.locator("[data-webauthn-fallback]").is_visible()
        await axe.check(page, "challenge with a key only")
        await use_key(page)
        assert path_of(page) == "/api/whoami" and '"remote-user": "carol"' in await page.content(), page.url
        [used] = await credentials(cdp, authenticator)
        assert used["signCount"] > clone["signCount"], (used, clone)
        await page.goto(f"{PREFIX}/security-keys")
        await page.get_by_role("link", name="Remove Only key").click()
        assert "This is your only second factor" in await page.content()
        await axe.check(page, "remove page for the last factor")
        clock.advance(16 * 60)
        await page.goto(f"{PREFIX}/security-keys")
        assert await page.get_by_role("link", name="Verify again").is_visible()
        await axe.check(page, "keys page asking to verify again")

        # The copy, made before that sign-in, in the key's place.
        await cdp.send(
            "WebAuthn.removeCredential", {"authenticatorId": authenticator, "credentialId": clone["credentialId"]}
        )
        await cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator, "credential": clone})
        await sign_out(page)
        await sign_in(page, "/api/whoami")
        async with page.expect_response(lambda r: r.url.endswith("/challenge/webauthn")) as answered:
            await use_key(page)
        assert (await answered.value).status == 401
        assert await heading(page) == "Two-factor authentication", "the refusal is the challenge again"
        assert "went backwards" in await alert(page)
        await axe.check(page, "challenge refusing a copied key")
        assert [e.result for e in audit.events if e.event == "mfa.webauthn.counter_regressed"] == ["refused"]

        # Without JavaScript: no key button, no code form, and what to do instead.
        plain = await new_page(stack, browser, origin, java_script_enabled=False)
        await sign_in(plain, "/api/whoami")
        assert path_of(plain) == f"{PREFIX}/challenge", plain.url
        assert not await plain.get_by_role("button", name="Use your security key or passkey").is_visible()
        assert await plain.locator("input[name=code]").count() == 0
        said = plain.locator("[data-webauthn-fallback]")
        assert await said.is_visible() and "needs JavaScript" in await said.inner_text()
        await axe.check(plain, "challenge with a key only, without JavaScript", script=False)

        # JavaScript on, WebAuthn missing (an old browser): the same explanation, no button.
        old = await new_page(stack, browser, origin)
        await old.context.add_init_script("delete window.PublicKeyCredential;")
        await sign_in(old, "/api/whoami")
        assert not await old.get_by_role("button", name="Use your security key or passkey").is_visible()
        assert await old.locator("[data-webauthn-fallback]").is_visible()


async def test_browser_and_gateway_refuse_an_answer_without_user_verification(tmp_path: Path) -> None:
    """With webauthn.user_verification: required, a key registered with its PIN stops verifying the user. Chromium
    itself then refuses to answer, and the page says so in words (buttons usable again). A client that does not
    honour "required" (the options rewritten on their way to the page) gets an answer without the UV flag from the
    key: the gateway refuses it (401, the reason in words; audited with reason user_verification)."""
    async with contextlib.AsyncExitStack() as stack:
        required = {"user_verification": "required"}
        origin, audit, _ = await stack.enter_async_context(gateway(stack, tmp_path, webauthn=required))
        browser = await launch(stack)
        page = await new_page(stack, browser, origin)
        cdp, authenticator = await virtual_authenticator(page)
        await sign_in(page, "/api/whoami")
        await page.get_by_role("link", name="Use a security key or passkey instead").click()
        await register_key(page, "PIN key")
        await cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator, "isUserVerified": False})
        await sign_out(page)
        await sign_in(page, "/api/whoami")

        button = page.get_by_role("button", name="Use your security key or passkey")
        await button.click()
        await page.locator("#webauthn-error", has_text="could not check your PIN").wait_for()
        assert await button.is_enabled(), "the button must be usable again after a failed ceremony"
        assert not [e for e in audit.events if e.event == "mfa.verify"], "Chromium sent nothing"

        async def not_required(route: Route) -> None:
            fetched = await route.fetch()
            options = await fetched.json()
            options["data"]["publicKey"]["userVerification"] = "discouraged"
            await route.fulfill(response=fetched, json=options)

        await page.route("**/challenge/webauthn/options", not_required)
        async with page.expect_response(lambda r: r.url.endswith("/challenge/webauthn")) as answered:
            await use_key(page)
        assert (await answered.value).status == 401
        assert "did not check your PIN, fingerprint or face" in await alert(page)
        refused = [e for e in audit.events if e.event == "mfa.verify" and e.result == "failure"]
        assert [e.detail.get("reason") for e in refused] == ["user_verification"], refused


async def test_browser_answer_made_on_another_origin_is_refused(tmp_path: Path) -> None:
    """The gateway's page served on a second origin under the same relying party id (another port of localhost,
    as a sibling host of a shared rp_id would be) gets a real answer from the user's key, signed for that origin;
    relayed to the gateway's own origin, it is refused (401, the reason in words; audited with reason origin) and
    the session is not stepped up."""
    other = listening_socket()
    elsewhere = f"http://localhost:{other.getsockname()[1]}"
    async with contextlib.AsyncExitStack() as stack:
        origin, audit, _ = await stack.enter_async_context(gateway(stack, tmp_path, other))
        browser = await launch(stack)
        page = await new_page(stack, browser, origin)
        await virtual_authenticator(page)
        await sign_in(page, "/api/whoami")
        await page.get_by_role("link", name="Use a security key or passkey instead").click()
        await register_key(page, "Key")
        await sign_out(page)
        await sign_in(page, "/api/whoami")  # a first factor: cookies of localhost go to every port

        answer = f"{elsewhere}{PREFIX}/challenge/webauthn"
        # Kept from the second origin (204: the browser stays on its page), and relayed below.
        await page.route(answer, lambda route: route.fulfill(status=204))
        await page.goto(f"{elsewhere}{PREFIX}/challenge?rd=/api/whoami")
        async with page.expect_request(answer) as sent:
            await page.get_by_role("button", name="Use your security key or passkey").click()
        captured = [(await sent.value).post_data or ""]
        fields = dict(parse_qsl(captured[0]))
        client_data = json.loads(unb64url(json.loads(fields["credential"])["response"]["clientDataJSON"]))
        assert client_data["origin"] == elsewhere, client_data

        relayed = await page.request.post(
            f"{origin}{PREFIX}/challenge/webauthn",
            data=captured[0],
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert relayed.status == 401, relayed.status
        assert "does not accept keys on" in await relayed.text()
        refused = [e for e in audit.events if e.event == "mfa.verify" and e.result == "failure"]
        assert [e.detail.get("reason") for e in refused] == ["origin"], refused
        await page.goto(f"{origin}/api/whoami")
        assert path_of(page) == f"{PREFIX}/challenge", "the session must not be stepped up"


PASSKEY_ONLY = {
    "policy": {"default": "mfa", "rules": [{"path": r"^/api/", "action": "mfa", "phishing_resistant": True}]}
}
"""A phishing-resistant rule on the demo's API: only a session that used a key or passkey reaches it."""


async def test_browser_signs_in_with_a_passkey_alone(tmp_path: Path) -> None:
    """With webauthn.resident_key: required, carol registers a key on the keys page (a discoverable credential on
    the virtual authenticator, holding her random user handle). Signed out, the sign-in page offers *Sign in with a
    passkey* above the password form; the passkey alone (no user name, no password) signs her in and on to the
    page she asked for, through a phishing-resistant rule; audited as login.passkey."""
    async with contextlib.AsyncExitStack() as stack:
        resident = {"resident_key": "required"}
        context = gateway(stack, tmp_path, webauthn=resident, more=PASSKEY_ONLY)
        origin, audit, _ = await stack.enter_async_context(context)
        browser = await launch(stack)
        page, axe = await new_page(stack, browser, origin), Axe(browser, origin)
        cdp, authenticator = await virtual_authenticator(page)
        await sign_in(page, "/")  # not under the rule: the enrollment page, with its link to register a key
        await page.get_by_role("link", name="Use a security key or passkey instead").click()
        await register_key(page, "Phone passkey")
        stored = await credentials(cdp, authenticator)
        assert [c["isResidentCredential"] for c in stored] == [True], stored
        handle = base64.b64decode(stored[0]["userHandle"])  # CDP writes bytes in standard base64
        assert len(handle) == 32 and USER.encode() not in handle, "the handle must be random, not the user name"
        await sign_out(page)

        await page.goto("/api/whoami")
        assert path_of(page) == f"{PREFIX}/signin", page.url
        button = page.get_by_role("button", name="Sign in with a passkey")
        assert await button.is_visible() and await page.locator("#password").is_visible()
        await axe.check(page, "sign-in page with a passkey button")
        async with page.expect_navigation(url=re.compile(r".*/api/whoami$")):
            await button.click()
        assert USER in await page.content(), page.url
        signed_in = [e for e in audit.events if e.event == "login.passkey"]
        assert [(e.result, e.user_id) for e in signed_in] == [("success", USER)], signed_in
