"""Request hosts: a plain ``host[:port]`` is read into the name policy matches; anything else is refused."""

from __future__ import annotations

import pytest

from mfa_gateway.core.errors import BadRequest, InvalidHost
from mfa_gateway.core.hosts import normalise_host, parse_authority
from mfa_gateway.core.policy import Action, Policy, Rule


@pytest.mark.parametrize(
    ("authority", "host"),
    [
        ("app.example.com", "app.example.com"),
        ("APP.Example.COM", "app.example.com"),
        ("app.example.com:8443", "app.example.com"),
        ("app.example.com:1", "app.example.com"),
        ("app.example.com:65535", "app.example.com"),
        ("app.example.com.", "app.example.com"),
        ("app.example.com.:443", "app.example.com"),
        ("localhost", "localhost"),
        ("my_host.internal", "my_host.internal"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("10.0.0.5", "10.0.0.5"),
        ("10.0.0.5:80", "10.0.0.5"),
        ("[2001:DB8:0::1]", "[2001:db8::1]"),
        ("[2001:db8::1]:443", "[2001:db8::1]"),
        ("[::ffff:10.0.0.1]", "[::ffff:a00:1]"),
        ("a" * 63 + ".example.com", "a" * 63 + ".example.com"),
    ],
)
def test_a_plain_host_is_read_without_port_case_or_trailing_dot(authority: str, host: str) -> None:
    """A DNS name or IP literal, with at most one port in 1-65535, reads as the lower-case name without the port
    and one trailing dot (so ``example.com.`` is matched by a rule for ``example.com``)."""
    assert parse_authority(authority) == host
    assert normalise_host(authority) == host


@pytest.mark.parametrize(
    "authority",
    [
        "",
        "user@app.example.com",
        "user:pass@app.example.com",
        "app.example.com@evil.example",
        "app.example.com:80:80",
        "app.example.com:",
        "app.example.com:http",
        "app.example.com:0",
        "app.example.com:65536",
        "app.example.com:99999",
        "app.example.com:080808",
        "app.example.com:+80",
        "app.example.com: 80",
        "a..example.com",
        ".example.com",
        "example.com..",
        ".",
        "app example.com",
        " app.example.com",
        "app.example.com ",
        "app%2eexample.com",
        "app.example.com%00",
        "app.example.com\x00",
        "app.example.com\t",
        "app.exa\tmple.com",
        "app.example.com\r",
        "app.example.com\x7f",
        "app.example.com,evil.example",
        "app.example.com/x",
        "app.example.com\\x",
        "app.example.com?x",
        "app.example.com#x",
        "ünicode.example",
        "\u212a.example.com",
        "-app.example.com",
        "app-.example.com",
        "a" * 64 + ".example.com",
        ("a" * 60 + ".") * 5 + "com",
        "::1",
        "2001:db8::1",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[::1]:0",
        "[::1]:1:2",
        "[::g]",
        "[fe80::1%25eth0]",
        "[fe80::1%eth0]",
        "[v1.x]",
        "[]",
        "[10.0.0.1]",
        "010.0.0.1",
        "10.0.0.256",
        "1.2.3",
        "2130706433",
        "0x7f.0.0.1",
        "127.0.0.0x1",
        "app.example.123",
    ],
)
def test_anything_else_is_an_invalid_host(authority: str) -> None:
    """Userinfo, a second port, a non-numeric, empty or out-of-range port, empty labels, spaces, escapes, control
    bytes, non-ASCII, a bare or zoned IPv6, and a numeric last label that is no canonical IPv4 address (which
    browsers read as an address and policy would read as a name) all raise ``InvalidHost`` (code ``invalid_host``,
    a ``BadRequest``: 400); the comparing reading gives ``""``, which matches nothing."""
    with pytest.raises(InvalidHost) as caught:
        parse_authority(authority)
    assert isinstance(caught.value, BadRequest) and caught.value.code == "invalid_host"
    assert caught.value.message == "The request's host is not a valid host name.", "it never echoes the host"
    assert normalise_host(authority) == ""


def test_a_trailing_dot_cannot_step_around_a_host_rule() -> None:
    """``example.com.`` is the same DNS name as ``example.com``: a rule for one holds for the other, any case."""
    policy = Policy([Rule("app", Action.MFA, hosts=("example.com",))], default=Action.BYPASS)
    for host in ("example.com", "example.com.", "EXAMPLE.com.", "Example.Com.:443"):
        assert policy.match(host=host, path="/", method="GET", client_ip=None).action is Action.MFA, host
    wildcard = Policy([Rule("sub", Action.MFA, hosts=("*.example.com",))], default=Action.BYPASS)
    assert wildcard.match(host="A.Example.COM.", path="/", method="GET", client_ip=None).action is Action.MFA


def test_an_unreadable_host_never_reaches_the_default_rule() -> None:
    """With a host-scoped ``mfa`` rule and a ``bypass`` default, a host that does not read raises, never bypasses."""
    policy = Policy([Rule("app", Action.MFA, hosts=("example.com",))], default=Action.BYPASS)
    for host in ("example.com:0", "user@example.com", "example..com", "", "example.com:80:80"):
        with pytest.raises(InvalidHost):
            policy.match(host=host, path="/", method="GET", client_ip=None)
