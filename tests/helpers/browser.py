"""A real browser for the system tests: the Debian Chromium driven by Playwright, and axe-core on what it shows.

Chromium is ``/usr/bin/chromium`` (``executable_path``; Playwright's own browsers are never downloaded). axe-core is
JavaScript that ``npm ci`` installs from ``package-lock.json`` (``make test`` does); nothing is downloaded here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, Route, async_playwright

from mfa_gateway.web.server import start_site
from tests.helpers.servers import bound_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000
AXE_SCRIPT = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
AXE_INSTALL = "npm ci --ignore-scripts (run at the repository root; make test does it)"
BLOCKING_IMPACTS = ("serious", "critical")


class Axe:
    """axe-core run on a copy of the page a browser shows, in a context of its own with ``bypass_csp=True``.

    The pages allow no script but the gateway's own (most allow none), so axe cannot be injected into them as
    served. The walk itself runs under that policy (what users get); for the check only, the rendered document is
    served again at its own URL in a second context that ignores CSP, where ``add_script_tag`` injects axe. The
    stylesheet, images and the gateway's script load from the gateway as usual, so colour contrast is judged on the
    real styles and the page is in the state its script puts it in; ``script=False`` keeps the gateway's script
    out, for a page checked as a browser without JavaScript shows it."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self._browser = browser
        self._base_url = base_url
        self.checked: list[str] = []

    async def check(self, page: Page, name: str, *, script: bool = True) -> None:
        """No serious or critical violation on what ``page`` shows now, in the light and the dark scheme."""
        if not AXE_SCRIPT.exists():
            pytest.fail(f"axe-core is not installed ({AXE_SCRIPT} is missing): run {AXE_INSTALL}")
        document, url = await page.content(), page.url
        for scheme in ("light", "dark"):
            context = await self._browser.new_context(base_url=self._base_url, bypass_csp=True, color_scheme=scheme)
            try:
                checker = await context.new_page()

                async def same_document(route: Route) -> None:
                    await route.fulfill(status=200, content_type="text/html; charset=utf-8", body=document)

                await checker.route(lambda target: target == url, same_document)
                if not script:
                    await checker.route("**/static/webauthn.js*", lambda route: route.abort())
                await checker.goto(url)
                await checker.add_script_tag(path=str(AXE_SCRIPT))
                result = await checker.evaluate("axe.run(document, {resultTypes: ['violations']})")
            finally:
                await context.close()
            blocking = [
                f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
                for v in result["violations"]
                if v["impact"] in BLOCKING_IMPACTS
            ]
            assert not blocking, f"axe on {name} ({url}, {scheme} scheme): " + "; ".join(blocking)
        self.checked.append(name)


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = await start_site(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


async def launch(stack: contextlib.AsyncExitStack) -> Browser:
    """The Debian Chromium, headless, closed with ``stack``; a test fails (never skips) without it."""
    if not CHROMIUM.exists():
        pytest.fail("install the Debian package chromium")
    playwright = await stack.enter_async_context(async_playwright())
    browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    stack.push_async_callback(browser.close)
    return browser


async def new_page(stack: contextlib.AsyncExitStack, browser: Browser, base_url: str, **options: Any) -> Page:
    """A page in a context of its own (``options``: Playwright's context options), closed with ``stack``."""
    context = await browser.new_context(base_url=base_url, **options)
    stack.push_async_callback(context.close)
    context.set_default_timeout(TIMEOUT_MS)
    return await context.new_page()


async def open_browser(stack: contextlib.AsyncExitStack, base_url: str) -> tuple[Page, Axe]:
    """The Debian Chromium on a page of the gateway at ``base_url``, and the axe checker for that browser; closed
    with ``stack``."""
    browser = await launch(stack)
    return await new_page(stack, browser, base_url), Axe(browser, base_url)
