"""The gateway as a WebAuthn relying party: its settings, and the rules for its origins and id.

The configuration checks origins and relying party ids here (``parse_origin``, ``rp_id_problem``), so a gateway
cannot start with an origin the browser would never sign for. Pure, and apart from the ceremonies
(``core.webauthn``): reading a configuration never loads py_webauthn.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

UserVerification = Literal["required", "preferred", "discouraged"]
ResidentKey = Literal["required", "preferred", "discouraged"]
Attestation = Literal["none", "indirect", "direct"]

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """The gateway as a WebAuthn relying party: its id (a domain), a name authenticators may show, the origins whose
    pages may run ceremonies (as browsers serialise them), and the ceremony settings."""

    rp_id: str
    name: str
    origins: tuple[str, ...]
    user_verification: UserVerification = "preferred"
    resident_key: ResidentKey = "preferred"
    attestation: Attestation = "none"
    timeout: float = 120.0
    challenge_ttl: float = 180.0
    max_credentials: int = 10

    @property
    def require_uv(self) -> bool:
        return self.user_verification == "required"


def is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def parse_origin(text: str, *, allow_http_localhost: bool) -> str:
    """The origin as a browser writes it into ``clientDataJSON`` (``https://host[:port]``, lower case, no default
    port), or ``ValueError`` saying what is wrong. Browsers run WebAuthn only in secure contexts and only for domain
    names: plain http is accepted for localhost alone, and only where ``allow_http_localhost`` (demo mode)."""
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc:
        raise ValueError("must be https://HOST or https://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError("must be an origin alone: scheme, host and port, no path, query or user")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    if _is_ip(host):
        raise ValueError("is an IP address: WebAuthn needs a domain name (localhost for a demo)")
    if not _DOMAIN.match(host):
        raise ValueError("has no valid host name (write an internationalised name in its xn-- form)")
    if scheme == "http" and not (allow_http_localhost and is_localhost(host)):
        raise ValueError("must be https:// (plain http:// only for localhost, with mode: demo)")
    shown_port = f":{port}" if port is not None and port != _DEFAULT_PORTS[scheme] else ""
    return f"{scheme}://{host}{shown_port}"


def host_of(origin: str) -> str:
    return (urlsplit(origin).hostname or "").lower()


def rp_id_problem(rp_id: str, origins: Sequence[str]) -> str | None:
    """Why ``rp_id`` cannot serve these (parsed) origins, or None. A browser signs for an origin only if the relying
    party id is the origin's host or a registrable suffix of it; a bare public suffix (``com``) never is, and the
    part of that rule this check can know without the public suffix list is that the id has a dot."""
    if rp_id != rp_id.lower() or not _DOMAIN.match(rp_id) or _is_ip(rp_id):
        return "must be a domain name in lower case, e.g. example.com (no scheme, port or IP address)"
    if "." not in rp_id and not is_localhost(rp_id):
        return f"{rp_id!r} is a top-level domain, which no browser accepts; use your own domain, e.g. example.com"
    for origin in origins:
        host = host_of(origin)
        if host != rp_id and not host.endswith("." + rp_id):
            return f"{origin} is neither {rp_id} nor a subdomain of it: browsers would refuse every ceremony there"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
