"""What the app receives: the client's headers that may pass (``HeaderStripper``), the cookies the gateway read minus
its own, ``X-Forwarded-*``, and the identity headers of an allowed user (``UpstreamHeaders``).
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from mfa_gateway.config import Settings
from mfa_gateway.core.decision import Allow
from mfa_gateway.web import cookies, csrf
from mfa_gateway.web.cookie_header import cookie_header
from mfa_gateway.web.identity import Peer
from mfa_gateway.web.request_ids import request_id
from mfa_gateway.web.upstream import HOP_BY_HOP

Pairs = tuple[tuple[str, str], ...]
IDENTITY_CACHE_SIZE = 4096
"""Identities whose header values are remembered, per process."""
DROPS_CACHE_SIZE = 1024
DROPS_CACHE_LENGTH = 1024
"""Lists of request header names (up to 1024 characters in all) whose dropped names are remembered, per process."""


class UpstreamHeaders:
    """The headers of a request the gateway passes on, and the identity headers it answers forward-auth with."""

    def __init__(self, settings: Settings) -> None:
        self.stripper = HeaderStripper(settings)
        upstream = settings.upstream
        self.upstream_host = upstream.url.split("://", 1)[1] if upstream.url and not upstream.preserve_host else None
        names = settings.identity_headers
        self._identity_headers = (names.user, names.email, names.groups)
        # Per identity: every identity header with its value (empty when unknown), and those with a value.
        self._identities: dict[tuple[str, str, tuple[str, ...]], tuple[Pairs, Pairs]] = {}
        self.own_cookies = frozenset(
            (
                settings.session.cookie_name,
                cookies.pending_cookie_name(settings),
                csrf.cookie_name(settings),
                cookies.device_cookie_name(settings),
            )
        )

    def identity_headers(self, allow: Allow) -> Pairs:
        """Every configured identity header with its value (empty when unknown), for the app or the ingress."""
        return self._identity_pairs(allow)[0]

    def _identity_pairs(self, allow: Allow) -> tuple[Pairs, Pairs]:
        """Every identity header with its value, and those with a value (the app receives no empty one); remembered
        per identity (a few users ask over and over)."""
        identity = (allow.user_id or "", allow.email or "", allow.groups)
        known = self._identities.get(identity)
        if known is None:
            values = (identity[0], identity[1], ",".join(allow.groups))
            pairs = zip(self._identity_headers, values, strict=True)
            every = tuple((name, value) for names, value in pairs for name in names)
            if len(self._identities) >= IDENTITY_CACHE_SIZE:
                self._identities.clear()
            known = self._identities[identity] = (every, tuple((name, value) for name, value in every if value))
        return known

    def for_upstream(self, request: web.Request, peer: Peer, allow: Allow | None) -> CIMultiDict[str]:
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
            headers.update(self._identity_pairs(allow)[1])
        return headers


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
    The sets are built once, at start-up; which names a list of header names loses is remembered per list.
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
        self._drops: dict[tuple[bool, tuple[str, ...]], tuple[str, ...]] = {}

    def kept(self, headers: CIMultiDictProxy[str], *, peer_trusted: bool) -> tuple[CIMultiDict[str], list[str]]:
        """The headers that pass, and the ``X-Forwarded-For`` values of a trusted peer (to extend, not replace)."""
        kept = CIMultiDict(headers)
        for name in self._dropped(tuple(headers), headers, peer_trusted):
            kept.popall(name)
        forwarded_for = kept.popall("X-Forwarded-For", [])
        return kept, forwarded_for if peer_trusted else []

    def _dropped(self, sent: tuple[str, ...], headers: CIMultiDictProxy[str], peer_trusted: bool) -> tuple[str, ...]:
        """The names among ``sent`` (the header names as sent, in order) that do not pass: remembered per list of
        names and trust when no ``Connection`` header names more (a client sends the same names every time)."""
        key = (peer_trusted, sent)
        known = self._drops.get(key)
        if known is not None:
            return known
        banned = self._trusted if peer_trusted else self._untrusted
        names = [name.lower() for name in sent]
        connection = "connection" in names
        if connection:
            banned = banned | {t.strip().lower() for v in headers.getall("Connection") for t in v.split(",")}
        dropped = {name for name in names if name in banned}
        dropped.update(name for name in names if "_" in name)  # CGI/WSGI read X_Forwarded_For as X-Forwarded-For
        known = tuple(sorted(dropped))
        if not connection and sum(map(len, sent)) <= DROPS_CACHE_LENGTH:
            if len(self._drops) >= DROPS_CACHE_SIZE:
                self._drops.clear()
            self._drops[key] = known
        return known
