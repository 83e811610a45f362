"""The gate in front of every protected request, used by the reverse proxy and by forward-auth alike.

``Gate.evaluate`` is the hot path: normalise the path, match the compiled policy, identify locally (sealed cookie,
JWT or trusted header), check the in-process revocation view, decide. It performs no network call.

Before it, the request is read: its host (``Gate.request_host``, ``Gate.host``) and its identity headers
(``Gate.refuse_duplicated_identity``). What does not read is refused (400) before policy sees it.

After it, the other jobs have their own rooms: ``web.refusals`` answers a challenge or a denial, ``web.headers``
builds what the app receives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from aiohttp import web

from mfa_gateway.config import Settings
from mfa_gateway.core.decision import Allow, Decision, decide, reusable_for
from mfa_gateway.core.errors import BadRequest, DependencyUnavailable, InvalidHost
from mfa_gateway.core.hosts import parse_authority
from mfa_gateway.core.keyring import Keyring
from mfa_gateway.core.paths import NormalisedPath, normalise_path, prepare_case_insensitive
from mfa_gateway.core.policy import Action
from mfa_gateway.core.session import Session, seal
from mfa_gateway.service.revocations import RevocationView
from mfa_gateway.web import cookies
from mfa_gateway.web.identity import Identifier

SESSION_REFRESH_AFTER = 60.0
"""A session's last-seen time is re-sealed into its cookie at most once a minute (idle timeout bookkeeping)."""
REFRESHED_CACHE_SIZE = 4096
NORMALISED_CACHE_SIZE = 4096
NORMALISED_CACHE_PATH_LENGTH = 512
"""At most 4096 paths of at most 512 characters are remembered (a few MiB), whatever clients send."""


class Target(NamedTuple):
    """The request being decided on: the client's own request (proxy) or the one a proxy asks about (forward-auth).

    Built on every request: a named tuple, at a fraction of a frozen dataclass's cost (each of its fields is set
    through ``object.__setattr__``), and as immutable."""

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


class Outcome(NamedTuple):
    """The gate's decision, and the session to write back (built on every request: a named tuple, as ``Target``)."""

    decision: Decision
    refreshed: Refreshed | None = None  # a session whose last-seen time should be written back into its cookie
    reusable: int = 0  # seconds a front proxy may reuse an allowed answer (forward-auth, ``reuse_limit``)


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
        self._session_keyring = session_keyring
        self._refreshed: dict[str, Refreshed] = {}
        self._normalised: dict[str, NormalisedPath] = {}
        identity = settings.identity
        self._identity_sources = tuple(
            name for name in (identity.header, identity.email_header, identity.groups_header) if name
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
        """The normalised host of a ``host[:port]`` (remembered by ``parse_authority``); :class:`InvalidHost` if it
        is none."""
        return parse_authority(authority)

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

    def evaluate(self, request: web.Request, target: Target, client_ip: str | None, reuse_limit: int = 0) -> Outcome:
        """The decision on ``target``; with ``reuse_limit`` (forward-auth's ``cache_ttl``), how long a front proxy may
        reuse an allowed answer: never one that refreshes the session cookie, whose ``Set-Cookie`` belongs to this
        client alone (and whose last-seen time must reach the client before the idle timeout counts on)."""
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
        elif reuse_limit and isinstance(decision, Allow):
            reusable = reusable_for(decision, first_factor, now, self.settings.session.idle_timeout, reuse_limit)
            return Outcome(decision, None, reusable)
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
