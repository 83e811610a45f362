"""The gate in front of every protected request, used by the reverse proxy and by forward-auth alike.

``Gate.evaluate`` is the hot path: normalise the path, match the compiled policy, identify locally (sealed cookie,
JWT or trusted header), check the in-process revocation view, decide. It performs no network call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from aiohttp import web
from multidict import CIMultiDict

from mfa_gateway.config import Settings
from mfa_gateway.core.decision import Allow, Challenge, ChallengeKind, Decision, Deny, FirstFactor, decide
from mfa_gateway.core.errors import DependencyUnavailable
from mfa_gateway.core.paths import NormalisedPath, normalise_path
from mfa_gateway.core.policy import Action
from mfa_gateway.core.session import Session
from mfa_gateway.service.revocations import RevocationView
from mfa_gateway.web import html
from mfa_gateway.web.errors import json_error
from mfa_gateway.web.identity import Identifier

SESSION_REFRESH_AFTER = 60.0
"""A session's last-seen time is re-sealed into its cookie at most once a minute (idle timeout bookkeeping)."""


@dataclass(frozen=True, slots=True)
class Target:
    """The request being decided on: the client's own request (proxy) or the one a proxy asks about (forward-auth)."""

    method: str
    scheme: str
    host: str
    path: NormalisedPath
    query: str

    @property
    def relative_url(self) -> str:
        return self.path.encoded + (f"?{self.query}" if self.query else "")

    @property
    def absolute_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.relative_url}"


@dataclass(frozen=True, slots=True)
class Outcome:
    decision: Decision
    first_factor: FirstFactor | None = None
    refreshed: Session | None = None  # a session whose last-seen time should be written back into its cookie


