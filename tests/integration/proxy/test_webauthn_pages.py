"""Security keys and passkeys on the pages, through the real gateway in front of the demo app, with the software
authenticator answering as a browser would (the browser itself: tests/system/test_browser_webauthn.py).

Pinned: the pages' script is served with a long-cache-safe name, its type, nosniff and a strong ETag, and only pages
that offer keys load it, under a policy without unsafe-inline or unsafe-eval. The challenge offers a user's keys
first and completes with one every flow the code form completes: a held application login (which the JSON API
cannot release), a builtin sign-in's session; a key-only user gets no code form. Refusals (a replayed answer, a
counter that went backwards, another origin) are the challenge again with the reason in words.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib.resources import files
from typing import Any

from mfa_gateway.web import assets, html
from tests.helpers.gateway import add_user
from tests.helpers.webauthn import SoftAuthenticator
from tests.integration.proxy.conftest import RawResponse, Stack, StackFactory
from tests.integration.proxy.test_pages_and_policy import BUILTIN, builtin_stack, sign_in

ORIGIN = "https://app.example.test"
RP_ID = "example.test"
WEBAUTHN = {"webauthn": {"origins": [ORIGIN], "rp_id": RP_ID}}

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


async def post_json(stack: Stack, path: str, body: dict[str, Any]) -> tuple[RawResponse, dict[str, Any]]:
    response = await stack.raw("POST", path, {"Content-Type": "application/json"}, json.dumps(body).encode())
    answer: dict[str, Any] = json.loads(response.body)
    return response, answer


async def register(stack: Stack, key: SoftAuthenticator, name: str = "Blue key") -> dict[str, Any]:
    """Register ``key`` through the JSON API for whoever the stack's cookies sign in."""
    _, started = await post_json(stack, "/_mfa/api/webauthn/registration/options", {"name": name})
    data = started["data"]
    body = {"ceremonyId": data["ceremonyId"], "credential": key.create(data["publicKey"])}
    response, answer = await post_json(stack, "/_mfa/api/webauthn/registration", body)
    assert response.status == 200, answer
    return answer


def csrf_of(page: RawResponse) -> str:
    token = re.search(rb'name="csrf" value="([^"]+)"', page.body)
    assert token is not None, page.body[:500]
    return token.group(1).decode()


async def key_answer(stack: Stack, key: SoftAuthenticator, rd: str = "/admin", **answer: Any) -> dict[str, str]:
    """What the challenge's script posts: the page's CSRF token and rd, a ceremony from the challenge's options
    and the key's answer to it (``answer``: the software authenticator's knobs)."""
    page = await stack.raw("GET", f"/_mfa/challenge?rd={rd}", {"Accept": "text/html"})
    assert page.status == 200, page.body[:500]
    response, started = await post_json(stack, "/_mfa/challenge/webauthn/options", {})
    assert response.status == 200, started
    data = started["data"]
    credential = key.get(data["publicKey"], **answer)
    return {"csrf": csrf_of(page), "rd": rd, "ceremonyId": data["ceremonyId"], "credential": json.dumps(credential)}


async def sign_out(stack: Stack) -> None:
    assert (await stack.csrf_form("/_mfa/logout", "/_mfa/logout", {})).status == 200


def alert_of(page: RawResponse) -> str:
    found = re.search(rb'<p id="webauthn-error" class="error" role="alert">([^<]*)</p>', page.body)
    assert found is not None, page.body[:800]
    return found.group(1).decode()


