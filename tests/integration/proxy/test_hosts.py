"""Hosts the gate cannot read are refused (400 ``invalid_host``) before policy, in proxy and forward-auth mode.

Every test runs a real gateway with a host-scoped ``mfa`` rule for ``app.example.test`` and a ``bypass`` default:
an unreadable host must never be judged as "no host", which would match no host rule and fall through to the
bypass. Forms aiohttp's own HTTP parser refuses (control bytes, a second ``Host``) are checked for what the client
actually receives: a 4xx, never the app's page.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.proxy.conftest import RawResponse, Stack, StackFactory
from tests.integration.proxy.test_forward_auth import forward_stack, nginx, traefik

APP_HOST = "app.example.test"
HOST_RULE: dict[str, Any] = {"default": "bypass", "rules": [{"name": "app", "hosts": [APP_HOST], "action": "mfa"}]}
PUBLIC = b"Public page"  # the demo app's /public: what a bypass shows

UNREADABLE = [
    f"user@{APP_HOST}",
    f"user:pw@{APP_HOST}",
    f"{APP_HOST}:80:80",
    f"{APP_HOST}:http",
    f"{APP_HOST}:0",
    f"{APP_HOST}:65536",
    f"{APP_HOST}:",
    "app..example.test",
    f".{APP_HOST}",
    f"{APP_HOST}..",
    "app%2eexample.test",
    "app example.test",
    f"{APP_HOST},other.example.test",
    "[::1",
    "010.0.0.1",
    "\xe9xample.test",
]
"""Host values aiohttp hands to the gateway as they are: the gateway itself must refuse each."""

PARSER_LEVEL = ["app.example.test\x01", "app.exa\x7fmple.test", "app.exa\x00mple.test"]
"""Control bytes: aiohttp's parser may refuse them first; either way the client gets a 4xx and never the app."""


def refused_as_invalid_host(response: RawResponse) -> bool:
    return response.status == 400 and json.loads(response.body) == {
        "success": False,
        "error": "The request's host is not a valid host name.",
        "code": "invalid_host",
    }


def refused_before_the_app(response: RawResponse) -> bool:
    return 400 <= response.status < 500 and PUBLIC not in response.body


async def proxy_stack(make_stack: StackFactory, *, name: str = "gw", **extra: Any) -> Stack:
    return await make_stack({"policy": HOST_RULE, **extra}, name=name)


async def test_proxy_mode_judges_a_readable_host_by_its_rule(make_stack: StackFactory) -> None:
    """The baseline the refusals are measured against: the app's host (any case, a port, one trailing dot) is
    challenged by the ``mfa`` rule; another host is bypassed to the app."""
    stack = await proxy_stack(make_stack)
    for host in (APP_HOST, "APP.Example.Test", f"{APP_HOST}:8443", f"{APP_HOST}.", f"{APP_HOST}.:443"):
        response = await stack.raw("GET", "/public", {"Accept": "application/json"}, hosts=(host,))
        assert response.status == 401 and PUBLIC not in response.body, (host, response.status)
    bypassed = await stack.raw("GET", "/public", hosts=("other.example.test",))
    assert bypassed.status == 200 and PUBLIC in bypassed.body


@pytest.mark.parametrize("host", UNREADABLE)
async def test_proxy_mode_refuses_an_unreadable_host(make_stack: StackFactory, host: str) -> None:
    """A ``Host`` that is not a plain ``host[:port]`` is a 400 ``invalid_host``, never the bypass answer."""
    stack = await proxy_stack(make_stack)
    response = await stack.raw("GET", "/public", {"Accept": "application/json"}, hosts=(host,))
    assert refused_as_invalid_host(response), (host, response.status, response.body[:200])


async def test_proxy_mode_refuses_a_missing_host_and_shows_browsers_a_page(make_stack: StackFactory) -> None:
    """No ``Host`` at all is a 400: on HTTP/1.1 aiohttp's parser refuses it; on HTTP/1.0 the gateway does (aiohttp's
    ``request.host`` would fill in this machine's name). A browser gets the refusal as the gateway's HTML page, an
    API client as JSON."""
    stack = await proxy_stack(make_stack)
    json_api = {"Accept": "application/json"}
    assert refused_before_the_app(await stack.raw("GET", "/public", json_api, hosts=()))
    assert refused_as_invalid_host(await stack.raw("GET", "/public", json_api, hosts=(), version="1.0"))
    page = await stack.raw("GET", "/public", {"Accept": "text/html"}, hosts=(f"user@{APP_HOST}",))
    assert page.status == 400 and b"<!doctype html>" in page.body and PUBLIC not in page.body
    assert f"user@{APP_HOST}".encode() not in page.body, "the refusal never echoes what was sent"


@pytest.mark.parametrize("host", PARSER_LEVEL)
async def test_proxy_mode_refuses_control_bytes_in_the_host(make_stack: StackFactory, host: str) -> None:
    """A ``Host`` with control bytes, sent byte for byte, gets a 4xx and never reaches the app."""
    stack = await proxy_stack(make_stack)
    assert refused_before_the_app(await stack.raw("GET", "/public", hosts=(host,)))


