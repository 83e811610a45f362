"""Access policy: first match wins, every condition must hold, bad rules are refused when the policy is built."""

from __future__ import annotations

from ipaddress import ip_network
from urllib.parse import urlsplit

import pytest

from mfa_gateway.core.errors import InvalidHost
from mfa_gateway.core.hosts import host_matches, normalise_host, parse_host_pattern
from mfa_gateway.core.paths import normalise_path
from mfa_gateway.core.policy import Action, Policy, PolicyError, Rule

RULES = [
    Rule("health", Action.BYPASS, path=r"^/healthz$", methods=frozenset({"GET", "HEAD"})),
    Rule("internal", Action.BYPASS, hosts=("internal.example.com",), networks=(ip_network("10.0.0.0/8"),)),
    Rule("blocked-v6", Action.DENY, networks=(ip_network("2001:db8:bad::/48"),)),
    Rule("admin", Action.MFA, path=r"^/admin(/|$)", max_age=300.0),
    Rule("public", Action.BYPASS, path=r"^/public(/|$)"),
    Rule("docs", Action.IDENTITY, hosts=("*.docs.example.com", "docs.example.com")),
    Rule("writes", Action.MFA, methods=frozenset({"POST", "PUT", "DELETE", "PATCH"})),
]
POLICY = Policy(RULES, default=Action.IDENTITY)


def _match(
    path: str = "/", *, host: str = "app.example.com", method: str = "GET", client_ip: str | None = "192.0.2.1"
) -> str:
    return POLICY.match(host=host, path=path, method=method, client_ip=client_ip).name


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"path": "/healthz"}, "health"),
        ({"path": "/healthz", "method": "HEAD"}, "health"),
        ({"path": "/healthz", "method": "POST"}, "writes"),
        ({"path": "/healthz/x"}, "default"),
        ({"path": "/admin"}, "admin"),
        ({"path": "/admin/users"}, "admin"),
        ({"path": "/administrator"}, "default"),
        ({"path": "/public/x"}, "public"),
        ({"path": "/public/x", "method": "POST"}, "public"),  # the earlier bypass rule wins over "writes"
        ({"path": "/admin", "method": "POST"}, "admin"),
        ({"path": "/x", "method": "DELETE"}, "writes"),
        ({"path": "/x"}, "default"),
    ],
)
def test_first_matching_rule_wins(kwargs: dict[str, str], expected: str) -> None:
    """Rules are tried in order; the first whose every condition holds decides, else the default rule."""
    assert _match(**kwargs) == expected


def test_default_rule_carries_the_default_action() -> None:
    """With no match the policy returns a rule named 'default' with the configured action (mfa unless set)."""
    assert POLICY.match(host="a", path="/x", method="GET", client_ip=None) == Rule("default", Action.IDENTITY)
    assert Policy([]).match(host="a", path="/", method="GET", client_ip=None) == Rule("default", Action.MFA)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("docs.example.com", "docs"),
        ("DOCS.Example.COM", "docs"),
        ("a.docs.example.com", "docs"),
        ("a.b.docs.example.com:8443", "docs"),
        ("docs.example.com.", "docs"),
        ("docs.example.com:443", "docs"),
        ("xdocs.example.com", "default"),
        ("docs.example.com.evil.com", "default"),
        ("docs.example.co", "default"),
    ],
)
def test_host_patterns_exact_and_wildcard_ignore_case_and_port(host: str, expected: str) -> None:
    """Hosts compare case-insensitively, without the port and one trailing dot."""
    assert _match("/x", host=host) == expected


@pytest.mark.parametrize(
    "host",
    [
        "docs.example.com:x",
        "evil@docs.example.com",
        "docs.example.com/x",
        "\u212a.docs.example.com",  # KELVIN SIGN: never lower-cased into an ASCII 'k'
        "",
        ".docs.example.com",
    ],
)
def test_a_malformed_host_raises_rather_than_falling_through_to_the_default(host: str) -> None:
    """A host-scoped rule never treats an unreadable host as "no host" (which would reach the default rule)."""
    with pytest.raises(InvalidHost):
        _match("/x", host=host)


def test_wildcard_does_not_match_the_bare_parent_domain() -> None:
    """*.example.com matches one or more labels below example.com, never example.com itself."""
    policy = Policy([Rule("w", Action.DENY, hosts=("*.example.com",))], default=Action.BYPASS)
    assert policy.match(host="example.com", path="/", method="GET", client_ip=None).action is Action.BYPASS
    assert policy.match(host="a.example.com", path="/", method="GET", client_ip=None).action is Action.DENY
    assert policy.match(host="a.b.example.com:1", path="/", method="GET", client_ip=None).action is Action.DENY


