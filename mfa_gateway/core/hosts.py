"""Host names and host patterns, shared by the access policy and the redirect check.

A *pattern* is either an exact host (``app.example.com``, ``10.0.0.5``, ``[2001:db8::1]``) or a leading wildcard
label (``*.example.com``), which matches one or more labels below ``example.com`` but not ``example.com`` itself.
Patterns are ASCII (write internationalised names in their ``xn--`` form), carry no scheme, port or path, and are
compared case-insensitively; one trailing dot is ignored on both sides (``app.example.com.`` is the same DNS name).

A request *host* is normalised once with :func:`normalise_host`: the port is dropped, ASCII letters are lower-cased,
an IPv6 literal is put in its canonical form, and anything that is not a plain host name yields ``""``, which no
pattern matches. Non-ASCII hosts are never lower-cased (``str.lower`` maps the Kelvin sign to ``k``): they yield ``""``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_HOST_CHARS = re.compile(r"[a-z0-9_.-]+")
_PORT = re.compile(r"[0-9]{0,5}")
_MAX_HOST = 253


class HostPatternError(ValueError):
    """A host pattern is malformed; the message says what to write instead."""


def _canonical_ipv6(bracketed: str) -> str:
    """``[2001:DB8:0::1]`` -> ``[2001:db8::1]``; ``""`` when the literal is not an IPv6 address."""
    try:
        return f"[{ipaddress.IPv6Address(bracketed[1:-1])}]"
    except ValueError:
        return ""


def normalise_host(host: str) -> str:
    """The request host without port, lower-cased, without one trailing dot; ``""`` when it is not a host name."""
    if not host or not host.isascii() or len(host) > _MAX_HOST + 8:
        return ""
    if host[0] == "[":
        end = host.find("]")
        if end < 0 or not (end == len(host) - 1 or (host[end + 1] == ":" and _PORT.fullmatch(host, end + 2))):
            return ""
        return _canonical_ipv6(host[: end + 1])
    colon = host.find(":")
    if colon >= 0:
        if not _PORT.fullmatch(host, colon + 1):  # a second colon (bare IPv6) or a non-numeric port
            return ""
        host = host[:colon]
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    return host if _HOST_CHARS.fullmatch(host) else ""


def parse_host_pattern(pattern: str) -> str:
    """Validate a host pattern and return its canonical (lower-case) form, or raise :class:`HostPatternError`."""
    if not isinstance(pattern, str) or not pattern:
        raise HostPatternError("a host pattern must be a non-empty string such as 'app.example.com'")
    if not pattern.isascii():
        raise HostPatternError(f"host pattern {pattern!r} is not ASCII: write the name in its punycode (xn--) form")
    canonical = pattern.lower()
    if canonical.startswith("[") and canonical.endswith("]"):
        ipv6 = _canonical_ipv6(canonical)
        if not ipv6:
            raise HostPatternError(f"host pattern {pattern!r} is not a valid bracketed IPv6 address")
        return ipv6
    if "://" in canonical or "/" in canonical:
        raise HostPatternError(f"host pattern {pattern!r} must be a bare host name, without scheme or path")
    if ":" in canonical:
        raise HostPatternError(f"host pattern {pattern!r} has a port: ports are ignored when matching, drop it")
    if canonical.endswith("."):
        canonical = canonical[:-1]
    name = canonical[2:] if canonical.startswith("*.") else canonical
    if "*" in name:
        raise HostPatternError(
            f"host pattern {pattern!r}: a wildcard is only allowed as the whole first label, as in '*.example.com'"
        )
    if len(name) > _MAX_HOST or not _NAME.fullmatch(name):
        raise HostPatternError(
            f"host pattern {pattern!r} is not a host name: use letters, digits, '-' and '_' in dot-separated labels"
        )
    return canonical


def host_matches(pattern: str, host: str) -> bool:
    """Whether a *normalised* host (see :func:`normalise_host`) matches one pattern (validated or not).

    An invalid pattern never matches; ``*.example.com`` needs at least one label before ``.example.com``.
    """
    try:
        canonical = parse_host_pattern(pattern)
    except HostPatternError:
        return False
    return _matches(canonical, host)


def _matches(canonical: str, host: str) -> bool:
    if not host:
        return False
    if canonical.startswith("*."):
        suffix = canonical[1:]
        return len(host) > len(suffix) and host.endswith(suffix)
    return host == canonical


@dataclass(frozen=True, slots=True)
class HostSet:
    """Host patterns compiled for the hot path: one set lookup for exact hosts, one ``endswith`` per wildcard."""

    exact: frozenset[str]
    suffixes: tuple[str, ...]

    @classmethod
    def compile(cls, patterns: Iterable[str]) -> HostSet:
        """Raises :class:`HostPatternError` for the first malformed pattern."""
        canonical = [parse_host_pattern(pattern) for pattern in patterns]
        return cls(
            exact=frozenset(p for p in canonical if not p.startswith("*.")),
            suffixes=tuple(dict.fromkeys(p[1:] for p in canonical if p.startswith("*."))),
        )

    def matches(self, host: str) -> bool:
        """``host`` must already be normalised; ``""`` never matches."""
        if host in self.exact:
            return True
        size = len(host)
        return any(size > len(suffix) and host.endswith(suffix) for suffix in self.suffixes)
