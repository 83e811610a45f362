"""The indexed matcher returns exactly the rule the plain first-match scan returns, on random policies and requests."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import ip_network

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mfa_gateway.core.errors import InvalidHost
from mfa_gateway.core.hosts import host_matches, parse_authority
from mfa_gateway.core.policy import Action, Policy, Rule
from mfa_gateway.core.policy_index import literal_prefix
from tests.unit.core.test_policy import RULES

PROPERTY = settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))


# -- the reference ------------------------------------------------------------------------------------------------


def _address(client_ip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def scan(policy: Policy, *, host: str, path: str, method: str, client_ip: str | None) -> Rule:
    """Every rule in order, each condition as ``core/policy.py`` documents it; the first whose conditions all hold.

    The host is read only when a host-scoped rule is reached, so an unreadable host raises ``InvalidHost`` exactly
    when such a rule would have had to read it.
    """
    request_method = method.upper() if method.isascii() else method
    for rule in policy.rules:
        if rule.methods and request_method not in rule.methods:
            continue
        if rule.hosts and not any(host_matches(pattern, parse_authority(host)) for pattern in rule.hosts):
            continue
        if rule.networks:
            address = _address(client_ip)
            if address is None or not any(address in network for network in rule.networks):
                continue
        if rule.path is not None and re.match(rule.path, path) is None:
            continue
        return rule
    return policy.default_rule


@dataclass(frozen=True)
class Request:
    host: str
    path: str
    method: str = "GET"
    client_ip: str | None = "192.0.2.1"


def outcome(policy: Policy, match: Callable[..., Rule], request: Request) -> str:
    """Which rule (by position) a matcher chose, ``default``, or ``invalid_host``: positions, not equality, so two
    rules written alike are told apart."""
    try:
        rule = match(host=request.host, path=request.path, method=request.method, client_ip=request.client_ip)
    except InvalidHost:
        return "invalid_host"
    if rule is policy.default_rule:
        return "default"
    return f"rule #{next(index for index, known in enumerate(policy.rules) if known is rule)}"


# -- random policies and requests ---------------------------------------------------------------------------------

LABELS = ("a", "b", "app", "x-1", "0")
DOMAINS = ("example.com", "docs.example.com", "example.org", "com", "0.1", "internal")
ADDRESSES = ("10.0.0.1", "192.0.2.7", "[2001:db8::1]", "[::ffff:a00:1]")
PATH_PIECES = (
    *("/", "/a", "/b", "/admin", "min", ".", "-", "\u00e9", "\\.", "\\-", "\\/", "\\|", "\\ "),
    *("a?", "b*", "/+", "a{0,2}", "a{2}", "a{,1}", "\\.?", "a+?", "a?+"),
    *("(/|$)", "(?:a|b)", "[ab]", "[|)(]", "[]a]", "[^/]", "$", ".*", "\\d", "\\w+", "\\Z", "\\b", "\\x2f"),
    *("(?=a)", "(?!b)", "(?<=/)", "(?<!a)", "(?P<g>a)", "(?P=g)", "(a)\\1", "(?>a)", "(?i:A)", "(?#x|y)", "(?#()|^/z"),
    *("|", "|^/b", "(?(1)a|b)", "\\A", "^"),
)
PATH_HEADS = ("/a", "/b", "/admin", "/api", "/api/v1", "/x", "/x-1", "/\u00e9", "/a.b", "/", "admin", "min")
PATH_STARTS = (*("",) * 4, *("^",) * 4, "\\A", "(?i)", "(?x)", "(?m)^", "(?s)")  # flags only at the start
NETWORKS = tuple(
    ip_network(n)
    for n in ("10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/24", "0.0.0.0/0", "2001:db8::/32", "::/0", "::ffff:a00:0/104")
)
METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "PROPFIND")
REQUEST_METHODS = (*METHODS, "get", "Post", "pUT", "BREW", "P\u00d6ST", "")
CLIENT_IPS = (None, "", "10.1.2.3", "::ffff:10.1.2.3", "192.0.2.9", "2001:db8::5", "fe80::1%eth0", "not-an-ip")
PATHS = ("/", "/admin", "/admin/x", "/administrator", "/a.b", "/api/v1/x", "/z", "")
MALFORMED_HOSTS = ("", "a..example.com", "evil@app.example.com", "app.example.com:0", "app.example.com:x", "010.0.0.1")


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _chance(draw: st.DrawFn, percent: int) -> bool:
    return draw(st.integers(1, 100)) <= percent


@st.composite
def names(draw: st.DrawFn) -> str:
    return ".".join((*draw(st.lists(st.sampled_from(LABELS), max_size=2)), draw(st.sampled_from(DOMAINS))))


cased = st.sampled_from((str.lower, str.upper, str.title))


@st.composite
def host_patterns(draw: st.DrawFn) -> str:
    """Exact names (any case, with or without the trailing dot), wildcards and address literals."""
    kind = draw(st.sampled_from(("exact", "exact", "wildcard", "address")))
    if kind == "exact":
        return draw(cased)(draw(names())) + draw(st.sampled_from(("", "", ".")))
    if kind == "wildcard":
        return draw(cased)("*." + draw(st.sampled_from(DOMAINS)))
    return draw(st.sampled_from(ADDRESSES))


@st.composite
def path_patterns(draw: st.DrawFn) -> str:
    """Mostly a literal head and a few regex constructs after it, sometimes flags first; always compiles."""
    start = draw(st.sampled_from(PATH_STARTS))
    heads = draw(st.lists(st.sampled_from(PATH_HEADS), min_size=1, max_size=2)) if _chance(draw, 80) else []
    pattern = start + "".join(heads) + "".join(draw(st.lists(st.sampled_from(PATH_PIECES), max_size=3)))
    return pattern if _compiles(pattern) else start + "".join(heads)


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    """A rule with a host or a path condition, most often both (a rule with neither ends most scans early)."""
    action = draw(st.sampled_from(Action))
    scoped = draw(st.booleans())
    methods, networks = frozenset(), ()
    if _chance(draw, 30):
        methods = draw(st.frozensets(st.sampled_from(METHODS), min_size=1, max_size=3))
    if _chance(draw, 25):
        networks = tuple(draw(st.lists(st.sampled_from(NETWORKS), min_size=1, max_size=2)))
    return Rule(
        name="drawn",
        action=action,
        hosts=tuple(draw(st.lists(host_patterns(), min_size=1, max_size=3))) if scoped else (),
        path=draw(path_patterns()) if not scoped or draw(st.booleans()) else None,
        methods=methods,
        networks=networks,
        max_age=60.0 if action is Action.MFA and draw(st.booleans()) else None,
    )


@st.composite
def requests_for(draw: st.DrawFn, policy_rules: list[Rule]) -> Request:
    """A request, mostly aimed at one of the rules (its host, a path its regex finds, its method, an address in its
    network) so that late rules match too, sometimes at none; hosts in every case and spelling, some malformed."""
    aimed = draw(st.sampled_from(policy_rules)) if policy_rules and draw(st.integers(0, 3)) else None
    if aimed is not None and aimed.hosts and draw(st.integers(0, 3)):
        host = draw(st.sampled_from(aimed.hosts)).replace("*", draw(st.sampled_from(LABELS)))
    else:
        host = draw(st.one_of(names(), st.sampled_from(ADDRESSES), st.sampled_from(MALFORMED_HOSTS)))
    host = draw(cased)(host) + draw(st.sampled_from(("", "", "", ".", ":8443", ":65536")))
    if aimed is not None and aimed.path is not None and draw(st.integers(0, 3)):
        path = draw(st.from_regex(aimed.path))
    else:
        path = draw(st.sampled_from(PATHS) | st.text("/abdmin.-|A\u00e9", max_size=12))
    method = draw(st.sampled_from(REQUEST_METHODS))
    if aimed is not None and aimed.methods and draw(st.integers(0, 3)):
        method = draw(st.sampled_from(sorted(aimed.methods)).map(draw(cased)))
    client_ip = draw(st.sampled_from(CLIENT_IPS))
    if aimed is not None and aimed.networks and draw(st.integers(0, 3)):
        client_ip = str(draw(st.sampled_from(aimed.networks))[1])
    return Request(host, path, method, client_ip)


EDGE_REQUESTS = [
    *(Request("app.example.com", path) for path in ("/healthz", "/healthz/x", "/admin", "/admin/users", "/x")),
    *(Request("app.example.com", path) for path in ("/administrator", "/public/x", "//admin", "/ADMIN")),
    Request("app.example.com", "/healthz", "HEAD"),
    Request("app.example.com", "/healthz", "POST"),
    Request("app.example.com", "/public/x", "POST"),
    *(Request("app.example.com", "/x", method) for method in ("post", "Patch", "DELETE", "OPTIONS")),
    *(Request(host, "/x") for host in ("docs.example.com", "DOCS.Example.COM", "a.b.docs.example.com:8443")),
    *(Request(host, "/x") for host in ("docs.example.com.", "xdocs.example.com", "docs.example.com.evil.com")),
    *(Request(host, "/x") for host in ("docs.example.com:x", "evil@docs.example.com", "\u212a.docs.example.com")),
    *(Request(host, "/x") for host in ("", ".docs.example.com", "example.com", "docs.example.co")),
    *(Request("internal.example.com", "/x", "GET", ip) for ip in ("10.1.2.3", "::ffff:10.1.2.3", "11.1.2.3")),
    *(Request("internal.example.com", "/x", "GET", ip) for ip in ("2001:db8:bad::1", "2001:db8:bae::1", None, "")),
    *(Request("internal.example.com", "/x", "GET", ip) for ip in ("not-an-ip", "10.1.2.3/8")),
    Request("evil@internal.example.com", "/healthz"),  # the rule before the first host-scoped one decides
    Request("evil@internal.example.com", "/healthz", "POST"),  # that rule's method does not match: refused
]


@st.composite
def policies_and_requests(draw: st.DrawFn) -> tuple[list[Rule], list[Request]]:
    size = draw(st.sampled_from(range(33)))  # uniform: large buckets and late matches are common
    drawn = [replace(draw(rules()), name=f"r{index}") for index in range(size)]
    return drawn, draw(st.lists(requests_for(drawn), min_size=1, max_size=12))


@PROPERTY
@given(case=policies_and_requests(), default=st.sampled_from(Action))
@example(case=(RULES, EDGE_REQUESTS), default=Action.IDENTITY)
def test_indexed_matcher_agrees_with_the_plain_scan(case: tuple[list[Rule], list[Request]], default: Action) -> None:
    """On every policy and request the indexed ``Policy.match`` returns the rule (by position), the default or the
    ``InvalidHost`` refusal that trying every rule in order returns; ``EDGE_REQUESTS`` are the cases of
    ``test_policy.py``, on its policy."""
    policy_rules, requests = case
    policy = Policy(policy_rules, default)
    reference = functools.partial(scan, policy)
    for request in requests:
        assert outcome(policy, policy.match, request) == outcome(policy, reference, request), request


BUCKETS = [
    Rule("health", Action.BYPASS, path="^/healthz$"),
    Rule("api-writes", Action.MFA, hosts=("api.example.com",), methods=frozenset({"POST"})),
    Rule("public", Action.BYPASS, path="^/public"),
    Rule("wide", Action.IDENTITY, hosts=("*.example.com",)),
    Rule("late", Action.DENY, path="^/late"),
    Rule("narrow", Action.DENY, hosts=("*.docs.example.com",)),
    Rule("exact", Action.DENY, hosts=("a.docs.example.com",)),
    Rule("api-reads", Action.BYPASS, hosts=("api.example.com",), methods=frozenset({"GET"})),
]


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (Request("a.docs.example.com", "/x"), "wide"),  # the rule of the shorter suffix comes first
        (Request("b.docs.example.com", "/x"), "wide"),
        (Request("docs.example.com", "/x"), "wide"),
        (Request("api.example.com", "/x", "POST"), "api-writes"),
        (Request("api.example.com", "/x", "GET"), "wide"),
        (Request("example.com", "/late"), "late"),
        (Request("evil@x", "/healthz", "POST"), "health"),  # decided before any rule reads the host
        (Request("evil@x", "/public", "GET"), "public"),  # a GET passes the POST-only host rule by
        (Request("evil@x", "/public", "POST"), "invalid_host"),  # a POST must read the host there
        (Request("evil@x", "/late", "GET"), "invalid_host"),  # "wide" reads it for every method
        (Request("evil@x", "/x", "GET"), "invalid_host"),
    ],
)
def test_buckets_merge_in_rule_order_and_an_unreadable_host_is_refused_where_the_scan_reads_it(
    request_: Request, expected: str
) -> None:
    """Every bucket a host falls in (exact, each matching suffix, no host) is tried, and the lowest rule wins; an
    unreadable host is decided by the rules before the first host-scoped rule the method reaches, else refused."""
    policy = Policy(BUCKETS)
    reference = functools.partial(scan, policy)
    found = outcome(policy, policy.match, request_)
    assert found == outcome(policy, reference, request_)
    assert found == (
        "invalid_host" if expected == "invalid_host" else f"rule #{[r.name for r in BUCKETS].index(expected)}"
    )


def test_a_host_rule_the_method_never_reaches_leaves_an_unreadable_host_unread() -> None:
    """With only a POST rule reading the host, a GET with an unreadable host falls to the default as the scan does."""
    policy = Policy([Rule("writes", Action.DENY, hosts=("a.example.com",), methods=frozenset({"POST"}))])
    assert policy.match(host="evil@x", path="/", method="GET", client_ip=None) is policy.default_rule
    with pytest.raises(InvalidHost):
        policy.match(host="evil@x", path="/", method="post", client_ip=None)


# -- the literal prefix ---------------------------------------------------------------------------------------------

TRICKY_PATTERNS = [
    ("^/admin(/|$)", "/admin"),
    ("/admin", "/admin"),
    ("\\A/a", "/a"),
    ("^^/a", "/a"),
    ("^/a\\.b\\-c\\/d", "/a.b-c/d"),
    ("^/caf\u00e9", "/caf\u00e9"),
    ("^/a b", "/a b"),
    ("^/ab?", "/a"),
    ("^/ab*", "/a"),
    ("^/ab+", "/ab"),
    ("^/ab{0,2}", "/a"),
    ("^/ab{2}", "/a"),
    ("^/a\\.?", "/a"),
    ("^/ab??", "/a"),
    ("^/a\\d", "/a"),
    ("^/a\\w+", "/a"),
    ("^/a\\x2f", "/a"),
    ("^/a\\b", "/a"),
    ("^/a\\Z", "/a"),
    ("^/a\\1", "/a"),  # not a valid pattern alone, but a back-reference is never a literal
    ("^/a.", "/a"),
    ("^/a$", "/a"),
    ("^/a(?=b)", "/a"),
    ("^/a(?i:B)", "/a"),
    ("^/a[b]", "/a"),
    ("^/a|^/b", ""),
    ("^/a(b|c)|^/d", ""),
    ("^/a[|]", "/a"),
    ("^/a\\|b", "/a|b"),
    ("^/a[](]|^/b[])]", ""),  # a ']' first in a class is a literal, so each class holds a parenthesis
    ("^/a[^](]|^/b[^])]", ""),
    ("^/a(?#()|^/b", ""),  # a comment: its '(' opens nothing
    ("^/a(?#()|^/b(?#\\))", ""),
    ("^/a(?#x|y)b", "/a"),
    ("^/a(?x:#(\n)|^/b(?x:#)\n)", ""),  # verbose comments hide parentheses
    ("^/a(?x: b)", ""),
    ("^/a(?-x:b)", "/a"),
    ("(?i)^/admin", ""),
    ("(?x)^/ad min", ""),
    ("(?m)^/a", ""),
    ("^/a(b)?(?(1)c|d)", "/a"),
    ("[/]admin", ""),
    (".*/admin", ""),
    ("", ""),
]


@pytest.mark.parametrize(("pattern", "prefix"), TRICKY_PATTERNS)
def test_literal_prefix_reads_only_what_every_match_starts_with(pattern: str, prefix: str) -> None:
    """The prefix stops at the first regex construct, drops a literal a quantifier makes optional, and is empty
    when an alternative, an inline flag or a comment could let a match start otherwise."""
    assert literal_prefix(pattern) == prefix


@PROPERTY
@given(pattern=path_patterns() | st.sampled_from([p for p, _ in TRICKY_PATTERNS if _compiles(p)]), data=st.data())
def test_every_match_starts_with_the_literal_prefix(pattern: str, data: st.DataObject) -> None:
    """Soundness of the path index: any path the pattern matches (``re.match``) starts with its literal prefix."""
    prefix = literal_prefix(pattern)
    for path in data.draw(st.lists(st.from_regex(pattern) | st.text("/abdmin.-|A", max_size=8), max_size=8)):
        if re.match(pattern, path):
            assert path.startswith(prefix), (pattern, prefix, path)
