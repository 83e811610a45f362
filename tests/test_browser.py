"""A real browser (Playwright driving Debian Chromium) walks the demo: the gateway intercepting a legacy app's login.

Both servers run in-process on loopback ports; time is a ``FakeClock`` moved forward instead of sleeping.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from playwright.async_api import Page, Response, async_playwright

from mfa_gateway.core import totp
from mfa_gateway.core.model import TotpParams
from mfa_gateway.demo import in_front_of
from mfa_gateway.demo_app import create_demo_app
from mfa_gateway.web.app import create_app
from mfa_gateway.web.server import start_site
from tests.gateway import FakeClock, make_runtime, make_settings
from tests.servers import bound_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USER, PASSWORD = "demo", "demo-password"
PREFIX = "/_mfa"
ENROLL_SCREENSHOT_COPY = Path("/tmp/mfa-browser-enroll.png")
TIMEOUT_MS = 10_000


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = await start_site(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


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


async def test_browser_walks_the_demo_enroll_totp_backup_code(tmp_path: Path) -> None:
    """A real Chromium in front of the demo: app login is held until enrollment (strict CSP, no script, QR shown),
    then /admin; after sign-out a TOTP code and, once only, a backup code release the app's login again."""
    if not CHROMIUM.exists():
        pytest.fail("install the Debian package chromium")
    clock = FakeClock()
    documents: list[Response] = []
    async with contextlib.AsyncExitStack() as stack:
        app_url = await stack.enter_async_context(serving(create_demo_app({USER: PASSWORD})))
        settings = make_settings(tmp_path, in_front_of(app_url))
        runtime, _audit = make_runtime(settings, clock)
        base_url = await stack.enter_async_context(serving(create_app(runtime)))  # cleanup closes the runtime
        playwright = await stack.enter_async_context(async_playwright())
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        stack.push_async_callback(browser.close)
        context = await browser.new_context(base_url=base_url)
        stack.push_async_callback(context.close)
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        page.on("response", lambda r: documents.append(r) if r.request.resource_type == "document" else None)

        # 1-2. First sign-in: the app's login is held and the new user is sent to enrollment.
        await app_login(page, "first visit")
        assert path_of(page) == f"{PREFIX}/enroll", f"a new user must be sent to enrollment, got {page.url}"
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
        enroll_shot = tmp_path / "enroll.png"
        await page.screenshot(path=str(enroll_shot), full_page=True)
        shutil.copyfile(enroll_shot, ENROLL_SCREENSHOT_COPY)

        await page.fill("input[name=code]", code_now(secret, clock))
        await page.get_by_role("button", name="Confirm and continue").click()
        await assert_admin(page, "after enrollment the held app login is released")
        await page.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
        cookie_names = {cookie["name"] for cookie in await context.cookies()}
        assert {"mfa_session", "legacy_session"} <= cookie_names, f"missing session cookies: {cookie_names}"

        gateway_pages = [r for r in documents if urlsplit(r.url).path.startswith(PREFIX + "/")]
        assert gateway_pages, "no gateway page was seen"
        for response in gateway_pages:
            if response.status == 200:
                assert_strict_csp(response, f"gateway page {response.url}")

        # 4. Sign out: the app's session goes too.
        await sign_out(page, "first sign-out")

        # 5. A new time step, sign in again: the gateway asks for the TOTP code.
        clock.advance(30)
        await app_login(page, "second visit")
        await answer_challenge(page, code_now(secret, clock), "TOTP sign-in")
        await assert_admin(page, "after a valid TOTP code")
        await sign_out(page, "second sign-out")

        # 6. A backup code works once.
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
        await page.goto("/admin")
        assert path_of(page) != "/admin" or "Admin area" not in await page.content(), (
            f"/admin must still be refused after a reused backup code ({page.url})"
        )
        assert_on_app_login(page, "/admin after a reused backup code")
        assert enroll_shot.stat().st_size > 0, "the enrollment screenshot is empty"
