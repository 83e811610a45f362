"""The gate in front of every protected request, used by the reverse proxy and by forward-auth alike.

``Gate.evaluate`` is the hot path: normalise the path, match the compiled policy, identify locally (sealed cookie,
JWT or trusted header), check the in-process revocation view, decide. It performs no network call.

Before it, the request is read: its host (``Gate.request_host``, ``Gate.host``) and its identity headers
(``Gate.refuse_duplicated_identity``). What does not read is refused (400) before policy sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from mfa_gateway.config import Settings
from mfa_gateway.core.decision import Allow, Challenge, ChallengeKind, Decision, Deny, decide, label_of
from mfa_gateway.core.errors import BadRequest, DependencyUnavailable, InvalidHost
from mfa_gateway.core.hosts import parse_authority
from mfa_gateway.core.keyring import Keyring
from mfa_gateway.core.paths import NormalisedPath, normalise_path, prepare_case_insensitive
from mfa_gateway.core.policy import Action
from mfa_gateway.core.session import Session, seal
from mfa_gateway.service.revocations import RevocationView
from mfa_gateway.web import cookies, csrf, html
from mfa_gateway.web.cookie_header import cookie_header
from mfa_gateway.web.errors import json_error
from mfa_gateway.web.identity import Identifier, Peer
from mfa_gateway.web.request_ids import request_id
from mfa_gateway.web.upstream import HOP_BY_HOP

SESSION_REFRESH_AFTER = 60.0
"""A session's last-seen time is re-sealed into its cookie at most once a minute (idle timeout bookkeeping)."""
REFRESHED_CACHE_SIZE = 4096
NORMALISED_CACHE_SIZE = 4096
NORMALISED_CACHE_PATH_LENGTH = 512
"""At most 4096 paths of at most 512 characters are remembered (a few MiB), whatever clients send."""
HOST_CACHE_SIZE = 1024
"""Hosts that parsed, per process (a deployment serves a few; the bound holds whatever clients send)."""


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
class Refreshed:
    """A session with a new last-seen time, and its cookie value, sealed once for every response that needs it."""

    session: Session
    sealed: str


@dataclass(frozen=True, slots=True)
class Outcome:
    decision: Decision
    refreshed: Refreshed | None = None  # a session whose last-seen time should be written back into its cookie


