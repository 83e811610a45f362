"""Security keys and passkeys on the pages, through the real gateway in front of the demo app, with the software
authenticator answering as a browser would (the browser itself: tests/system/test_browser_webauthn.py).

Pinned: the pages' script is served with a long-cache-safe name, its type, nosniff and a strong ETag, and only pages
that offer keys load it, under a policy without unsafe-inline or unsafe-eval.
"""

from __future__ import annotations

import base64
import hashlib
from importlib.resources import files

from mfa_gateway.web import assets, html
from tests.integration.proxy.conftest import Stack

SCRIPT_PATH = "/_mfa/static/webauthn.js"


async def test_the_script_is_served_with_its_type_nosniff_and_a_cache_safe_name(stack: Stack) -> None:
    """webauthn.js: text/javascript, nosniff, a strong ETag; kept a year only under the URL naming its digest
    (?v=), revalidated otherwise; If-None-Match with its ETag answers 304 without a body."""
    source = files("mfa_gateway.web").joinpath("static/webauthn.js").read_bytes()
    versioned = await stack.raw("GET", f"{SCRIPT_PATH}?v={assets.VERSION}")
    assert versioned.status == 200
    assert versioned.header("Content-Type") == "text/javascript; charset=utf-8"
    assert versioned.header("X-Content-Type-Options") == "nosniff"
    assert versioned.header("Cache-Control") == "public, max-age=31536000, immutable"
    assert versioned.body.endswith(source)  # the body as it came (not chunked: a known length)
    assert hashlib.sha256(source).hexdigest()[:16] == assets.VERSION
    etag = versioned.header("ETag")
    assert etag is not None and etag.startswith('"') and not etag.startswith("W/")
    for stale in (SCRIPT_PATH, f"{SCRIPT_PATH}?v=0000000000000000"):
        assert (await stack.raw("GET", stale)).header("Cache-Control") == "no-cache"
    again = await stack.raw("GET", SCRIPT_PATH, {"If-None-Match": etag})
    assert again.status == 304 and again.body == b"" and again.header("ETag") == etag
    changed = await stack.raw("GET", SCRIPT_PATH, {"If-None-Match": '"another"'})
    assert changed.status == 200


def test_a_page_with_the_script_names_its_digest_and_allows_only_its_own_origin() -> None:
    """A page that loads the script carries its sha384 integrity digest and a policy with script-src 'self',
    connect-src 'self' and Trusted Types, never unsafe-inline or unsafe-eval; a page without it allows no script."""
    source = files("mfa_gateway.web").joinpath("static/webauthn.js").read_bytes()
    digest = "sha384-" + base64.b64encode(hashlib.sha384(source).digest()).decode()
    page = html.page("/_mfa", (), "Title", "", script=(assets.script_url("/_mfa"), assets.INTEGRITY))
    assert page.text is not None
    assert f'<script src="/_mfa/static/webauthn.js?v={assets.VERSION}" integrity="{digest}" defer>' in page.text
    policy = page.headers["Content-Security-Policy"]
    directives = {part.strip().split(" ")[0]: part.strip() for part in policy.split(";")}
    assert directives["default-src"] == "default-src 'none'"
    assert directives["script-src"] == "script-src 'self'"
    assert directives["connect-src"] == "connect-src 'self'"
    assert directives["require-trusted-types-for"] == "require-trusted-types-for 'script'"
    assert "unsafe" not in policy
    plain = html.page("/_mfa", (), "Title", "")
    assert "script-src" not in plain.headers["Content-Security-Policy"]
    assert plain.text is not None and "<script" not in plain.text
