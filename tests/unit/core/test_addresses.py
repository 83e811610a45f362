"""Client addresses behind trusted proxies: the address forms proxies write, trust, and the nearest untrusted hop."""

from __future__ import annotations

import ipaddress

import pytest

from mfa_gateway.core.addresses import client_address, forwarded_hops, is_trusted, parse_address

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("192.0.2.7:5678", "192.0.2.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:5678", "2001:db8::1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("[::ffff:192.0.2.7]:443", "192.0.2.7"),
    ],
)
def test_addresses_are_read_in_every_form_proxies_write(text: str, address: str) -> None:
    """A port is dropped, brackets removed, and an IPv4-mapped IPv6 address read as its IPv4 address."""
    assert str(parse_address(text)) == address


@pytest.mark.parametrize("text", ["", "unknown", "_hidden", "192.0.2", "192.0.2.7:x:y", "[nope]:80", "999.0.0.1"])
def test_what_is_no_address_parses_as_none(text: str) -> None:
    """Obfuscated identifiers, truncated or out-of-range addresses are no address (None), never a guess."""
    assert parse_address(text) is None


def test_trust_needs_an_address_inside_a_trusted_network() -> None:
    """Only an address that parses and lies in a trusted network is trusted; an IPv4-mapped peer counts as IPv4."""
    assert is_trusted("10.1.2.3", PROXIES)
    assert is_trusted("::ffff:10.1.2.3", PROXIES)
    assert is_trusted("[fd00::5]:80", PROXIES)
    assert not is_trusted("192.0.2.7", PROXIES)
    assert not is_trusted("not-an-address", PROXIES)
    assert not is_trusted(None, PROXIES)
    assert not is_trusted("10.1.2.3", ())


def test_forwarded_hops_join_every_header_in_order() -> None:
    """Repeated X-Forwarded-For headers are one list, nearest hop last; blanks and spaces are dropped."""
    assert forwarded_hops(["198.51.100.1, 203.0.113.9", " ,10.0.0.2 "]) == ["198.51.100.1", "203.0.113.9", "10.0.0.2"]
    assert forwarded_hops([]) == []


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    """From a peer that is no trusted proxy, X-Forwarded-For is ignored: the client cannot choose its address."""
    assert client_address("192.0.2.7", ["198.51.100.1"], PROXIES) == "192.0.2.7"
    assert client_address("10.0.0.1", ["198.51.100.1"], PROXIES, peer_trusted=False) == "10.0.0.1"


def test_behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() -> None:
    """Hops added by trusted proxies are walked from the nearest; hops further left (client-chosen) are ignored."""
    forwarded = ["1.1.1.1, 198.51.100.1, 10.0.0.9"]  # 1.1.1.1 was prepended by the client itself
    assert client_address("10.0.0.1", forwarded, PROXIES) == "198.51.100.1"
    assert client_address("10.0.0.1", ["198.51.100.1:4711"], PROXIES) == "198.51.100.1"
    assert client_address("10.0.0.1", ["::ffff:198.51.100.1"], PROXIES) == "198.51.100.1"


def test_a_nearest_hop_that_is_no_address_leaves_the_client_unknown() -> None:
    """An unparsable nearest untrusted hop is None (unknown), never the proxy's own address."""
    assert client_address("10.0.0.1", ["198.51.100.1, unknown"], PROXIES) is None


def test_with_every_hop_trusted_or_none_the_peer_is_the_client() -> None:
    """A trusted proxy that forwards no untrusted hop is itself the client."""
    assert client_address("10.0.0.1", [], PROXIES) == "10.0.0.1"
    assert client_address("10.0.0.1", ["10.0.0.7, 10.0.0.8"], PROXIES) == "10.0.0.1"
