"""Host names and host patterns, shared by the access policy and the redirect check.

A *pattern* is either an exact host (``app.example.com``, ``10.0.0.5``, ``[2001:db8::1]``) or a leading wildcard
label (``*.example.com``), which matches one or more labels below ``example.com`` but not ``example.com`` itself.
Patterns are ASCII (write internationalised names in their ``xn--`` form), carry no scheme, port or path, and are
compared case-insensitively; one trailing dot is ignored on both sides (``app.example.com.`` is the same DNS name).

A request *host* (``Host``, a trusted ``X-Forwarded-Host``, a forward-auth target's authority) is read once with
:func:`parse_authority`: it must be a plain ``host[:port]``, a DNS name or an IP literal (IPv6 in brackets) and at
most one port of digits in 1-65535. The port is dropped, ASCII letters are lower-cased, one trailing dot is dropped
(``example.com.`` is ``example.com``, so a rule for one covers the other), an IPv6 literal is put in its canonical
form. Anything else raises :class:`~mfa_gateway.core.errors.InvalidHost`: userinfo, a second ``:``, an empty or
out-of-range port, empty labels, spaces, percent-escapes, control bytes, non-ASCII (``str.lower`` maps the Kelvin
sign to ``k``), and a name that ends in a numeric label without being a canonical IPv4 address (``010.0.0.1``,
``0x7f.1``, ``2130706433``: browsers and resolvers read those as addresses, policy would read them as names).
:func:`normalise_host` is the same reading for callers that only compare (redirects): ``""`` matches nothing.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mfa_gateway.core.errors import InvalidHost

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_AUTHORITY_CHARS = re.compile(r"[A-Za-z0-9_.:\[\]-]+")
_PORT = re.compile(r"[0-9]{1,5}")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_MAX_HOST = 253
_MAX_AUTHORITY = _MAX_HOST + 6  # a name and ``:65535``; a bracketed IPv6 literal is shorter


class HostPatternError(ValueError):
    """A host pattern is malformed; the message says what to write instead."""


def _canonical_ipv6(bracketed: str) -> str:
    """``[2001:DB8:0::1]`` -> ``[2001:db8::1]``; ``""`` when the literal is not an IPv6 address."""
    try:
        return f"[{ipaddress.IPv6Address(bracketed[1:-1])}]"
    except ValueError:
        return ""


@functools.lru_cache(maxsize=1024)
def parse_authority(authority: str) -> str:
    """The host of a request's ``host[:port]``, normalised for matching; raises :class:`InvalidHost` otherwise.

    Remembered per value (a refusal is not): the gate reads each request's host and policy matches it again, and a
    gateway sees few distinct hosts."""
    if not authority or len(authority) > _MAX_AUTHORITY or not _AUTHORITY_CHARS.fullmatch(authority):
        raise InvalidHost()  # also: empty, spaces, control bytes, ``@``, ``%``, non-ASCII
    if authority[0] == "[":
        literal, bracket, port = authority[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise InvalidHost()
        host = _canonical_ipv6(f"[{literal}]")
        if not host:
            raise InvalidHost()
        _check_port(port)
        return host
    name, colon, port = authority.partition(":")
    _check_port(colon + port)
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if len(name) > _MAX_HOST or not _NAME.fullmatch(name):
        raise InvalidHost()  # empty labels, a leading dot, brackets, ``-`` at a label's edge
    if _NUMERIC_LABEL.fullmatch(name.rpartition(".")[2]) and not _is_canonical_ipv4(name):
        raise InvalidHost()
    return name


def _check_port(port: str) -> None:
    """``port`` is ``""``, or ``":"`` and one to five digits in 1-65535."""
    if port and not (port[0] == ":" and _PORT.fullmatch(port, 1) and 0 < int(port[1:]) <= 65535):
        raise InvalidHost()


def _is_canonical_ipv4(name: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(name)) == name
    except ValueError:
        return False


def normalise_host(host: str) -> str:
    """:func:`parse_authority` for callers that only compare: ``""`` (which no pattern matches) when it refuses."""
    try:
        return parse_authority(host)
    except InvalidHost:
        return ""


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
    """A rule's host patterns, validated and split for the policy's index (:mod:`mfa_gateway.core.policy_index`):
    the exact hosts, and the suffix (``.example.com``) of each wildcard ``*.example.com``."""

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
