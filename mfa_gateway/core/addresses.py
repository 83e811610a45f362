"""Client addresses behind trusted proxies: which peer is a trusted proxy, and which address is the client.

Pure: the web layer hands in the TCP peer and the ``X-Forwarded-For`` values it received. Behind trusted proxies
the client is the nearest hop that is not itself a trusted proxy (each proxy appends the address it saw, so hops
further left are whatever the client chose to send).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> Address | None:
    """An address as proxies write it (``1.2.3.4``, ``1.2.3.4:5678``, ``::1``, ``[::1]:5678``); an IPv4-mapped
    IPv6 address as its IPv4 address; None if it is none of these."""
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return mapped or ip


def is_trusted(address: str | None, networks: Sequence[Network]) -> bool:
    """Whether ``address`` parses and lies in one of ``networks`` (an address that does not parse is never trusted)."""
    ip = parse_address(address) if address and networks else None
    return ip is not None and any(ip in network for network in networks)


def forwarded_hops(values: Iterable[str]) -> list[str]:
    """The hops of every ``X-Forwarded-For`` header, in order (nearest last), blanks dropped."""
    return [hop.strip() for hop in ",".join(values).split(",") if hop.strip()]


def client_address(
    peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network], peer_trusted: bool | None = None
) -> str | None:
    """The client's address: the peer, or, behind trusted proxies, the nearest untrusted ``X-Forwarded-For`` hop.

    ``peer_trusted`` is the peer's trust when already judged (else it is judged here). A nearest untrusted hop that
    is no address gives None (unknown), never the proxy's own address: a ``networks`` rule for the proxies' range
    must not match every client of a proxy that writes something else. With every hop trusted (or none), the peer."""
    if not (is_trusted(peer, trusted) if peer_trusted is None else peer_trusted):
        return peer
    for hop in reversed(forwarded_hops(forwarded_for)):
        if not is_trusted(hop, trusted):
            ip = parse_address(hop)
            return str(ip) if ip is not None else None
    return peer
