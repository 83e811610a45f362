"""Rules that demand a phishing-resistant method (``phishing_resistant: true``), through the real gateway in proxy
mode and in forward-auth mode (nginx and Traefik dialects) alike, with builtin sign-in.

Pinned: a session whose second factor is TOTP (from the pages) is refused on such a route with
``phishing_resistant_required`` (401 JSON, a browser sent to the challenge page with ``require=phishing_resistant``),
while a plain mfa route lets it through; the challenge page then offers no code form, and a TOTP step-up made
anyway leaves the route refused; a WebAuthn step-up through the real JSON API, answered by the software
authenticator, is let through. A bearer JWT is judged by its amr: ``[pwd, otp]`` refused, ``[pwd, hwk]`` accepted.
With ``max_age``, a TOTP step-up after the key does not refresh the key.
"""

from __future__ import annotations

import json
from typing import Any

from tests.helpers.gateway import add_user
from tests.helpers.webauthn import SoftAuthenticator
from tests.integration.proxy.conftest import RawResponse, Stack, StackFactory
from tests.integration.proxy.test_forward_auth import FORWARD, nginx, traefik

ORIGIN = "https://app.example.test"
RP_ID = "example.test"
PASSWORD = "carol password 1"
SETTINGS: dict[str, Any] = {
    **FORWARD,
    "webauthn": {"origins": [ORIGIN], "rp_id": RP_ID},
    "policy": {
        "default": "mfa",
        "rules": [
            {"path": r"^/public(/|$)", "action": "bypass"},
            {"name": "keys only", "path": r"^/api(/|$)", "action": "mfa", "phishing_resistant": True},
            {"name": "fresh key", "path": r"^/admin(/|$)", "action": "mfa", "phishing_resistant": True, "max_age": 300},
            {"name": "fresh MFA", "path": r"^/reports(/|$)", "action": "mfa", "max_age": 300},
        ],
    },
}
JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}


async def totp_stack(make_stack: StackFactory) -> tuple[Stack, str]:
    """carol signed in on the pages with an authenticator app set up there: her session's MFA is TOTP."""
    stack = await make_stack(SETTINGS)
    add_user(stack.settings, "carol", PASSWORD, "carol@example.test")
    await stack.csrf_form("/_mfa/signin", "/_mfa/signin", {"username": "carol", "password": PASSWORD, "rd": "/"})
    secret, _ = await stack.enroll_via_pages()
    return stack, secret


