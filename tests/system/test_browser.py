"""A real browser (Playwright driving Debian Chromium) walks the demo: the gateway intercepting a legacy app's login.

Both servers run in-process on loopback ports; time is a ``FakeClock`` moved forward instead of sleeping.

Every page the walk shows is also checked with axe-core (``Axe``): no ``serious`` or ``critical`` violation, in the
light and the dark colour scheme. axe-core is JavaScript that ``npm ci`` installs from ``package-lock.json``
(``make test`` does); nothing is downloaded here.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser, Page, Response

from mfa_gateway.core import totp
from mfa_gateway.core.model import TotpParams
from mfa_gateway.demo import in_front_of
from mfa_gateway.demo_app import create_demo_app
from mfa_gateway.web.app import create_app
from tests.helpers import browser
from tests.helpers.browser import CHROMIUM, Axe, open_browser, serving
from tests.helpers.gateway import FakeClock, add_user, make_runtime, make_settings

USER, PASSWORD = "demo", "demo-password"
PREFIX = "/_mfa"
ENROLL_SCREENSHOT_COPY = Path("/tmp/mfa-browser-enroll.png")


def code_now(secret: str, clock: FakeClock) -> str:
    params = TotpParams()
    return totp.code_at(secret, params, totp.time_step(clock.now, params))


def path_of(page: Page) -> str:
    return urlsplit(page.url).path


def assert_on_app_login(page: Page, why: str) -> None:
    url = urlsplit(page.url)
    assert url.path == "/login", f"{why}: expected the app's login page, the browser is on {page.url}"
    assert parse_qs(url.query).get("next") == ["/admin"], f"{why}: the login page lost next=/admin ({page.url})"


async def assert_admin(page: Page, why: str) -> None:
    assert path_of(page) == "/admin", f"{why}: expected to end on /admin, the browser is on {page.url}"
    assert await page.locator("h1").inner_text() == "Admin area", f"{why}: /admin does not show the admin heading"
    assert "Signed in as demo" in await page.content(), f"{why}: /admin does not say who is signed in"


async def app_login(page: Page, why: str) -> None:
    """From nothing: /admin sends the browser to the app's login form; sign in there."""
    await page.goto("/admin")
    assert_on_app_login(page, why)
    await page.fill("#username", USER)
    await page.fill("#password", PASSWORD)
    await page.get_by_role("button", name="Sign in").click()


async def answer_challenge(page: Page, code: str, why: str) -> None:
    assert path_of(page) == f"{PREFIX}/challenge", f"{why}: expected the gateway's challenge, got {page.url}"
    await page.fill("input[name=code]", code)
    await page.get_by_role("button", name="Verify").click()


async def sign_out(page: Page, why: str) -> None:
    await page.goto(f"{PREFIX}/logout")
    await page.get_by_role("button", name="Sign out").click()
    assert "You are signed out" in await page.content(), f"{why}: the gateway did not confirm the sign-out"
    await page.goto("/admin")
    assert_on_app_login(page, f"{why}: /admin after signing out")


def assert_strict_csp(response: Response, why: str) -> None:
    policy = response.headers.get("content-security-policy", "")
    directives = {part.strip().split(" ")[0]: part.strip() for part in policy.split(";") if part.strip()}
    assert directives.get("default-src") == "default-src 'none'", f"{why}: CSP lacks default-src 'none': {policy!r}"
    assert "script-src" not in directives, f"{why}: CSP must not allow any script: {policy!r}"
    assert "unsafe-" not in policy, f"{why}: CSP allows something unsafe: {policy!r}"
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", f"{why}: CSP allows framing: {policy!r}"


