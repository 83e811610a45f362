"""Who is calling: the client address and the first-factor identity of a request.

* ``trusted_header``: the configured header, read only when the TCP peer is a trusted proxy. From anyone else the
  header is ignored (and, when proxying, stripped).
* ``builtin``: the gateway's sealed session cookie, or a gateway-issued bearer JWT.

A step-up session cookie counts only together with the first factor it is bound to: a cookie of user A next to
user B's header is refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from mfa_gateway.config import Settings
from mfa_gateway.core.errors import Unauthenticated
from mfa_gateway.core.keyring import Keyring
from mfa_gateway.core.session import Session, binding_of, open_sealed
from mfa_gateway.core.tokens import SigningKeys
from mfa_gateway.core.users import canonical_user

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    source: str
    auth_time: float | None
    methods: tuple[str, ...]
    binding: str
    session: Session | None = None
    email: str | None = None

    @property
    def mfa_time(self) -> float | None:
        return self.session.mfa_time if self.session is not None else None


def is_trusted(address: str | None, networks: Sequence[Network]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(request: web.Request, trusted: Sequence[Network]) -> str | None:
    """The client's address: the peer, or, behind trusted proxies, the nearest untrusted X-Forwarded-For hop."""
    peer = request.remote
    if not is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


class Identifier:
    def __init__(
        self,
        settings: Settings,
        session_keyring: Callable[[], Keyring],
        signing_keys: Callable[[], SigningKeys],
        clock: Callable[[], float],
    ) -> None:
        self._identity = settings.identity
        self._session = settings.session
        self._session_keyring = session_keyring
        self._signing_keys = signing_keys
        self._clock = clock

    def client_ip(self, request: web.Request) -> str | None:
        return client_ip(request, self._identity.trusted_proxies)

    def identify(self, request: web.Request) -> Principal | None:
        if self._identity.source == "trusted_header":
            return self._from_header(request)
        return self._from_bearer(request) or self._from_cookie(request)

    def require(self, request: web.Request) -> Principal:
        principal = self.identify(request)
        if principal is None:
            raise Unauthenticated()
        return principal

    def _from_header(self, request: web.Request) -> Principal | None:
        if not is_trusted(request.remote, self._identity.trusted_proxies):
            return None
        raw = request.headers.get(self._identity.header)
        if not raw:
            return None
        user_id = canonical_user(raw)
        binding = binding_of("header:" + user_id)
        email = request.headers.get(self._identity.email_header) if self._identity.email_header else None
        session = self._cookie_session(request)
        if session is not None and (session.user_id != user_id or session.binding != binding):
            session = None
        return Principal(
            user_id=user_id,
            source="trusted_header",
            auth_time=session.auth_time if session else None,
            methods=session.methods if session else ("hdr",),
            binding=binding,
            session=session,
            email=email,
        )

    def _from_cookie(self, request: web.Request) -> Principal | None:
        session = self._cookie_session(request)
        if session is None:
            return None
        return Principal(
            user_id=session.user_id,
            source="session",
            auth_time=session.auth_time,
            methods=session.methods,
            binding=session.binding,
            session=session,
        )

    def _from_bearer(self, request: web.Request) -> Principal | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        claims = self._signing_keys().verify(
            token.strip(), now=self._clock(), issuer=self._session.jwt_issuer, audience=self._session.jwt_audience
        )
        return Principal(
            user_id=canonical_user(str(claims["sub"])),
            source="jwt",
            auth_time=float(claims["auth_time"]),
            methods=tuple(str(m) for m in claims["amr"]),
            binding="",
            email=claims.get("email"),
        )

    def _cookie_session(self, request: web.Request) -> Session | None:
        value = request.cookies.get(self._session.cookie_name)
        if not value:
            return None
        try:
            return open_sealed(value, self._session_keyring(), self._clock())
        except Unauthenticated:
            return None