class Gate:
    def __init__(
        self,
        settings: Settings,
        identifier: Identifier,
        revocations: RevocationView,
        clock: Callable[[], float],
        session_keyring: Callable[[], Keyring],
    ) -> None:
        self.settings = settings
        self.policy = settings.policy.compile()
        self.identifier = identifier
        self._revocations = revocations
        self._clock = clock
        self._case_insensitive = settings.policy.case_insensitive_paths
        if self._case_insensitive:
            prepare_case_insensitive()
        self.stripper = HeaderStripper(settings)
        upstream = settings.upstream
        self.upstream_host = upstream.url.split("://", 1)[1] if upstream.url and not upstream.preserve_host else None
        self._session_keyring = session_keyring
        self._refreshed: dict[str, Refreshed] = {}
        self._normalised: dict[str, NormalisedPath] = {}
        names = settings.identity_headers
        self._identity_headers = (names.user, names.email, names.groups)
        identity = settings.identity
        self._identity_sources = tuple(
            name for name in (identity.header, identity.email_header, identity.groups_header) if name
        )
        self._hosts: dict[str, str] = {}
        self.own_cookies = frozenset(
            (settings.session.cookie_name, cookies.pending_cookie_name(settings), csrf.cookie_name(settings))
        )

    def normalise(self, raw_path: str) -> NormalisedPath:
        """The normalised path (``AmbiguousPath`` if there is none), remembered per raw path: a pure function."""
        known = self._normalised.get(raw_path)
        if known is None:
            known = normalise_path(raw_path, case_insensitive=self._case_insensitive)
            if len(raw_path) <= NORMALISED_CACHE_PATH_LENGTH:  # long paths are rare: not worth their memory
                if len(self._normalised) >= NORMALISED_CACHE_SIZE:
                    self._normalised.clear()
                self._normalised[raw_path] = known
        return known

    def host(self, authority: str) -> str:
        """The normalised host of a ``host[:port]``, remembered per value; :class:`InvalidHost` if it is none."""
        known = self._hosts.get(authority)
        if known is None:
            known = parse_authority(authority)
            if len(self._hosts) >= HOST_CACHE_SIZE:
                self._hosts.clear()
            self._hosts[authority] = known
        return known

    def request_host(self, request: web.Request, peer_trusted: bool) -> str:
        """The ``Host`` of a proxied request, which policy judges: exactly one, and a plain ``host[:port]``.

        A trusted proxy's ``X-Forwarded-Host`` reaches the app, so it too must be one plain ``host[:port]`` (a list
        would leave the app to choose). Raises :class:`InvalidHost`; aiohttp's ``request.host`` is not used, as it
        falls back to this machine's name when there is no ``Host``."""
        hosts = request.headers.getall("Host", ())
        if len(hosts) != 1:
            raise InvalidHost()
        self.host(hosts[0])
        if peer_trusted:
            forwarded = request.headers.getall("X-Forwarded-Host", ())
            if len(forwarded) > 1:
                raise InvalidHost()
            if forwarded:
                self.host(forwarded[0])
        return hosts[0]

    def refuse_duplicated_identity(self, request: web.Request, peer_trusted: bool) -> None:
        """A trusted proxy's identity header (``identity.header``, ``email_header``, ``groups_header``) sent more
        than once is refused: the gateway would read one copy and the app might read another."""
        if peer_trusted:
            headers = request.headers
            for name in self._identity_sources:
                if len(headers.getall(name, ())) > 1:
                    raise BadRequest("An identity header arrived more than once.", code="duplicate_identity_header")

    def evaluate(self, request: web.Request, target: Target, client_ip: str | None) -> Outcome:
        rule = self.policy.match(host=target.host, path=target.path.decoded, method=target.method, client_ip=client_ip)
        if rule.action is Action.BYPASS or rule.action is Action.DENY:
            return Outcome(decide(rule, None, None, 0.0))
        if not self._revocations.healthy:
            raise DependencyUnavailable("redis", "Session revocations cannot be checked; try again shortly.")
        now = self._clock()
        first_factor, session = self.identifier.resolve(request)
        decision = decide(rule, first_factor, session, now)
        refreshed = None
        if isinstance(decision, Allow) and session is not None and now - session.last_seen > SESSION_REFRESH_AFTER:
            refreshed = self._refresh(session, now)
        return Outcome(decision, refreshed)

    def _refresh(self, session: Session, now: float) -> Refreshed:
        """One refreshed cookie per session id per minute, so clients that keep sending the older cookie for a
        moment (parallel requests, API clients without a cookie jar) get the same new cookie, sealed once."""
        known = self._refreshed.get(session.sid)
        if known is None or now - known.session.last_seen > SESSION_REFRESH_AFTER:
            if len(self._refreshed) >= REFRESHED_CACHE_SIZE:
                self._refreshed.clear()
            seen = session.seen(now)
            known = self._refreshed[session.sid] = Refreshed(seen, seal(seen, self._session_keyring()))
        return known

    def write_refreshed(self, response: web.StreamResponse, outcome: Outcome) -> None:
        """Give the client its session's refreshed cookie, if the gate refreshed one."""
        if outcome.refreshed is not None:
            refreshed = outcome.refreshed
            cookies.set_sealed_session(
                response, self.settings, refreshed.sealed, refreshed.session.expires_at, self._clock()
            )

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

    def refusal(self, request: web.Request, decision: Challenge | Deny, target: Target) -> web.Response:
        """The response to a challenged or denied request: a redirect or page for browsers, JSON for APIs."""
        browser = wants_html(request, target.method)
        if isinstance(decision, Deny):
            if browser:
                return self.message_page(403, "Access denied", "This address is not available.")
            return json_error(403, "forbidden", "Access denied by policy.")
        location = self.challenge_location(decision, target)
        code = label_of(decision)
        message = "Multi-factor authentication is required." if code == "mfa_required" else "Sign in first."
        if browser and location is not None:
            return web.Response(status=302, headers={"Location": location})
        headers = {"Location": location} if location is not None else None
        if browser:
            return self.message_page(401, "Sign-in required", "Sign in through your organisation's sign-in page.")
        return json_error(401, code, message, headers)

    def message_page(self, status: int, title: str, text: str) -> web.Response:
        """A page from the gateway (refusals, the app's errors) in its layout, linking only allowed hosts."""
        return html.message_page(self.settings.prefix, self.settings.redirects.allowed_hosts, status, title, text)

    # -- what the app receives --------------------------------------------------------------------------------

    def identity_headers(self, allow: Allow) -> list[tuple[str, str]]:
        """Every configured identity header with its value (empty when unknown), for the app or the ingress."""
        values = (allow.user_id or "", allow.email or "", ",".join(allow.groups))
        return [(name, value) for names, value in zip(self._identity_headers, values, strict=True) for name in names]

    def upstream_headers(self, request: web.Request, peer: Peer, allow: Allow | None) -> CIMultiDict[str]:
        """The headers the app receives: the client's that pass ``HeaderStripper``, the cookies the gateway read minus
        its own, ``X-Forwarded-*`` (extending a trusted proxy's), and the identity headers of an allowed user."""
        headers, forwarded_for = self.stripper.kept(request.headers, peer_trusted=peer.trusted)
        if kept := cookie_header(request).without(self.own_cookies):
            headers["Cookie"] = kept  # exactly the pairs the gateway read, so the app cannot read others
        address = request.remote or ""
        headers["X-Forwarded-For"] = ", ".join([*forwarded_for, address]) if forwarded_for else address
        if "X-Forwarded-Proto" not in headers:
            headers["X-Forwarded-Proto"] = request.scheme
        if "X-Forwarded-Host" not in headers:
            headers["X-Forwarded-Host"] = request.host
        if self.upstream_host is not None:
            headers["Host"] = self.upstream_host
        headers["X-Request-Id"] = request_id(request, peer.trusted)
        if allow is not None and allow.user_id:
            for name, value in self.identity_headers(allow):
                if value:
                    headers[name] = value
        return headers


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
    """Decides which of a client's headers reach the app, in one pass over them.

    Removed: hop-by-hop headers and any header named in ``Connection``; ``Expect``; ``Cookie`` (rebuilt from what
    the gateway read); every header a client could use to claim an identity, a route or a method the gateway did not
    judge; and the ``X-Forwarded-*`` headers the gateway sets itself (kept from a trusted proxy, which it extends).

    Every header whose name contains ``_`` is dropped: CGI/WSGI servers map ``_`` and ``-`` to the same variable, so
    ``Remote_User`` or ``X_Forwarded_For`` would reach an app as ``REMOTE_USER`` or ``X_FORWARDED_FOR`` beside (or
    instead of) the gateway's own header. nginx drops such headers by default for the same reason.
    The sets are built once, at start-up.
    """

    def __init__(self, settings: Settings) -> None:
        identity = settings.identity
        always = {*settings.identity_headers.all(), *METHOD_OVERRIDES, *HOP_BY_HOP, "Expect", "Cookie"}
        from_untrusted = {
            *ROUTING_HEADERS,
            *(n for n in (identity.header, identity.email_header, identity.groups_header) if n),
            "X-Forwarded-Proto",
            "X-Forwarded-Host",
        }
        if not settings.upstream.preserve_host and settings.upstream.url:
            always.add("Host")
        self._trusted = frozenset(name.lower() for name in always)
        self._untrusted = self._trusted | frozenset(name.lower() for name in from_untrusted)

    def kept(self, headers: CIMultiDictProxy[str], *, peer_trusted: bool) -> tuple[CIMultiDict[str], list[str]]:
        """The headers that pass, and the ``X-Forwarded-For`` values of a trusted peer (to extend, not replace)."""
        banned = self._trusted if peer_trusted else self._untrusted
        names = [name.lower() for name in headers]
        if "connection" in names:
            banned = banned | {t.strip().lower() for v in headers.getall("Connection") for t in v.split(",")}
        kept = CIMultiDict(headers)
        for name in banned.intersection(names):
            kept.popall(name)
        if "_" in "".join(names):  # CGI/WSGI read X_Forwarded_For as X-Forwarded-For: drop them all, as nginx does
            for name in {name for name in kept if "_" in name}:
                kept.popall(name)
        forwarded_for = kept.popall("X-Forwarded-For", [])
        return kept, forwarded_for if peer_trusted else []