async def api(stack: Stack, path: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = await stack.raw(
        "POST", "/_mfa/api/" + path, {"Content-Type": "application/json", **JSON, **headers}, json.dumps(body).encode()
    )
    answer: dict[str, Any] = json.loads(response.body)
    assert response.status == 200, answer
    return answer


async def register(stack: Stack) -> SoftAuthenticator:
    """A security key registered through api/webauthn (her TOTP session is recent enough to add one)."""
    key = SoftAuthenticator(ORIGIN, RP_ID)
    started = (await api(stack, "webauthn/registration/options", {"name": "Blue key"}))["data"]
    await api(
        stack,
        "webauthn/registration",
        {"ceremonyId": started["ceremonyId"], "credential": key.create(started["publicKey"])},
    )
    return key


async def use_key(stack: Stack, key: SoftAuthenticator, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A WebAuthn step-up (or a pending sign-in completed) through api/webauthn/authentication."""
    started = (await api(stack, "webauthn/authentication/options", body or {}))["data"]
    answer = {**(body or {}), "ceremonyId": started["ceremonyId"], "credential": key.get(started["publicKey"])}
    return await api(stack, "webauthn/authentication", answer)


def _code(response: RawResponse) -> str:
    return str(json.loads(response.body)["code"])


async def refused(stack: Stack, path: str, **auth: Any) -> None:
    """``path`` is refused as needing a security key, in proxy mode and by forward-auth in both dialects: 401
    phishing_resistant_required for API clients, and browsers sent to the challenge page told why."""
    location = f"/_mfa/challenge?rd={path.replace('/', '%2F')}&require=phishing_resistant"
    proxied = await stack.raw("GET", path, JSON, **auth)
    assert (proxied.status, _code(proxied), proxied.header("Location")) == (
        401,
        "phishing_resistant_required",
        location,
    )
    browser = await stack.raw("GET", path, HTML, **auth)
    assert (browser.status, browser.header("Location")) == (302, location)
    by_nginx = await stack.raw("GET", "/_mfa/auth", nginx(f"https://app.example.test{path}", **HTML), **auth)
    assert (by_nginx.status, _code(by_nginx), by_nginx.header("Location")) == (
        401,
        "phishing_resistant_required",
        location,
    )
    by_traefik = await stack.raw("GET", "/_mfa/auth", traefik(path, **HTML), **auth)
    assert (by_traefik.status, by_traefik.header("Location")) == (302, location)
    traefik_api = await stack.raw("GET", "/_mfa/auth", traefik(path, **JSON), **auth)
    assert (traefik_api.status, _code(traefik_api)) == (401, "phishing_resistant_required")


async def accepted(stack: Stack, path: str, **auth: Any) -> None:
    """``path`` passes as carol: proxied to the app (which answers for itself), 200 with her name by forward-auth."""
    proxied = await stack.raw("GET", path, JSON, **auth)
    if path == "/api/whoami":
        assert json.loads(proxied.body)["identityHeaders"]["remote-user"] == "carol"
    else:  # the app's own login redirect: the gateway let the request through
        assert (proxied.status, proxied.header("Location")) == (302, f"/login?next={path}")
    for headers in (nginx(f"https://app.example.test{path}", **JSON), traefik(path, **JSON)):
        answer = await stack.raw("GET", "/_mfa/auth", headers, **auth)
        assert (answer.status, answer.header("Remote-User")) == (200, "carol")


async def test_a_totp_session_is_refused_and_a_webauthn_one_accepted_in_both_modes(make_stack: StackFactory) -> None:
    """carol's TOTP session passes a plain mfa route but is refused on the security-key route by the proxy and by
    forward-auth (nginx and Traefik) alike; after a WebAuthn step-up through the API both let her through."""
    stack, _ = await totp_stack(make_stack)
    for path in ("/reports", "/public"):
        proxied = await stack.raw("GET", path, HTML)
        assert not (proxied.header("Location") or "").startswith("/_mfa/"), path
    await refused(stack, "/api/whoami")
    key = await register(stack)
    await refused(stack, "/api/whoami")  # registering a key is not signing in with it
    assert (await use_key(stack, key))["method"] == "hwk"
    await accepted(stack, "/api/whoami")
    await accepted(stack, "/admin")


async def test_the_challenge_page_offers_no_code_and_a_code_changes_nothing(make_stack: StackFactory) -> None:
    """Sent to the challenge page with require=phishing_resistant, carol sees why and what to do (a link to register
    a key, since she has none; the key button alone, once she has one) and no code form. A TOTP step-up posted
    anyway succeeds as MFA but leaves the route refused, in both modes."""
    stack, secret = await totp_stack(make_stack)
    page = await stack.raw("GET", "/_mfa/challenge?rd=%2Fapi%2Fwhoami&require=phishing_resistant", HTML)
    assert page.status == 200 and b"Security key required" in page.body
    assert b'name="code"' not in page.body and b"has no security key or passkey yet" in page.body
    assert b'href="/_mfa/security-keys?rd=%2Fapi%2Fwhoami"' in page.body, "a way to register one"
    plain = await stack.raw("GET", "/_mfa/challenge?rd=%2Fapi%2Fwhoami", HTML)
    assert b'name="code"' in plain.body, "the requirement, not the page, hides the code form"
    stack.clock.advance(30)  # a new code: the one used at enrollment is spent
    stepped = await stack.csrf_form(
        "/_mfa/challenge?rd=%2Fapi%2Fwhoami", "/_mfa/challenge", {"code": stack.code(secret), "rd": "/api/whoami"}
    )
    assert (stepped.status, stepped.header("Location")) == (303, "/api/whoami")
    await refused(stack, "/api/whoami")
    await register(stack)
    again = await stack.raw("GET", "/_mfa/challenge?rd=%2Fapi%2Fwhoami&require=phishing_resistant", HTML)
    assert b"Use your security key or passkey" in again.body and b'name="code"' not in again.body
    assert b"accepts only a security key or passkey" in again.body


async def test_with_max_age_a_later_totp_step_up_does_not_refresh_the_key(make_stack: StackFactory) -> None:
    """/admin wants a key used within 300 s. Key at t, TOTP step-up at t+200: at t+400 the TOTP is fresh (a plain
    max_age 300 route passes) but the key is not, so /admin is refused in both modes; using the key again passes."""
    stack, secret = await totp_stack(make_stack)
    key = await register(stack)
    await use_key(stack, key)
    await accepted(stack, "/admin")
    stack.clock.advance(200)
    stepped = await stack.csrf_form(
        "/_mfa/challenge?rd=%2Freports", "/_mfa/challenge", {"code": stack.code(secret), "rd": "/reports"}
    )
    assert stepped.status == 303
    stack.clock.advance(200)
    proxied = await stack.raw("GET", "/reports", HTML)
    assert (proxied.status, proxied.header("Location")) == (302, "/login?next=/reports"), "the TOTP step-up is fresh"
    await refused(stack, "/admin")
    await accepted(stack, "/api/whoami")  # no max_age there: the key used 400 s ago still counts
    await use_key(stack, key)
    await accepted(stack, "/admin")


async def test_a_bearer_jwt_counts_by_its_amr(make_stack: StackFactory) -> None:
    """api/login with a TOTP code issues a JWT with amr [pwd, otp]: refused on the key route in both modes (no
    cookie sent). Completing a pending sign-in with the key issues amr [pwd, hwk]: accepted."""
    stack, secret = await totp_stack(make_stack)
    key = await register(stack)
    stack.clock.advance(30)
    with_code = await api(stack, "login", {"username": "carol", "password": PASSWORD, "mfaToken": stack.code(secret)})
    totp_bearer = {"Authorization": f"Bearer {with_code['token']}"}
    location = "/_mfa/challenge?rd=%2Fapi%2Fwhoami&require=phishing_resistant"
    proxied = await stack.raw("GET", "/api/whoami", {**JSON, **totp_bearer}, cookies={})
    assert (proxied.status, _code(proxied), proxied.header("Location")) == (
        401,
        "phishing_resistant_required",
        location,
    )
    by_nginx = await stack.raw(
        "GET", "/_mfa/auth", nginx("https://app.example.test/api/whoami", **JSON, **totp_bearer), cookies={}
    )
    assert (by_nginx.status, _code(by_nginx)) == (401, "phishing_resistant_required")
    pending = await api(stack, "login", {"username": "carol", "password": PASSWORD})
    assert pending["mfaRequired"] is True
    signed_in = await use_key(stack, key, {"challengeId": pending["challengeId"]})
    key_bearer = {"Authorization": f"Bearer {signed_in['token']}"}
    proxied = await stack.raw("GET", "/api/whoami", {**JSON, **key_bearer}, cookies={})
    assert json.loads(proxied.body)["identityHeaders"]["remote-user"] == "carol"
    by_nginx = await stack.raw(
        "GET", "/_mfa/auth", nginx("https://app.example.test/api/whoami", **JSON, **key_bearer), cookies={}
    )
    assert (by_nginx.status, by_nginx.header("Remote-User")) == (200, "carol")