@pytest.mark.parametrize(
    ("method", "expected"),
    [("POST", "writes"), ("post", "writes"), ("Patch", "writes"), ("GET", "default"), ("OPTIONS", "default")],
)
def test_method_filter_compares_ascii_case_insensitively(method: str, expected: str) -> None:
    """A method rule matches its methods only; a lower-case 'post' is held to the POST rules."""
    assert _match("/x", method=method) == expected


@pytest.mark.parametrize(
    ("client_ip", "expected"),
    [
        ("10.1.2.3", "internal"),
        ("::ffff:10.1.2.3", "internal"),  # IPv4-mapped IPv6 counts as its IPv4 address
        ("11.1.2.3", "default"),
        ("2001:db8:bad::1", "blocked-v6"),
        ("2001:db8:bad:ffff::1", "blocked-v6"),
        ("2001:db8:bae::1", "default"),
        ("not-an-ip", "default"),
        ("10.1.2.3/8", "default"),
        ("", "default"),
        (None, "default"),
    ],
)
def test_networks_v4_and_v6_and_unparsable_client_ips(client_ip: str | None, expected: str) -> None:
    """A network rule needs a client IP inside one of its networks; a missing or bad IP never matches it."""
    assert _match("/x", host="internal.example.com", client_ip=client_ip) == expected


def test_deny_network_rule_cannot_be_dodged_with_an_unparsable_ip_falling_through_to_bypass() -> None:
    """An unparsable client IP skips network rules entirely: the next rules (here the default) decide."""
    policy = Policy([Rule("allow-office", Action.BYPASS, networks=(ip_network("192.0.2.0/24"),))])
    assert policy.match(host="h", path="/", method="GET", client_ip="192.0.2.300").action is Action.MFA


def test_query_string_never_satisfies_a_path_rule() -> None:
    """The policy sees only the path: /admin?x=/public is the path /admin, which the ^/public rule never matches."""
    policy = Policy([Rule("public", Action.BYPASS, path=r"^/public")], default=Action.MFA)
    request_target = "/admin?x=/public"
    path = normalise_path(urlsplit(request_target).path).decoded
    assert path == "/admin"
    assert policy.match(host="h", path=path, method="GET", client_ip=None).action is Action.MFA


@pytest.mark.parametrize("raw", ["/%61dmin", "//admin", "/admin/", "///admin//x"])
def test_encoded_or_slash_padded_admin_still_hits_the_admin_rule(raw: str) -> None:
    """Normalised paths reach the mfa rule on ^/admin however the client spelled them."""
    assert _match(normalise_path(raw).decoded) == "admin"


def test_case_insensitive_normalisation_feeds_lower_case_rules() -> None:
    """With case_insensitive, /ADMIN normalises to /admin and so hits the ^/admin rule."""
    assert _match(normalise_path("/ADMIN", case_insensitive=True).decoded) == "admin"
    assert _match(normalise_path("/ADMIN").decoded) == "default"


def test_max_age_is_kept_on_the_matched_rule() -> None:
    """The matched rule is returned as configured, including max_age for step-up freshness."""
    assert POLICY.match(host="h", path="/admin", method="GET", client_ip=None).max_age == 300.0


def test_the_phishing_resistant_demand_is_kept_on_the_matched_rule() -> None:
    """A rule that demands a phishing-resistant method is matched like any other and returned with the demand (the
    decision reads it after matching); the rule after it and the default demand nothing."""
    policy = Policy([Rule("admin", Action.MFA, path=r"^/admin(/|$)", phishing_resistant=True), Rule("app", Action.MFA)])
    assert policy.match(host="h", path="/admin/x", method="GET", client_ip=None).phishing_resistant is True
    assert policy.match(host="h", path="/administrator", method="GET", client_ip=None).phishing_resistant is False
    assert Policy([]).match(host="h", path="/", method="GET", client_ip=None).phishing_resistant is False