async def test_a_missing_axe_core_fails_naming_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without node_modules/axe-core the accessibility check fails (never skips) and says how to install it."""
    monkeypatch.setattr(browser, "AXE_SCRIPT", Path("/nonexistent/axe.min.js"))
    with pytest.raises(pytest.fail.Exception, match=r"run npm ci --ignore-scripts"):
        await Axe(cast(Browser, None), "http://127.0.0.1:1").check(cast(Page, None), "a page")


async def answer_lockout(page: Page, code: str) -> None:
    """Type ``code`` on the challenge until the gateway locks the account (at most ten times)."""
    for _ in range(10):
        await page.fill("input[name=code]", code)
        await page.get_by_role("button", name="Verify").click()
        if await page.locator("h1").inner_text() == "Too many failed attempts":
            return
    pytest.fail(f"ten wrong codes did not lock the account; the browser is on {page.url}")


async def test_browser_walks_the_demo_enroll_totp_backup_code(tmp_path: Path) -> None:
    """A real Chromium in front of the demo: app login is held until enrollment (strict CSP, no script, QR shown),
    then /admin; after sign-out a TOTP code and, once only, a backup code release the app's login again; new backup
    codes, a lockout and turning MFA off. axe-core finds no serious or critical violation on any page shown."""
    if not CHROMIUM.exists():
        pytest.fail("install the Debian package chromium")
    clock = FakeClock()
    documents: list[Response] = []
    async with contextlib.AsyncExitStack() as stack:
        app_url = await stack.enter_async_context(serving(create_demo_app({USER: PASSWORD})))
        settings = make_settings(tmp_path, in_front_of(app_url))
        runtime, _audit = make_runtime(settings, clock)
        base_url = await stack.enter_async_context(serving(create_app(runtime)))  # cleanup closes the runtime
        page, axe = await open_browser(stack, base_url)
        page.on("response", lambda r: documents.append(r) if r.request.resource_type == "document" else None)

        # 0. Error pages: an account page without a session (401), an unknown gateway page (404).
        await page.goto(f"{PREFIX}/backup-codes")
        assert await page.locator("h1").inner_text() == "Sign-in required"
        await axe.check(page, "sign-in required page")
        await page.goto(f"{PREFIX}/no-such-page")
        await axe.check(page, "not found page")

        # 1-2. First sign-in: the app's login is held and the new user is sent to enrollment.
        await page.goto("/admin")
        await axe.check(page, "the app's sign-in page")
        await app_login(page, "first visit")
        assert path_of(page) == f"{PREFIX}/enroll", f"a new user must be sent to enrollment, got {page.url}"
        await axe.check(page, "enrollment start page")
        async with page.expect_response(
            lambda r: urlsplit(r.url).path == f"{PREFIX}/enroll" and r.request.method == "POST"
        ) as setup_info:
            await page.get_by_role("button", name="Set up authenticator app").click()
        setup = await setup_info.value
        assert setup.status == 200, f"the enrollment setup page answered {setup.status}"

        # 3. The setup page: strict CSP, no script, a QR image that renders, the manual key and 10 backup codes.
        assert_strict_csp(setup, "enrollment setup page")
        assert "<script" not in (await setup.text()).lower(), "the enrollment page must contain no <script>"
        assert "<script" not in (await page.content()).lower(), "the rendered enrollment page has a <script>"
        width = await page.eval_on_selector("img.qr", "img => img.decode().then(() => img.naturalWidth)")
        assert width > 0, "the QR code image did not render (naturalWidth is 0)"
        secret = (await page.locator("#manual-key").inner_text()).replace(" ", "")
        assert len(secret) >= 16, f"the manual key looks wrong: {secret!r}"
        backup_codes = [code.strip() for code in await page.locator("ul.codes li").all_inner_texts()]
        assert len(backup_codes) == 10, f"expected 10 backup codes, got {backup_codes}"
        assert len(set(backup_codes)) == 10, "the backup codes must all differ"
        await axe.check(page, "enrollment setup page")
        enroll_shot = tmp_path / "enroll.png"
        await page.screenshot(path=str(enroll_shot), full_page=True)
        shutil.copyfile(enroll_shot, ENROLL_SCREENSHOT_COPY)

        await page.fill("input[name=code]", "000000")
        await page.get_by_role("button", name="Confirm and continue").click()
        assert await page.locator("#code-error").count() == 1, "a wrong confirmation code must show an error"
        await axe.check(page, "enrollment confirmation with a wrong code")
        await page.fill("input[name=code]", code_now(secret, clock))
        await page.get_by_role("button", name="Confirm and continue").click()
        await assert_admin(page, "after enrollment the held app login is released")
        await page.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
        cookie_names = {cookie["name"] for cookie in await page.context.cookies()}
        assert {"mfa_session", "legacy_session"} <= cookie_names, f"missing session cookies: {cookie_names}"

        gateway_pages = [r for r in documents if urlsplit(r.url).path.startswith(PREFIX + "/")]
        assert gateway_pages, "no gateway page was seen"
        for response in gateway_pages:
            if response.status == 200:
                assert_strict_csp(response, f"gateway page {response.url}")

        # 4. New backup codes (they replace the first set), after a fresh code.
        await page.goto(f"{PREFIX}/backup-codes")
        await axe.check(page, "backup codes page")
        clock.advance(30)
        await page.fill("input[name=code]", code_now(secret, clock))
        await page.get_by_role("button", name="Make new backup codes").click()
        assert await page.locator("h1").inner_text() == "New backup codes"
        backup_codes = [code.strip() for code in await page.locator("ul.codes li").all_inner_texts()]
        assert len(backup_codes) == 10, f"expected 10 new backup codes, got {backup_codes}"
        await axe.check(page, "new backup codes page")
        await page.goto(f"{PREFIX}/account")
        assert await page.locator("h1").inner_text() == "Your account"
        await axe.check(page, "account page")

        # 5. Sign out: the app's session goes too.
        await page.goto(f"{PREFIX}/logout")
        await axe.check(page, "sign-out page")
        await sign_out(page, "first sign-out")

        # 6. A new time step, sign in again: the gateway asks for the TOTP code.
        clock.advance(30)
        await app_login(page, "second visit")
        await axe.check(page, "challenge page")
        await answer_challenge(page, code_now(secret, clock), "TOTP sign-in")
        await assert_admin(page, "after a valid TOTP code")
        await page.goto(f"{PREFIX}/logout")
        await page.get_by_role("button", name="Sign out").click()
        await axe.check(page, "signed-out page")
        await page.goto("/admin")
        assert_on_app_login(page, "/admin after the second sign-out")

        # 7. A backup code works once.
        clock.advance(30)
        await app_login(page, "third visit")
        await answer_challenge(page, backup_codes[0], "backup code sign-in")
        await assert_admin(page, "after a valid backup code")
        await sign_out(page, "third sign-out")

        await app_login(page, "fourth visit")
        await answer_challenge(page, backup_codes[0], "reused backup code")
        assert path_of(page) == f"{PREFIX}/challenge", f"a reused backup code must stay on the challenge: {page.url}"
        error = page.locator("p.error")
        assert "not valid" in await error.inner_text(), "a reused backup code must be reported as not valid"
        await axe.check(page, "challenge with a wrong code")

        # 8. Wrong backup codes until the lockout page, which says how long and fits a backup code.
        await answer_lockout(page, backup_codes[0])
        lockout = await page.locator("[role=alert]").inner_text()
        assert "Try again in 1 minute" in lockout and "backup code" in lockout, f"lockout page says: {lockout!r}"
        await axe.check(page, "lockout page")
        await page.goto("/admin")
        assert path_of(page) != "/admin" or "Admin area" not in await page.content(), (
            f"/admin must still be refused after a reused backup code ({page.url})"
        )
        assert_on_app_login(page, "/admin after a reused backup code")

        # 9. After the lockout: sign in with a code, turn MFA off, and land on a page that says so.
        clock.advance(3600)
        await app_login(page, "fifth visit")
        await answer_challenge(page, code_now(secret, clock), "TOTP sign-in after the lockout")
        await assert_admin(page, "after the lockout has passed")
        await page.goto(f"{PREFIX}/disable")
        await axe.check(page, "disable page")
        clock.advance(30)
        await page.fill("input[name=code]", code_now(secret, clock))
        await page.get_by_role("button", name="Turn off two-factor authentication").click()
        assert await page.locator("h1").inner_text() == "Two-factor authentication is off"
        await axe.check(page, "two-factor authentication is off page")
        assert enroll_shot.stat().st_size > 0, "the enrollment screenshot is empty"
        assert len(axe.checked) == 16, f"axe checked {axe.checked}"


async def test_browser_builtin_sign_in_pages_pass_axe(tmp_path: Path) -> None:
    """The gateway's own sign-in page (builtin identity), before and after a wrong password: no serious or critical
    axe-core violation, and the error is an alert the fields point at."""
    if not CHROMIUM.exists():
        pytest.fail("install the Debian package chromium")
    async with contextlib.AsyncExitStack() as stack:
        app_url = await stack.enter_async_context(serving(create_demo_app({USER: PASSWORD})))
        settings = make_settings(
            tmp_path,
            {"mode": "demo", "upstream": {"url": app_url}, "session": {"secure": False, "cookie_name": "mfa_session"}},
        )
        add_user(settings, "carol", "carol password 1")
        runtime, _audit = make_runtime(settings, FakeClock())
        base_url = await stack.enter_async_context(serving(create_app(runtime)))
        page, axe = await open_browser(stack, base_url)
        await page.goto("/admin")
        assert path_of(page) == f"{PREFIX}/signin", f"expected the gateway's sign-in page, got {page.url}"
        await axe.check(page, "sign-in page")
        await page.fill("#username", "carol")
        await page.fill("#password", "wrong password")
        await page.get_by_role("button", name="Sign in").click()
        assert await page.locator("#password").get_attribute("aria-describedby") == "signin-error"
        await axe.check(page, "sign-in page with an error")