async def test_proxy_mode_refuses_two_hosts(make_stack: StackFactory) -> None:
    """Two ``Host`` lines (the app's and another) get a 4xx: the gate never picks one of them."""
    stack = await proxy_stack(make_stack)
    for hosts in ((APP_HOST, "other.example.test"), ("other.example.test", APP_HOST)):
        assert refused_before_the_app(await stack.raw("GET", "/public", hosts=hosts))


async def test_proxy_mode_refuses_a_trusted_proxys_unreadable_forwarded_host(make_stack: StackFactory) -> None:
    """A trusted proxy's ``X-Forwarded-Host`` reaches the app, so one that is not a plain ``host[:port]``, or more
    than one, is a 400; from an untrusted peer it is not believed (stripped), as before."""
    trusted = await proxy_stack(make_stack, trusted_proxies=["127.0.0.1/32"])
    for forwarded in ([("X-Forwarded-Host", f"user@{APP_HOST}")], [("X-Forwarded-Host", f"{APP_HOST}:0")]):
        response = await trusted.raw("GET", "/public", forwarded, hosts=("other.example.test",))
        assert refused_as_invalid_host(response), forwarded
    twice = [("X-Forwarded-Host", APP_HOST), ("X-Forwarded-Host", "other.example.test")]
    assert refused_as_invalid_host(await trusted.raw("GET", "/public", twice, hosts=("other.example.test",)))
    one = await trusted.raw("GET", "/public", [("X-Forwarded-Host", APP_HOST)], hosts=("other.example.test",))
    assert one.status == 200
    untrusted = await proxy_stack(make_stack, name="untrusted", trusted_proxies=["10.0.0.0/8"])
    ignored = await untrusted.raw("GET", "/public", [("X-Forwarded-Host", "a b")], hosts=("other.example.test",))
    assert ignored.status == 200 and PUBLIC in ignored.body


async def host_forward_stack(make_stack: StackFactory) -> Stack:
    return await forward_stack(make_stack, policy=HOST_RULE)


async def test_forward_auth_judges_a_readable_host_by_its_rule(make_stack: StackFactory) -> None:
    """Baseline in forward-auth mode, both dialects: the app's host in any case, with a port or one trailing dot,
    is challenged (401); another host is allowed as a bypass (200)."""
    stack = await host_forward_stack(make_stack)
    for host in (APP_HOST, "APP.Example.Test", f"{APP_HOST}:8443", f"{APP_HOST}.", f"{APP_HOST}.:443"):
        for headers in (nginx(f"https://{host}/public"), traefik("/public", **{"X-Forwarded-Host": host})):
            response = await stack.raw("GET", "/_mfa/auth", headers)
            assert response.status == 401, (host, headers, response.status)
    assert (await stack.raw("GET", "/_mfa/auth", nginx("https://other.example.test/public"))).status == 200


@pytest.mark.parametrize("host", UNREADABLE)
async def test_forward_auth_refuses_an_unreadable_host(make_stack: StackFactory, host: str) -> None:
    """The authority of ``X-Original-URL`` and Traefik's ``X-Forwarded-Host`` are read like a ``Host``: one that is
    not a plain ``host[:port]`` is a 400 ``invalid_host``, never the bypass's 200."""
    stack = await host_forward_stack(make_stack)
    headers = (nginx(f"https://{host}/public"), traefik("/public", **{"X-Forwarded-Host": host}))
    for sent in headers:
        response = await stack.raw("GET", "/_mfa/auth", sent)
        assert refused_as_invalid_host(response), (sent, response.status, response.body[:200])


async def test_forward_auth_refuses_a_missing_empty_or_repeated_target_host(make_stack: StackFactory) -> None:
    """No authority (``https:///public``), an unterminated IPv6 literal (which ``urlsplit`` raises on), no or two
    ``X-Forwarded-Host``: 400 ``invalid_host``, never a 5xx or the bypass's 200."""
    stack = await host_forward_stack(make_stack)
    cases: list[list[tuple[str, str]]] = [
        list(nginx("https:///public").items()),
        list(nginx("https://[::1/public").items()),
        [("X-Forwarded-Uri", "/public"), ("X-Forwarded-Proto", "https")],
        [("X-Forwarded-Uri", "/public"), ("X-Forwarded-Host", APP_HOST), ("X-Forwarded-Host", "other.example.test")],
        [("X-Forwarded-Uri", "/public"), ("X-Forwarded-Host", "other.example.test"), ("X-Forwarded-Host", APP_HOST)],
    ]
    for sent in cases:
        response = await stack.raw("GET", "/_mfa/auth", sent)
        assert refused_as_invalid_host(response), (sent, response.status, response.body[:200])


@pytest.mark.parametrize("host", PARSER_LEVEL)
async def test_forward_auth_refuses_control_bytes_in_the_target_host(make_stack: StackFactory, host: str) -> None:
    """Control bytes in the target's host, sent byte for byte, get a 4xx, never a 2xx."""
    stack = await host_forward_stack(make_stack)
    for sent in (nginx(f"https://{host}/public"), traefik("/public", **{"X-Forwarded-Host": host})):
        response = await stack.raw("GET", "/_mfa/auth", sent)
        assert 400 <= response.status < 500, (sent, response.status)