async def test_a_held_application_login_is_released_by_a_key_once(make_stack: StackFactory) -> None:
    """Login interception: a user with an app and a key signs in to the app; the challenge offers the key first
    (script, then code form). The key's answer posted as the script posts it releases the held login (the app's
    redirect and cookie) and /admin opens. The same body posted again is the challenge with 401 and the reason."""
    stack = await make_stack(WEBAUTHN)
    await stack.app_login()
    await stack.enroll_via_pages()
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(stack, key)
    await sign_out(stack)
    held = await stack.app_login()
    assert held.header("Location") == "/_mfa/challenge?rd=%2Fadmin", held.headers
    page = await stack.raw("GET", "/_mfa/challenge?rd=/admin", {"Accept": "text/html"})
    body = page.body.decode()
    assert f'src="/_mfa/static/webauthn.js?v={assets.VERSION}"' in body
    assert body.index("Use your security key or passkey") < body.index('name="code"'), "the key comes first"
    assert "script-src 'self'" in (page.header("Content-Security-Policy") or "")
    posted = await key_answer(stack, key)
    released = await stack.form("/_mfa/challenge/webauthn", posted)
    assert released.status == 303 and released.header("Location") == "/admin", released.body[:500]
    assert {"legacy_session", "mfa_session"} <= set(released.cookies()), released.headers
    admin = await stack.raw("GET", "/admin")
    assert admin.status == 200 and b"Admin area" in admin.body
    replayed = await stack.form("/_mfa/challenge/webauthn", posted)
    assert replayed.status == 401 and "already answered" in alert_of(replayed)
    assert "mfa_session" not in replayed.cookies()


async def test_a_key_only_user_signs_in_on_the_builtin_pages(make_stack: StackFactory) -> None:
    """Builtin sign-in: carol registers a key as her first factor; signed in again, her challenge has no code
    form, the explanation for a browser that cannot use the key, and the key; the key steps her session up (a new
    session cookie) and she reaches /admin."""
    stack = await builtin_stack(make_stack, WEBAUTHN)
    await sign_in(stack)
    key = SoftAuthenticator(ORIGIN, RP_ID)
    assert (await register(stack, key))["data"]["enrolled"] is True
    await sign_out(stack)
    await sign_in(stack)
    page = await stack.raw("GET", "/_mfa/challenge?rd=/admin", {"Accept": "text/html"})
    assert b'name="code"' not in page.body
    assert b"needs JavaScript and a browser that supports security keys" in page.body
    assert b"data-webauthn-fallback" in page.body and b"Use your security key or passkey" in page.body
    before = stack.jar["mfa_session"]
    stepped = await stack.form("/_mfa/challenge/webauthn", await key_answer(stack, key))
    assert stepped.status == 303 and stepped.header("Location") == "/admin", stepped.body[:500]
    assert stack.jar["mfa_session"] != before
    whoami = json.loads((await stack.raw("GET", "/api/whoami")).body)  # through the gateway, to the app
    assert whoami["identityHeaders"]["remote-user"] == "carol"


async def test_a_counter_gone_backwards_and_another_origin_are_refused_in_words(make_stack: StackFactory) -> None:
    """Correctly signed answers that break a rule are the challenge again (401), the reason said in its alert and
    no session issued: a counter that went backwards (audited as mfa.webauthn.counter_regressed), an answer made
    on an origin the gateway does not serve."""
    stack = await builtin_stack(make_stack, WEBAUTHN)
    await sign_in(stack)
    key = SoftAuthenticator(ORIGIN, RP_ID, counter=5)
    await register(stack, key)
    await sign_out(stack)
    await sign_in(stack)
    cases = {
        "went backwards": {"counter": 3},
        "does not accept keys on": {"origin": "https://wiki.example.test"},
    }
    for said, answer in cases.items():
        refused = await stack.form("/_mfa/challenge/webauthn", await key_answer(stack, key, **answer))
        assert refused.status == 401, refused.body[:500]
        assert said in alert_of(refused)
        assert "mfa_session" not in refused.cookies()
    events = [e for e in stack.audit.events if e.event == "mfa.webauthn.counter_regressed"]
    assert [(e.user_id, e.result) for e in events] == [("carol", "refused")]
    still = await stack.raw("GET", "/admin", {"Accept": "text/html"})
    assert still.header("Location") == "/_mfa/challenge?rd=%2Fadmin"