def test_string_actions_are_coerced_to_the_enum() -> None:
    """A rule built from config with action 'deny' returns Action.DENY, so identity checks (is) work."""
    policy = Policy([Rule("d", "deny")])  # type: ignore[arg-type]
    assert policy.match(host="h", path="/", method="GET", client_ip=None).action is Action.DENY


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        (Rule("bad-regex", Action.MFA, path="^/admin("), "not a valid regex"),
        (Rule("age", Action.BYPASS, max_age=60.0), "max_age only applies to 'mfa'"),
        (Rule("age", Action.IDENTITY, max_age=60.0), "max_age only applies to 'mfa'"),
        (Rule("age", Action.MFA, max_age=0.0), "more than 0"),
        (Rule("age", Action.MFA, max_age=float("nan")), "number of seconds"),
        (Rule("age", Action.MFA, max_age=True), "number of seconds"),
        (Rule("key", Action.BYPASS, phishing_resistant=True), "phishing_resistant only applies to 'mfa'"),
        (Rule("key", Action.IDENTITY, phishing_resistant=True), "phishing_resistant only applies to 'mfa'"),
        (Rule("key", Action.DENY, phishing_resistant=True), "phishing_resistant only applies to 'mfa'"),
        (Rule("key", Action.MFA, phishing_resistant="yes"), "true or false"),  # type: ignore[arg-type]
        (Rule("host", Action.MFA, hosts=("app.example.com:8443",)), "port"),
        (Rule("host", Action.MFA, hosts=("https://app.example.com",)), "without scheme"),
        (Rule("host", Action.MFA, hosts=("a.*.example.com",)), "wildcard"),
        (Rule("host", Action.MFA, hosts=("*",)), "wildcard"),
        (Rule("host", Action.MFA, hosts=("*example.com",)), "wildcard"),
        (Rule("host", Action.MFA, hosts=("bücher.example",)), "punycode"),
        (Rule("host", Action.MFA, hosts=("a..example.com",)), "not a host name"),
        (Rule("host", Action.MFA, hosts=("-a.example.com",)), "not a host name"),
        (Rule("host", Action.MFA, hosts=("",)), "non-empty"),
        (Rule("host", Action.MFA, hosts=("[::g]",)), "IPv6"),
        (Rule("host", Action.MFA, hosts="app.example.com"), "tuple"),  # type: ignore[arg-type]
        (Rule("method", Action.MFA, methods=frozenset({"FETCH"})), "not a known HTTP method"),
        (Rule("method", Action.MFA, methods=frozenset({"get"})), "upper case: 'GET'"),
        (Rule("method", Action.MFA, methods={"GET"}), "frozenset"),  # type: ignore[arg-type]
        (Rule("net", Action.MFA, networks=("10.0.0.0/8",)), "ip_network"),  # type: ignore[arg-type]
        (Rule("act", "allow"), "action 'allow' is unknown"),  # type: ignore[arg-type]
        (Rule("", Action.MFA), "non-empty name"),
    ],
)
def test_invalid_rules_raise_policy_error_naming_the_rule(rule: Rule, fragment: str) -> None:
    """A bad rule is refused at build time with a message naming its index and name and what to fix."""
    with pytest.raises(PolicyError) as caught:
        Policy([Rule("first", Action.BYPASS, path="^/ok"), rule])
    message = str(caught.value)
    assert message.startswith(f"rule #1 ({rule.name!r})") and fragment in message


def test_invalid_default_action_is_a_policy_error() -> None:
    """The default must be one of the four actions."""
    with pytest.raises(PolicyError):
        Policy([], default="allow")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("app.example.com", "app.example.com", True),
        ("APP.example.com", "app.example.com", True),
        ("app.example.com.", "app.example.com", True),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "aexample.com", False),
        ("*.example.com", "a.example.com.evil", False),
        ("[2001:DB8::1]", "[2001:db8::1]", True),
        ("10.0.0.1", "10.0.0.1", True),
        ("bad pattern", "bad pattern", False),
        ("*", "anything", False),
        ("app.example.com", "", False),
    ],
)
def test_host_matches_shared_helper(pattern: str, host: str, expected: bool) -> None:
    """host_matches (used by redirects) compares a normalised host against one pattern as a policy rule does."""
    assert host_matches(pattern, host) is expected
    try:
        policy = Policy([Rule("host", Action.DENY, hosts=(pattern,))], default=Action.BYPASS)
    except PolicyError:
        return
    if host:  # policy refuses an empty host (InvalidHost) before comparing it
        assert (policy.match(host=host, path="/", method="GET", client_ip=None).action is Action.DENY) is expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("App.Example.COM:8443", "app.example.com"),
        ("app.example.com.", "app.example.com"),
        ("app.example.com:", ""),
        ("[2001:DB8:0::1]:443", "[2001:db8::1]"),
        ("::1", ""),
        ("[::1", ""),
        ("[::1]x", ""),
        ("a:b:c", ""),
        ("app.example.com:99x", ""),
        ("user@app.example.com", ""),
        ("app example.com", ""),
        ("ünicode.example", ""),
        ("", ""),
    ],
)
def test_normalise_host(host: str, expected: str) -> None:
    """The request host loses its port and case; anything that is not a plain host name becomes '' (no match)."""
    assert normalise_host(host) == expected


def test_parse_host_pattern_canonicalises() -> None:
    """Patterns are stored lower-case, without a trailing dot, IPv6 literals in canonical form."""
    assert parse_host_pattern("*.Example.COM.") == "*.example.com"
    assert parse_host_pattern("[2001:DB8:0:0::1]") == "[2001:db8::1]"
