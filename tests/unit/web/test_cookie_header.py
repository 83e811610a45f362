"""The Cookie header is parsed once per distinct header per process: what is remembered answers exactly as a
fresh parse would, and an ambiguous header is refused every time it is read."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from mfa_gateway.web.cookie_header import PARSED_CACHE_LENGTH, AmbiguousCookies, cookie_header, request_cookie


def _request(*cookies: str) -> web.Request:
    return make_mocked_request("GET", "/", headers=CIMultiDict(("Cookie", value) for value in cookies))


def test_each_header_reads_as_its_own_values_however_often_it_is_seen() -> None:
    """Two users' headers, read in turn on new requests, each give their own session cookie (and the app's
    cookies pass unchanged); a header with no such cookie gives none."""
    headers = {"s=alice; app=1": "alice", "s=bob; app=2": "bob", "app=3": None}
    for _ in range(3):
        for raw, expected in headers.items():
            request = _request(raw)
            assert request_cookie(request, "s") == expected
            assert cookie_header(request).without({"s"}) == raw.split("; ")[-1]


@pytest.mark.parametrize("raw", ["s=a; s=b", 's=a; x="s=b"', "s=a;s=a"])
def test_an_ambiguous_header_is_refused_every_time(raw: str) -> None:
    """A decisive cookie that appears twice, or whose name appears elsewhere in the header, is refused on every
    request that sends that header: the refusal is not remembered as an answer."""
    for _ in range(3):
        with pytest.raises(AmbiguousCookies):
            request_cookie(_request(raw), "s")
        assert request_cookie(_request(raw), "other") is None


def test_two_cookie_headers_are_refused_even_when_each_was_seen_alone() -> None:
    """A request with two Cookie headers is refused, though each header alone was read (and remembered) before."""
    assert request_cookie(_request("s=alice"), "s") == "alice"
    assert request_cookie(_request("app=1"), "s") is None
    with pytest.raises(AmbiguousCookies):
        cookie_header(_request("s=alice", "app=1"))


def test_a_long_header_is_read_as_any_other() -> None:
    """A header longer than what is remembered is parsed each time, with the same result."""
    raw = "s=carol; pad=" + "x" * PARSED_CACHE_LENGTH
    for _ in range(2):
        assert request_cookie(_request(raw), "s") == "carol"