class Gate:
    def __init__(
        self, settings: Settings, identifier: Identifier, revocations: RevocationView, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.policy = settings.policy.compile()
        self.identifier = identifier
        self._revocations = revocations
        self._clock = clock
        self._case_insensitive = settings.policy.case_insensitive_paths
        self.stripper = HeaderStripper(settings)
        self._refreshed: dict[str, Session] = {}

    def normalise(self, raw_path: str) -> NormalisedPath:
        return normalise_path(raw_path, case_insensitive=self._case_insensitive)

    def evaluate(self, request: web.Request, target: Target, client_ip: str | None) -> Outcome:
        rule = self.policy.match(host=target.host, path=target.path.decoded, method=target.method, client_ip=client_ip)
        if rule.action is Action.BYPASS or rule.action is Action.DENY:
            return Outcome(decide(rule, None, None, 0.0))
        if not self._revocations.healthy:
            raise DependencyUnavailable("redis", "Session revocations cannot be checked; try again shortly.")
        now = self._clock()
        first_factor = self.identifier.first_factor(request)
        session = self.identifier.session(request, first_factor) if first_factor is not None else None
        if first_factor is not None and first_factor.user_id is None and session is not None:
            first_factor = FirstFactor(session.user_id, first_factor.source, first_factor.binding)
        decision = decide(rule, first_factor, session, now)
        refreshed = None
        if isinstance(decision, Allow) and session is not None and now - session.last_seen > SESSION_REFRESH_AFTER:
            refreshed = self._refresh(session, now)
        return Outcome(decision, first_factor, refreshed)

    def _refresh(self, session: Session, now: float) -> Session:
        """One refreshed session per session id per minute, so clients that keep sending the older cookie for a
        moment (parallel requests, API clients without a cookie jar) get the same new cookie, sealed once."""
        known = self._refreshed.get(session.sid)
        if known is None or now - known.last_seen > SESSION_REFRESH_AFTER:
            if len(self._refreshed) >= 4096:
                self._refreshed.clear()
            known = self._refreshed[session.sid] = session.seen(now)
        return known

    # -- where a challenged request is sent ------------------------------------------------------------------

    def page_url(self, page: str, return_to: str) -> str:
        base = (self.settings.public_url or "") + self.settings.prefix
        return f"{base}/{page}?{urlencode({'rd': return_to})}"

    def challenge_location(self, challenge: Challenge, target: Target) -> str | None:
        """Where a browser goes to satisfy a challenge (None: nowhere the gateway can offer)."""
        return_to = target.absolute_url if self.settings.public_url else target.relative_url
        if challenge.kind is ChallengeKind.MFA:
            return self.page_url("challenge", return_to)
        source = self.settings.identity.source
        if source == "builtin":
            return self.page_url("signin", return_to)
        login = self.settings.identity.upstream_login
        if source == "upstream_login" and login is not None:
            return f"{login.login_path}?next={quote(target.relative_url, safe='')}"
        return None

    def refusal(
        self, request: web.Request, decision: Challenge | Deny, target: Target, *, redirect_status: int = 302
    ) -> web.Response:
        """The response to a challenged or denied request: a redirect or page for browsers, JSON for APIs."""
        browser = wants_html(request, target.method)
        if isinstance(decision, Deny):
            if browser:
                return self._message(403, "Access denied", "This address is not available.")
            return json_error(403, "forbidden", "Access denied by policy.")
        location = self.challenge_location(decision, target)
        code = "mfa_required" if decision.kind is ChallengeKind.MFA else "unauthenticated"
        message = "Multi-factor authentication is required." if code == "mfa_required" else "Sign in first."
        if browser and location is not None:
            return web.Response(status=redirect_status, headers={"Location": location})
        headers = {"Location": location} if location is not None else None
        if browser:
            return self._message(401, "Sign-in required", "Sign in through your organisation's sign-in page.")
        return json_error(401, code, message, headers)

    def _message(self, status: int, title: str, text: str) -> web.Response:
        return html.message_page(self.settings.prefix, self.settings.redirects.allowed_hosts, status, title, text)

    # -- what the app receives --------------------------------------------------------------------------------

    def identity_headers(self, allow: Allow) -> list[tuple[str, str]]:
        names = self.settings.identity_headers
        user, email, groups = allow.user_id or "", allow.email or "", ",".join(allow.groups)
        return [(n, user) for n in names.user] + [(n, email) for n in names.email] + [(n, groups) for n in names.groups]


def wants_html(request: web.Request, method: str | None = None) -> bool:
    """Browsers navigating (GET/HEAD asking for HTML) get redirects and pages; everything else gets JSON."""
    return (method or request.method) in ("GET", "HEAD") and "text/html" in request.headers.get("Accept", "")


ROUTING_HEADERS = (
    "Forwarded",
    "X-Real-IP",
    "X-Original-URL",
    "X-Original-Method",
    "X-Rewrite-URL",
    "X-Forwarded-Uri",
    "X-Forwarded-Method",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Server",
    "X-Forwarded-Ssl",
)
"""Headers some apps route or trust on: believed only from a trusted proxy, stripped from anyone else."""

METHOD_OVERRIDES = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")
"""Headers that make an app run another method than the one policy judged: always stripped."""


class HeaderStripper:
    """Removes every header a client could use to claim an identity, a route or a method the gateway did not judge.

    Names are compared with ``_`` folded to ``-``: CGI/WSGI servers map both to the same variable, so
    ``Remote_User`` would otherwise reach an app as ``REMOTE_USER`` (nginx drops such headers for the same reason).
    The sets are built once, at start-up.
    """

    def __init__(self, settings: Settings) -> None:
        identity = settings.identity
        always = {*settings.identity_headers.all(), *METHOD_OVERRIDES}
        from_untrusted = {
            *ROUTING_HEADERS,
            *(n for n in (identity.header, identity.email_header, identity.groups_header) if n),
        }
        self._trusted = frozenset(name.lower() for name in always)
        self._untrusted = self._trusted | frozenset(name.lower() for name in from_untrusted)

    def strip(self, headers: CIMultiDict[str], *, peer_trusted: bool) -> None:
        banned = self._trusted if peer_trusted else self._untrusted
        for name in [n for n in headers if n.lower().replace("_", "-") in banned]:
            headers.popall(name, None)