async def test_the_key_endpoints_keep_the_csrf_rules(make_stack: StackFactory) -> None:
    """The options call is JSON only (a cross-site form cannot send it: 415), and asks who the page is for (none:
    401); the answer is a page form and needs the CSRF pair (403, nothing verified)."""
    stack = await builtin_stack(make_stack, WEBAUTHN)
    anonymous = await post_json(stack, "/_mfa/challenge/webauthn/options", {})
    assert anonymous[0].status == 401 and anonymous[1]["code"] == "unauthenticated"
    await sign_in(stack)
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(stack, key)
    as_form = await stack.form("/_mfa/challenge/webauthn/options", {})
    assert as_form.status == 415
    posted = await key_answer(stack, key)
    forged = await stack.form("/_mfa/challenge/webauthn", {**posted, "csrf": "x" * 43})
    assert forged.status == 403
    assert (await stack.form("/_mfa/challenge/webauthn", posted)).status == 303  # the ceremony was not spent


async def test_a_key_only_user_is_told_when_keys_are_turned_off(make_stack: StackFactory) -> None:
    """A user whose only factor is a key, on a gateway whose WebAuthn was turned off since: the challenge is a 403
    page saying so and what to do, never a code form that cannot work."""
    stack = await builtin_stack(make_stack, WEBAUTHN)
    await sign_in(stack)
    await register(stack, SoftAuthenticator(ORIGIN, RP_ID))
    off = await builtin_stack(make_stack, {"webauthn": {"enabled": False}})  # the same database, WebAuthn off
    await sign_in(off)
    page = await off.raw("GET", "/_mfa/challenge?rd=/admin", {"Accept": "text/html"})
    assert page.status == 403 and b"Security keys are turned off" in page.body
    assert b'name="code"' not in page.body


async def test_a_ceremony_of_one_sign_in_completes_no_other(make_stack: StackFactory) -> None:
    """carol signs in twice (two browsers). A ceremony the challenge started for the first, answered correctly by
    her key, posted from the second: 401, and the second is not stepped up. The ceremony is bound to the session."""
    stack = await builtin_stack(make_stack, WEBAUTHN)
    await sign_in(stack)
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(stack, key)
    await sign_out(stack)
    await sign_in(stack)
    first = dict(stack.jar)
    stack.jar.clear()
    await sign_in(stack)
    second = dict(stack.jar)
    stack.jar.clear()
    stack.jar.update(first)
    answer = await key_answer(stack, key)
    stack.jar.clear()
    stack.jar.update(second)
    page = await stack.raw("GET", "/_mfa/challenge?rd=/admin", {"Accept": "text/html"})
    relayed = await stack.form("/_mfa/challenge/webauthn", {**answer, "csrf": csrf_of(page)})
    assert relayed.status == 401 and "already answered" in alert_of(relayed)
    still = await stack.raw("GET", "/admin", {"Accept": "text/html"})
    assert still.header("Location") == "/_mfa/challenge?rd=%2Fadmin"


def text_of(page: RawResponse) -> str:
    """The page's text without tags, spaces folded: what a reader sees."""
    return " ".join(re.sub(r"<[^>]+>", " ", page.body.decode()).split())


