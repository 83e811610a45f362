"""Identity headers, repeated: a trusted proxy's identity header sent twice is refused (400), and only one copy of
each identity header the gateway sets ever reaches the app, in proxy and forward-auth mode."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.proxy.conftest import RawResponse, Stack, StackFactory
from tests.integration.proxy.test_forward_auth import HEADERS, forward_stack, nginx

IDENTITY: dict[str, Any] = {
    "source": "trusted_header",
    "header": "X-Forwarded-User",
    "email_header": "X-Forwarded-Email",
    "groups_header": "X-Forwarded-Groups",
    "upstream_login": None,
}
TRUSTED_HEADER: dict[str, Any] = {
    "trusted_proxies": ["127.0.0.1/32"],
    "identity": IDENTITY,
    "policy": {"default": "identity", "rules": [{"path": "^/public$", "action": "bypass"}]},
}
REPEATED = [
    [("X-Forwarded-User", "alice"), ("X-Forwarded-User", "admin")],
    [("X-Forwarded-User", "alice"), ("x-forwarded-user", "admin")],
    [("X-Forwarded-User", "alice"), ("X-Forwarded-Email", "a@example.test"), ("X-FORWARDED-EMAIL", "b@example.test")],
    [("X-Forwarded-User", "alice"), ("X-Forwarded-Groups", "staff"), ("x-forwarded-groups", "admins")],
]
CLIENT_COPIES = [
    ("Remote-User", "root"),
    ("remote-user", "admin"),
    ("REMOTE-USER", "x"),
    ("X-Auth-User", "root"),
    ("x-auth-request-user", "root"),
    ("Remote-Email", "root@evil.test"),
    ("remote-email", "admin@evil.test"),
    ("Remote-Groups", "admins"),
    ("REMOTE-GROUPS", "root"),
]


def refused_as_repeated(response: RawResponse) -> bool:
    return response.status == 400 and json.loads(response.body)["code"] == "duplicate_identity_header"


async def test_a_repeated_identity_header_from_a_trusted_proxy_is_refused_in_proxy_mode(
    make_stack: StackFactory,
) -> None:
    """Sent twice (same or another case), the user, email or groups header is a 400 before policy, on a bypass
    route too: the gateway would read one copy and the app might read the other."""
    stack = await make_stack(TRUSTED_HEADER)
    for path in ("/api/whoami", "/public"):
        for sent in REPEATED:
            response = await stack.raw("GET", path, sent)
            assert refused_as_repeated(response), (path, sent, response.status, response.body[:200])
            assert b"identityHeaders" not in response.body and b"Public page" not in response.body


async def test_the_app_receives_exactly_one_copy_of_each_identity_header(make_stack: StackFactory) -> None:
    """Every client copy of Remote-User & co., in any case, is stripped; the app sees the gateway's one value."""
    stack = await make_stack(TRUSTED_HEADER)
    sent = [("X-Forwarded-User", "alice"), ("X-Forwarded-Email", "alice@example.test"), *CLIENT_COPIES]
    response = await stack.raw("GET", "/api/whoami", sent)
    seen = json.loads(response.body)["identityHeaders"]
    for name in ("remote-user", "x-auth-user", "x-auth-request-user"):
        assert seen[name] == "alice", seen  # the demo app joins repeated headers with ", "
    assert seen["remote-email"] == "alice@example.test" and "remote-groups" not in seen, seen


async def trusted_header_forward_stack(make_stack: StackFactory) -> Stack:
    return await forward_stack(make_stack, identity=IDENTITY, policy={"default": "identity", "rules": []})


async def test_a_repeated_identity_header_from_a_trusted_proxy_is_refused_in_forward_auth(
    make_stack: StackFactory,
) -> None:
    """Forward-auth reads the same headers from the same trusted proxies: sent twice, they are a 400, never a 2xx."""
    stack = await trusted_header_forward_stack(make_stack)
    for sent in REPEATED:
        response = await stack.raw("GET", "/_mfa/auth", [*nginx("https://app.example.test/x").items(), *sent])
        assert refused_as_repeated(response), (sent, response.status, response.body[:200])


async def test_a_forward_auth_answer_carries_exactly_one_of_each_identity_header(make_stack: StackFactory) -> None:
    """The 2xx names every configured identity header exactly once, whatever copies the request carried, so the
    proxy that copies them onto the app's request has one value to copy."""
    stack = await trusted_header_forward_stack(make_stack)
    sent = [*nginx("https://app.example.test/x").items(), ("X-Forwarded-User", "alice"), *CLIENT_COPIES]
    response = await stack.raw("GET", "/_mfa/auth", sent)
    assert response.status == 200
    counts = {name: [k.lower() for k, _ in response.headers].count(name.lower()) for name in HEADERS}
    assert counts == dict.fromkeys(HEADERS, 1)
    assert response.header("Remote-User") == "alice" and response.header("Remote-Email") == ""
