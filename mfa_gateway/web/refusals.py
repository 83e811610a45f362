"""The answer to a request the gate did not allow: for a challenge, a redirect to where it can be satisfied (browsers)
or a 401 naming it (APIs); for a denial, a 403 page or JSON.

A rule that demands a phishing-resistant method sends the browser to the challenge page with
``require=phishing_resistant``, so the page asks for a security key (or says how to register one) instead of a
code. The parameter only shapes the page: the gate judges the session again, whatever the page was told.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from aiohttp import web

from mfa_gateway.config import Settings
from mfa_gateway.core.decision import Challenge, ChallengeKind, Deny, label_of
from mfa_gateway.web import html
from mfa_gateway.web.errors import json_error
from mfa_gateway.web.gate import Target

REQUIRE = "require"
"""The challenge page's query parameter naming what the rule demands beyond MFA."""
PHISHING_RESISTANT = "phishing_resistant"
"""``require=phishing_resistant``: only a security key or passkey will do."""

_MESSAGES = {
    ChallengeKind.SIGN_IN: "Sign in first.",
    ChallengeKind.MFA: "Multi-factor authentication is required.",
    ChallengeKind.PHISHING_RESISTANT: "A security key or passkey is required here; an authenticator-app or backup "
    "code is not enough.",
}


class Refusals:
    """The gate's refusals and where they send a browser (``page_url``, ``challenge_location``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def page_url(self, page: str, return_to: str, **params: str) -> str:
        base = (self.settings.public_url or "") + self.settings.prefix
        return f"{base}/{page}?{urlencode({'rd': return_to, **params})}"

    def challenge_location(self, challenge: Challenge, target: Target) -> str | None:
        """Where a browser goes to satisfy a challenge (None: nowhere the gateway can offer)."""
        return_to = target.absolute_url if self.settings.public_url else target.relative_url
        if challenge.kind is ChallengeKind.MFA:
            return self.page_url("challenge", return_to)
        if challenge.kind is ChallengeKind.PHISHING_RESISTANT:
            return self.page_url("challenge", return_to, **{REQUIRE: PHISHING_RESISTANT})
        source = self.settings.identity.source
        if source == "builtin":
            return self.page_url("signin", return_to)
        login = self.settings.identity.upstream_login
        if source == "upstream_login" and login is not None:
            return f"{login.login_path}?next={quote(target.relative_url, safe='')}"
        return None

    def answer(self, request: web.Request, decision: Challenge | Deny, target: Target) -> web.Response:
        """The response to a challenged or denied request: a redirect or page for browsers, JSON for APIs."""
        browser = html.wants_html(request, target.method)
        if isinstance(decision, Deny):
            if browser:
                return self.message_page(403, "Access denied", "This address is not available.")
            return json_error(403, "forbidden", "Access denied by policy.")
        location = self.challenge_location(decision, target)
        if browser and location is not None:
            return web.Response(status=302, headers={"Location": location})
        headers = {"Location": location} if location is not None else None
        if browser:
            return self.message_page(401, "Sign-in required", "Sign in through your organisation's sign-in page.")
        return json_error(401, label_of(decision), _MESSAGES[decision.kind], headers)

    def message_page(self, status: int, title: str, text: str) -> web.Response:
        """A page from the gateway (refusals, the app's errors) in its layout, linking only allowed hosts."""
        return html.message_page(self.settings.prefix, self.settings.redirects.allowed_hosts, status, title, text)