async def test_the_keys_page_lists_renames_and_removes_with_a_code(make_stack: StackFactory) -> None:
    """A user with an app and a key: the keys page lists it (name, added, never used, not synced) with its rename
    and remove links. Renaming is a plain form (a bad name: 400, an alert tied to the field). Removing needs a
    fresh factor in the request: a wrong code is the page again (401), a right one removes the key."""
    stack = await make_stack(WEBAUTHN)
    await stack.app_login()
    secret, _ = await stack.enroll_via_pages()
    key = SoftAuthenticator(ORIGIN, RP_ID)
    key_id = (await register(stack, key))["data"]["credential"]["id"]
    listed = await stack.raw("GET", "/_mfa/security-keys?rd=/admin", {"Accept": "text/html"})
    seen = text_of(listed)
    assert listed.status == 200 and "Blue key" in seen
    assert "Added 2027-01-15 08:00 UTC Last used Never Synced No: it stays on this key or device" in seen, seen
    assert f"/_mfa/security-keys/remove?id={key_id}&amp;rd=%2Fadmin".encode() in listed.body
    assert b'data-webauthn="register"' in listed.body  # the MFA is minutes old: adding another is offered
    assert b'href="/_mfa/account"' in listed.body  # a user with a second factor is shown the way to the account page
    rename_page = f"/_mfa/security-keys/rename?id={key_id}&rd=/admin"
    bad = await stack.csrf_form(rename_page, "/_mfa/security-keys/rename", {"id": key_id, "name": " ", "rd": "/admin"})
    assert bad.status == 400 and b'aria-describedby="name-error"' in bad.body and b'id="name-error"' in bad.body
    renamed = await stack.csrf_form(
        rename_page, "/_mfa/security-keys/rename", {"id": key_id, "name": "Red key", "rd": "/admin"}
    )
    assert renamed.status == 303 and renamed.header("Location") == "/_mfa/security-keys?rd=%2Fadmin"
    assert "Red key" in text_of(await stack.raw("GET", "/_mfa/security-keys", {"Accept": "text/html"}))
    remove_page = f"/_mfa/security-keys/remove?id={key_id}&rd=/admin"
    page = await stack.raw("GET", remove_page, {"Accept": "text/html"})
    assert b"Confirm with a security key or passkey" in page.body and b'name="code"' in page.body
    assert b"your only second factor" not in page.body
    wrong = await stack.form("/_mfa/security-keys/remove", {"id": key_id, "code": "000000", "csrf": csrf_of(page)})
    assert wrong.status == 401 and b'id="code-error"' in wrong.body and b"not valid" in wrong.body
    stack.clock.advance(30)
    right = await stack.form(
        "/_mfa/security-keys/remove", {"id": key_id, "code": stack.code(secret), "rd": "/admin", "csrf": csrf_of(page)}
    )
    assert right.status == 303 and right.header("Location") == "/_mfa/security-keys?rd=%2Fadmin"
    assert "You have no security keys or passkeys yet." in text_of(
        await stack.raw("GET", "/_mfa/security-keys", {"Accept": "text/html"})
    )
    assert (await stack.raw("GET", "/admin")).status == 200  # the app and its session remain


async def test_removing_the_last_key_with_the_key_turns_mfa_off_everywhere(make_stack: StackFactory) -> None:
    """A key-only user's remove page warns that it is the only factor and has no code form; confirmed with the
    key itself (the answer posted as the script posts it), the key goes, MFA is off, and the session is over."""
    stack = await builtin_stack(make_stack, WEBAUTHN)
    await sign_in(stack)
    key = SoftAuthenticator(ORIGIN, RP_ID)
    key_id = (await register(stack, key))["data"]["credential"]["id"]
    page = await stack.raw("GET", f"/_mfa/security-keys/remove?id={key_id}", {"Accept": "text/html"})
    assert b"This is your only second factor" in page.body and b'name="code"' not in page.body
    assert b"data-webauthn-fallback" in page.body
    _, started = await post_json(stack, "/_mfa/api/webauthn/authentication/options", {})
    data = started["data"]
    posted = {
        "id": key_id,
        "csrf": csrf_of(page),
        "ceremonyId": data["ceremonyId"],
        "credential": json.dumps(key.get(data["publicKey"])),
    }
    off = await stack.form("/_mfa/security-keys/remove", posted)
    assert off.status == 200 and "Two-factor authentication is off" in text_of(off)
    assert off.cookies()["mfa_session"] == '""'  # expired
    assert (await stack.runtime.mfa.factors("carol")).enrolled is False
    again = await stack.form("/_mfa/security-keys/remove", posted)
    assert (
        again.status == 303
        and again.header(
            "Location",
        )
        == "/_mfa/signin?rd=%2F_mfa%2Fsecurity-keys%2Fremove"
    )


