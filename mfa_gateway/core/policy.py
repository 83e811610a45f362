"""Access policy: an ordered list of rules; the first rule that matches a request decides what the gateway does.

Actions: ``bypass`` (forward without authentication), ``identity`` (a signed-in user is required, no MFA),
``mfa`` (a signed-in user who passed MFA; with ``max_age`` the MFA must be at most that many seconds old: step-up
freshness; with ``phishing_resistant`` it must be a phishing-resistant method, see :mod:`mfa_gateway.core.decision`),
``deny`` (refuse). No matching rule: the policy's default action (``mfa`` unless configured). ``max_age`` and
``phishing_resistant`` say what the matched rule demands; they take no part in matching.

Every condition of a rule must hold for it to match; a condition left empty matches everything:

- ``hosts``: the request host, case-insensitive, port ignored (``app.example.com:8443``), one trailing dot ignored;
  a host that is not a plain ``host[:port]`` raises ``InvalidHost`` instead of matching nothing.
  A pattern is exact (``app.example.com``) or a leading wildcard label (``*.example.com``: one or more labels below
  ``example.com``, never ``example.com`` itself). See :mod:`mfa_gateway.core.hosts`.
- ``path``: a Python regex applied with ``re.match`` (anchored at the start only) to the *normalised decoded* path
  (:func:`mfa_gateway.core.paths.normalise_path`), never to the query string. Anchor the end yourself:
  ``^/admin(/|$)`` matches ``/admin`` and ``/admin/x`` but not ``/administrator``; ``^/admin`` matches all three.
- ``methods``: upper-case method names (``GET``, ``POST``...). The request method is upper-cased (ASCII only) before
  the comparison, so a ``post`` request is held to the ``POST`` rules that an upstream lenient about case applies.
- ``networks``: the client IP must lie in one of them (IPv4 or IPv6; an IPv4-mapped IPv6 client such as
  ``::ffff:10.0.0.1`` counts as its IPv4 address). A missing or unparsable client IP never matches such a rule.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from mfa_gateway.core.errors import InvalidHost
from mfa_gateway.core.hosts import HostPatternError, HostSet, parse_authority
from mfa_gateway.core.policy_index import RuleIndex, Run, literal_prefix

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# IANA HTTP Method Registry (RFC 9110, 5789, WebDAV and its extensions).
KNOWN_METHODS = frozenset(
    {
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY",
        "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "ACL", "REPORT", "SEARCH",
        "MKCALENDAR", "VERSION-CONTROL", "CHECKOUT", "CHECKIN", "UNCHECKOUT", "MKWORKSPACE", "UPDATE", "LABEL",
        "MERGE", "BASELINE-CONTROL", "MKACTIVITY", "ORDERPATCH", "BIND", "UNBIND", "REBIND", "MKREDIRECTREF",
        "UPDATEREDIRECTREF", "LINK", "UNLINK",
    }
)  # fmt: skip


class Action(enum.StrEnum):
    BYPASS = "bypass"
    IDENTITY = "identity"
    MFA = "mfa"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    action: Action
    hosts: tuple[str, ...] = ()
    path: str | None = None
    methods: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()
    max_age: float | None = None
    remember_device: float | None = None  # seconds a remembered device may be old here (core.devices); None: off
    phishing_resistant: bool = False


class PolicyError(ValueError):
    """A rule is invalid; the message names the rule (index and name) and what to fix."""


class _Compiled:
    """One rule prepared for the hot path; ``None`` means the condition is absent and always holds."""

    __slots__ = ("hosts", "methods", "networks_v4", "networks_v6", "path", "rule", "wants_ip")

    def __init__(self, index: int, rule: Rule) -> None:
        where = f"rule #{index} ({rule.name!r})" if isinstance(rule.name, str) else f"rule #{index}"
        if not isinstance(rule.name, str) or not rule.name.strip():
            raise PolicyError(f"{where}: give the rule a non-empty name")
        try:
            action = Action(rule.action)
        except ValueError:
            choices = ", ".join(a.value for a in Action)
            raise PolicyError(f"{where}: action {rule.action!r} is unknown; use one of {choices}") from None
        self.rule = rule if rule.action is action else replace(rule, action=action)
        self.hosts = self._hosts(where, rule.hosts)
        self.path = self._path(where, rule.path)
        self.methods = self._methods(where, rule.methods)
        networks = self._networks(where, rule.networks)
        self.networks_v4 = tuple(n for n in networks if n.version == 4)
        self.networks_v6 = tuple(n for n in networks if n.version == 6)
        self.wants_ip = bool(networks)
        self._check_max_age(where, action, rule.max_age)
        self._check_phishing_resistant(where, action, rule.phishing_resistant)

    @staticmethod
    def _hosts(where: str, hosts: object) -> HostSet | None:
        if not isinstance(hosts, tuple):
            raise PolicyError(f"{where}: hosts must be a tuple of host patterns, e.g. ('app.example.com',)")
        if not hosts:
            return None
        try:
            return HostSet.compile(hosts)
        except HostPatternError as error:
            raise PolicyError(f"{where}: {error}") from None

    @staticmethod
    def _path(where: str, path: object) -> re.Pattern[str] | None:
        if path is None:
            return None
        if not isinstance(path, str):
            raise PolicyError(f"{where}: path must be a regex string such as '^/admin(/|$)'")
        try:
            return re.compile(path)
        except re.error as error:
            raise PolicyError(f"{where}: path {path!r} is not a valid regex: {error}") from None

    @staticmethod
    def _methods(where: str, methods: object) -> frozenset[str] | None:
        if not isinstance(methods, frozenset):
            raise PolicyError(f"{where}: methods must be a frozenset of method names, e.g. frozenset({{'GET'}})")
        for method in sorted(methods, key=repr):
            if not isinstance(method, str) or method.upper() not in KNOWN_METHODS:
                raise PolicyError(f"{where}: method {method!r} is not a known HTTP method (GET, POST, PUT, ...)")
            if method != method.upper():
                raise PolicyError(f"{where}: method {method!r} must be written in upper case: {method.upper()!r}")
        return methods or None

    @staticmethod
    def _networks(where: str, networks: object) -> tuple[Network, ...]:
        if not isinstance(networks, tuple):
            raise PolicyError(f"{where}: networks must be a tuple of ipaddress networks")
        for network in networks:
            if not isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network):
                raise PolicyError(
                    f"{where}: network {network!r} is not an ipaddress network; use ip_network('10.0.0.0/8')"
                )
        return networks

    @staticmethod
    def _check_max_age(where: str, action: Action, max_age: object) -> None:
        if max_age is None:
            return
        if action is not Action.MFA:
            raise PolicyError(f"{where}: max_age only applies to 'mfa' rules (this one is {action.value!r}); drop it")
        if isinstance(max_age, bool) or not isinstance(max_age, int | float) or not math.isfinite(max_age):
            raise PolicyError(f"{where}: max_age must be a number of seconds, got {max_age!r}")
        if max_age <= 0:
            raise PolicyError(f"{where}: max_age must be more than 0 seconds, got {max_age!r}")

    @staticmethod
    def _check_phishing_resistant(where: str, action: Action, demanded: object) -> None:
        if not isinstance(demanded, bool):
            raise PolicyError(f"{where}: phishing_resistant must be true or false, got {demanded!r}")
        if demanded and action is not Action.MFA:
            raise PolicyError(
                f"{where}: phishing_resistant only applies to 'mfa' rules (this one is {action.value!r}); drop it"
            )


def _parse_ip(client_ip: str | None) -> _Address | None:
    if not client_ip:
        return None
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_UNPARSED = object()


class Policy:
    """Rules compiled once; :meth:`match` is on every request's path and does no parsing it can avoid.

    Matching costs what the request's host and path select, not the number of rules: an index
    (:mod:`mfa_gateway.core.policy_index`) hands out the rules that can match, in rule order, and only those are
    tried; the result is exactly the first rule of the list whose every condition holds.
    """

    __slots__ = ("_compiled", "_host_rule_for", "_index", "_outcomes", "_unscoped", "default", "default_rule", "rules")

    def __init__(self, rules: Sequence[Rule], default: Action = Action.MFA) -> None:
        try:
            self.default = Action(default)
        except ValueError:
            raise PolicyError(
                f"default action {default!r} is unknown; use one of bypass, identity, mfa, deny"
            ) from None
        self._compiled = tuple(_Compiled(index, rule) for index, rule in enumerate(rules))
        self.rules = tuple(compiled.rule for compiled in self._compiled)
        self.default_rule = Rule(name="default", action=self.default)
        self._outcomes = (*self.rules, self.default_rule)  # by index; len(rules) stands for "no rule matched"
        self._index = RuleIndex(
            (compiled.hosts, literal_prefix(compiled.rule.path) if compiled.rule.path is not None else "")
            for compiled in self._compiled
        )
        # When the host does not parse: the first host-scoped rule a request of each method reaches.
        unscoped = len(self._compiled)
        by_method: dict[str, int] = {}
        for index, compiled in reversed(tuple(enumerate(self._compiled))):
            if compiled.hosts is None:
                continue
            if compiled.methods is None:
                unscoped = index
                by_method.clear()  # no method gets past this rule
            else:
                by_method.update(dict.fromkeys(compiled.methods, index))
        self._unscoped = unscoped
        self._host_rule_for = by_method

    def match(self, *, host: str, path: str, method: str, client_ip: str | None) -> Rule:
        """The first rule whose every condition holds, else the default rule.

        ``path`` is the normalised decoded path (no query string); ``host`` the request's ``host[:port]`` (the web
        layer has read it already). One that does not parse raises ``InvalidHost`` when a host-scoped rule needs
        it, rather than matching no rule and falling through to the default.
        """
        request_method = method.upper() if method.isascii() else method
        index = self._index
        if not index.scoped:
            runs: list[Run] = []
            index.hostless.collect(path, runs)
            return self._outcomes[self._first(runs, len(self._compiled), path, request_method, client_ip)]
        try:
            request_host = parse_authority(host)
        except InvalidHost:
            # The rules before the first host-scoped rule this method reaches decide; if none does, that rule
            # would have had to read the host: refused.
            bound = self._host_rule_for.get(request_method, self._unscoped)
            runs = []
            index.hostless.collect(path, runs)
            found = self._first(runs, bound, path, request_method, client_ip)
            if found == bound < len(self._compiled):
                raise
            return self._outcomes[found]
        runs = index.runs(request_host, path)
        return self._outcomes[self._first(runs, len(self._compiled), path, request_method, client_ip)]

    def _first(self, runs: list[Run], bound: int, path: str, method: str, client_ip: str | None) -> int:
        """The lowest rule index below ``bound`` in ``runs`` whose conditions other than the host hold (the index
        vouched for the host), else ``bound``."""
        compiled_rules = self._compiled
        address: object = _UNPARSED
        for run in runs:
            for index in run:
                if index >= bound:
                    break
                compiled = compiled_rules[index]
                if compiled.methods is not None and method not in compiled.methods:
                    continue
                if compiled.wants_ip:
                    if address is _UNPARSED:
                        address = _parse_ip(client_ip)
                    if isinstance(address, ipaddress.IPv4Address):
                        if not any(address in network for network in compiled.networks_v4):
                            continue
                    elif isinstance(address, ipaddress.IPv6Address):
                        if not any(address in network for network in compiled.networks_v6):
                            continue
                    else:
                        continue
                if compiled.path is not None and compiled.path.match(path) is None:
                    continue
                bound = index
                break
        return bound
