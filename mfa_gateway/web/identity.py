"""Who is calling: the client address, the first factor, and the step-up session bound to it.

First factor, by ``identity.source``:

* ``trusted_header``: the configured header, believed only when the TCP peer is in ``trusted_proxies``; from
  anyone else it is ignored (and stripped before proxying).
* ``builtin``: the gateway's own session cookie, or a gateway-issued bearer JWT.
* ``upstream_login``: the app's own session cookie; the user is known from the step-up session bound to it.

A session counts only if it opens (sealed by our keyring), is neither expired, idle nor revoked, and is bound to
the first factor presented with it: a cookie of user A next to user B's header or app session is refused.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from aiohttp import web

from mfa_gateway.config import Settings
from mfa_gateway.core.addresses import client_address, is_trusted
from mfa_gateway.core.decision import FirstFactor
from mfa_gateway.core.errors import DependencyUnavailable, Unauthenticated
from mfa_gateway.core.keyring import Keyring
from mfa_gateway.core.methods import has_mfa, phishing_resistant
from mfa_gateway.core.session import Session, binding_of, open_sealed
from mfa_gateway.core.tokens import SigningKeys
from mfa_gateway.core.users import canonical_user
from mfa_gateway.service.revocations import RevocationView
from mfa_gateway.web.cookie_header import request_cookie


class Peer(NamedTuple):
    """The TCP peer, judged once per request: whether it is a trusted proxy, and the client address behind it (built
    on every request: a named tuple, as ``gate.Target``)."""

    trusted: bool
    client_ip: str | None


PEER = web.RequestKey("peer", Peer)
TRUST_CACHE_SIZE = 4096
"""Peer addresses whose trust was decided, and the client addresses read behind trusted proxies, per process (an
address string parses the same way every time)."""
CLIENT_CACHE_LENGTH = 256
"""``X-Forwarded-For`` values longer than this in all are read every time, not remembered."""
_UNKNOWN = "\x00"  # not a client address: never in the cache's values
OPENED_CACHE_SIZE = 4096
"""Cookie values opened (decrypted and parsed) per process. Only the opening is cached: expiry, idle time,
revocation and binding are checked on every request."""


@dataclass(frozen=True, slots=True)
class Principal:
    """A first factor with a known user, and the valid session that goes with it (if any)."""

    first_factor: FirstFactor
    session: Session | None

    @property
    def user_id(self) -> str:
        assert self.first_factor.user_id is not None
        return self.first_factor.user_id

    @property
    def mfa_time(self) -> float | None:
        return self.session.mfa_time if self.session is not None else self.first_factor.mfa_time


class Identifier:
    def __init__(
        self,
        settings: Settings,
        session_keyring: Callable[[], Keyring],
        signing_keys: Callable[[], SigningKeys],
        revocations: RevocationView,
        clock: Callable[[], float],
    ) -> None:
        self._identity = settings.identity
        self._session = settings.session
        self._trusted = settings.trusted_proxies
        self._session_keyring = session_keyring
        self._signing_keys = signing_keys
        self._revocations = revocations
        self._clock = clock
        login = settings.identity.upstream_login
        self._app_cookie = login.session_cookie if login is not None else None
        self._opened: dict[str, Session] = {}
        self._factors: dict[str, FirstFactor] = {}  # session id -> the session as a first factor
        self._cache_keyring: Keyring | None = None
        self._trust: dict[str | None, bool] = {}
        self._clients: dict[tuple[str | None, ...], str | None] = {}  # (trusted peer, X-Forwarded-For...) -> client

    def peer(self, request: web.Request) -> Peer:
        """The request's peer, judged once per request (and each address parsed once per process)."""
        try:
            return request[PEER]
        except KeyError:
            return self.judge_peer(request)

    def judge_peer(self, request: web.Request) -> Peer:
        """``peer`` for a request not judged yet (a handler's first step): no lookup first."""
        address = request.remote
        trusted = self._trust.get(address)
        if trusted is None:
            if len(self._trust) >= TRUST_CACHE_SIZE:
                self._trust.clear()
            trusted = self._trust[address] = is_trusted(address, self._trusted)
        forwarded = request.headers.getall("X-Forwarded-For", ()) if trusted else ()  # read only from a proxy
        if forwarded:
            client = self._clients.get((address, *forwarded), _UNKNOWN)
            if client is _UNKNOWN:
                client = client_address(address, forwarded, self._trusted, trusted)
                if sum(map(len, forwarded)) <= CLIENT_CACHE_LENGTH:
                    if len(self._clients) >= TRUST_CACHE_SIZE:
                        self._clients.clear()
                    self._clients[(address, *forwarded)] = client
        else:
            client = address  # no proxy named a client: the peer itself (client_address's answer without hops)
        peer = request[PEER] = Peer(trusted, client)
        return peer

    def client_ip(self, request: web.Request) -> str | None:
        """The client's address for policy (``networks`` rules): None when a trusted proxy named no address."""
        return self.peer(request).client_ip

    def limit_key(self, request: web.Request) -> str | None:
        """The client as attempt limits and the audit count it: its address, or, when a trusted proxy named no
        address, ``unknown@<proxy>`` (every such client of that proxy shares one per-address limit, as before)."""
        found = self.peer(request).client_ip
        return found if found is not None else f"unknown@{request.remote}"

    def peer_is_trusted(self, request: web.Request) -> bool:
        return self.peer(request).trusted

    def identify(self, request: web.Request) -> Principal | None:
        """The principal of a request, or None when there is no usable first factor."""
        first_factor, session = self.resolve(request)
        if first_factor is None or first_factor.user_id is None:
            return None
        return Principal(first_factor, session)

    def resolve(self, request: web.Request) -> tuple[FirstFactor | None, Session | None]:
        """The first factor and the valid session bound to it; the user comes from the session when only it knows
        (an app session cookie names nobody). The session cookie is opened once (with ``builtin``, the first factor
        may be that very session)."""
        first_factor, session, opened = self._first_factor(request)
        if first_factor is None:
            return None, None
        session = self._bound(session if opened else self._open_cookie(request), first_factor)
        if first_factor.user_id is None and session is not None:
            first_factor = FirstFactor(session.user_id, first_factor.source, first_factor.binding)
        return first_factor, session

    def require(self, request: web.Request) -> Principal:
        principal = self.identify(request)
        if principal is None:
            raise Unauthenticated()
        return principal

    def first_factor(self, request: web.Request) -> FirstFactor | None:
        return self._first_factor(request)[0]

    def _first_factor(self, request: web.Request) -> tuple[FirstFactor | None, Session | None, bool]:
        """The first factor, and the session cookie's valid session if it was opened on the way (then True)."""
        source = self._identity.source
        if source == "trusted_header":
            return self._from_header(request), None, False
        if source == "upstream_login":
            app_session = self.app_session(request)
            return (FirstFactor(None, "app", binding_of("app:" + app_session)) if app_session else None), None, False
        bearer = self._from_bearer(request)
        if bearer is not None:
            return bearer, None, False
        session = self._open_cookie(request)
        if session is None:
            return None, None, True
        # The same for every cookie of one session (its id changes whenever its user or authentication does, and
        # only our keyring seals one): built once per session id, forgotten with the openings.
        factor = self._factors.get(session.sid)
        if factor is None:
            factor = self._factors[session.sid] = FirstFactor(
                session.user_id, "session", "", email=session.email, groups=session.groups, auth_time=session.auth_time
            )
        return factor, session, True

    def session(self, request: web.Request, first_factor: FirstFactor) -> Session | None:
        return self._bound(self._open_cookie(request), first_factor)

    def _bound(self, session: Session | None, first_factor: FirstFactor) -> Session | None:
        """``session`` if it is bound to ``first_factor``."""
        if session is None or not hmac.compare_digest(session.binding.encode(), first_factor.binding.encode()):
            return None
        if first_factor.user_id is not None and session.user_id != first_factor.user_id:
            return None
        return session

    def app_session(self, request: web.Request) -> str | None:
        if self._app_cookie is None:
            return None
        return request_cookie(request, self._app_cookie) or None

    def _from_header(self, request: web.Request) -> FirstFactor | None:
        if not self.peer(request).trusted:
            return None
        raw = request.headers.get(self._identity.header)
        if not raw:
            return None
        user_id = canonical_user(raw)
        email = request.headers.get(self._identity.email_header) if self._identity.email_header else None
        groups_raw = request.headers.get(self._identity.groups_header) if self._identity.groups_header else None
        groups = tuple(g.strip() for g in groups_raw.split(",") if g.strip()) if groups_raw else ()
        return FirstFactor(user_id, "hdr", binding_of("header:" + user_id), email=email, groups=groups)

    def _from_bearer(self, request: web.Request) -> FirstFactor | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        claims = self._signing_keys().verify(
            token.strip(), now=self._clock(), issuer=self._session.jwt_issuer, audience=self._session.jwt_audience
        )
        amr = {str(m) for m in claims["amr"]}
        user_id = canonical_user(str(claims["sub"]))
        sid = str(claims["sid"]) if claims.get("sid") else None
        self._require_current_revocations()
        if self._revocations.is_revoked(sid, user_id, float(claims["iat"])):
            raise Unauthenticated("The token has been revoked.", code="invalid_token")
        return FirstFactor(
            user_id,
            "jwt",
            "",
            email=claims.get("email"),
            auth_time=float(claims["auth_time"]),
            mfa_time=float(claims["iat"]) if has_mfa(amr) else None,
            phishing_resistant_time=float(claims["iat"]) if phishing_resistant(amr) else None,
            token_id=sid,
            token_expires=float(claims["exp"]),
        )

    def _open_cookie(self, request: web.Request) -> Session | None:
        """The request's valid session: opened (decrypted and parsed) once per cookie value per process, judged
        (expiry, idle time, revocation) on every call."""
        return self._open_cookie_value(request_cookie(request, self._session.cookie_name))

    def _open_cookie_value(self, value: str | None) -> Session | None:
        if not value:
            return None
        now = self._clock()
        keyring = self._session_keyring()
        if keyring is not self._cache_keyring or len(self._opened) >= OPENED_CACHE_SIZE:
            self._opened, self._cache_keyring = {}, keyring  # a rotated keyring invalidates every cached opening
            self._factors = {}
        session = self._opened.get(value)
        if session is None:
            try:
                session = open_sealed(value, keyring, now)
            except Unauthenticated:
                return None
            self._opened[value] = session
        elif now >= session.expires_at:
            return None
        self._require_current_revocations()
        if session.is_idle(now, self._session.idle_timeout) or self._revocations.is_revoked(
            session.sid, session.user_id, session.issued_at
        ):
            return None
        return session

    def _require_current_revocations(self) -> None:
        """Fail closed: a session or token is not trusted while revocations may be missing (feed down)."""
        if not self._revocations.healthy:
            raise DependencyUnavailable("redis", "Sessions cannot be checked right now; try again shortly.")