async def test_adding_a_key_needs_a_recent_mfa_and_the_page_says_so(make_stack: StackFactory) -> None:
    """Sixteen minutes after the last MFA, the keys page offers no registration: it says why and links to the
    challenge, which returns to it; verified again, the registration form is there."""
    stack = await builtin_stack(make_stack, WEBAUTHN)
    await sign_in(stack)
    secret, _ = await stack.enroll_via_pages()
    stack.clock.advance(16 * 60)
    stale = await stack.raw("GET", "/_mfa/security-keys?rd=/admin", {"Accept": "text/html"})
    assert b'data-webauthn="register"' not in stale.body
    assert "needs a check with your second factor in the last 15 minutes" in text_of(stale)
    verify = "/_mfa/challenge?rd=%2F_mfa%2Fsecurity-keys%3Frd%3D%252Fadmin"
    assert f'href="{verify}"'.encode() in stale.body.replace(b"&amp;", b"&")
    verified = await stack.csrf_form(
        verify, "/_mfa/challenge", {"code": stack.code(secret), "rd": "/_mfa/security-keys?rd=%2Fadmin"}
    )
    assert verified.status == 303 and verified.header("Location") == "/_mfa/security-keys?rd=%2Fadmin"
    fresh = await stack.raw("GET", "/_mfa/security-keys?rd=/admin", {"Accept": "text/html"})
    assert b'data-webauthn="register"' in fresh.body


async def test_who_may_open_the_keys_pages(make_stack: StackFactory) -> None:
    """No session: sign in first. A first factor with no second factor yet: the enroll page links to the keys page,
    which offers a first key. Enrolled but signed in with the password alone: the challenge first. WebAuthn off:
    a 404 page. Self-service enrollment off: 403."""
    stack = await builtin_stack(make_stack, WEBAUTHN)
    anonymous = await stack.raw("GET", "/_mfa/security-keys", {"Accept": "text/html"})
    assert anonymous.status == 303 and anonymous.header("Location") == "/_mfa/signin?rd=%2F_mfa%2Fsecurity-keys"
    await sign_in(stack)
    enroll = await stack.raw("GET", "/_mfa/enroll?rd=/admin", {"Accept": "text/html"})
    assert b'href="/_mfa/security-keys?rd=%2Fadmin">Use a security key or passkey instead' in enroll.body
    first = await stack.raw("GET", "/_mfa/security-keys?rd=/admin", {"Accept": "text/html"})
    assert first.status == 200 and b'data-webauthn="register"' in first.body
    assert "It becomes your second factor" in text_of(first)
    assert b"/_mfa/account" not in first.body  # the account page needs the second factor being registered here
    await stack.enroll_via_pages()
    await sign_out(stack)
    await sign_in(stack)
    for path in ("/_mfa/security-keys", "/_mfa/security-keys/rename?id=AAAA", "/_mfa/security-keys/remove?id=AAAA"):
        challenged = await stack.raw("GET", path, {"Accept": "text/html"})
        assert challenged.status == 303 and (challenged.header("Location") or "").startswith("/_mfa/challenge?rd=")
    off = await builtin_stack(make_stack, {"webauthn": {"enabled": False}})
    await sign_in(off)
    assert (await off.raw("GET", "/_mfa/security-keys", {"Accept": "text/html"})).status == 404
    deny = await make_stack({**BUILTIN, **WEBAUTHN, "enrollment": {"unenrolled": "deny"}}, name="deny")
    add_user(deny.settings, "carol", "carol password 1")
    await sign_in(deny)
    assert (await deny.raw("GET", "/_mfa/security-keys", {"Accept": "text/html"})).status == 403
