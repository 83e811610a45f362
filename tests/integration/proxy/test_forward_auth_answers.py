"""{prefix}/auth is answered ahead of the {prefix} sub-application and its middlewares (``forward_auth.ForwardAuth``,
dispatched by the server for the exact path and routed for any other spelling): what those middlewares gave every
gateway answer, it still gives itself. Security headers on every outcome, one access event and one metric sample
under the proxy's request id, a fault as a 500 without detail; and the answers it remembers per process (identity
headers, first factors, client addresses) never cross from one user or client to another.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from mfa_gateway import logs
from mfa_gateway.core.errors import DependencyUnavailable
from mfa_gateway.core.session import Session, seal
from mfa_gateway.web.errors import API_CSP
from mfa_gateway.web.gate import Gate
from mfa_gateway.web.identity import Identifier
from tests.integration.proxy.conftest import RawResponse, Stack, StackFactory, parse_response
from tests.integration.proxy.test_forward_auth import HEADERS, forward_stack, nginx, traefik
from tests.integration.proxy.test_observability import _sample

SECURITY = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": API_CSP,
}
ADMIN = "https://app.example.test/admin"


def session_cookie(stack: Stack, user: str, email: str | None = None, groups: tuple[str, ...] = ()) -> dict[str, str]:
    """A step-up session of ``user`` sealed with the gateway's keyring, as the challenge would issue it."""
    now = stack.clock()
    session = Session.start(
        user, ("pwd", "otp"), now=now, ttl=3600, auth_time=now, mfa_time=now, email=email, groups=groups
    )
    return {stack.settings.session.cookie_name: seal(session, stack.runtime.keys.session_keyring)}


def final(response: RawResponse) -> RawResponse:
    """The final answer, after an interim ``100 Continue`` (sent for ``Expect: 100-continue``)."""
    return parse_response(response.body) if response.status == 100 else response


def security_headers(response: RawResponse) -> dict[str, str | None]:
    return {name: response.header(name) for name in SECURITY}


async def scrape(stack: Stack) -> str:
    return stack.runtime.metrics.exposition().decode()


async def test_every_answer_carries_the_security_headers(
    make_stack: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Allowed, bypassed, challenged (both dialects), refused (target, host, duplicate identity header, untrusted
    peer), failed (a fault, a dependency down): each answer of /auth has the gateway's four security headers."""
    stack = await forward_stack(make_stack)
    carol = session_cookie(stack, "carol")
    answers = {
        "allow": await stack.raw("GET", "/_mfa/auth", nginx(ADMIN), cookies=carol),
        "bypass": await stack.raw("GET", "/_mfa/auth", nginx("https://app.example.test/public")),
        "nginx challenge": await stack.raw("GET", "/_mfa/auth", nginx(ADMIN, Accept="text/html")),
        "traefik redirect": await stack.raw("GET", "/_mfa/auth", traefik("/admin", Accept="text/html")),
        "traefik 401": await stack.raw("GET", "/_mfa/auth", traefik("/admin")),
        "invalid target": await stack.raw("GET", "/_mfa/auth", nginx("not a url")),
        "invalid host": await stack.raw("GET", "/_mfa/auth", {"X-Forwarded-Uri": "/admin"}),
        "duplicate identity": await stack.raw(
            "GET", "/_mfa/auth", [*nginx(ADMIN).items(), ("X-Forwarded-User", "a"), ("X-Forwarded-User", "b")]
        ),
    }
    with monkeypatch.context() as patch:
        patch.setattr(Gate, "evaluate", lambda *args: (_ for _ in ()).throw(RuntimeError("boom")))
        answers["fault"] = await stack.raw("GET", "/_mfa/auth", nginx(ADMIN), cookies=carol)
        patch.setattr(Gate, "evaluate", lambda *args: (_ for _ in ()).throw(DependencyUnavailable("redis", "down")))
        answers["dependency"] = await stack.raw("GET", "/_mfa/auth", nginx(ADMIN), cookies=carol)
    untrusted = await forward_stack(make_stack, name="untrusted", trusted_proxies=["10.0.0.0/8"])
    answers["untrusted"] = await untrusted.raw("GET", "/_mfa/auth", nginx(ADMIN))
    statuses = {name: answer.status for name, answer in answers.items()}
    assert statuses == {
        "allow": 200,
        "bypass": 200,
        "nginx challenge": 401,
        "traefik redirect": 302,
        "traefik 401": 401,
        "invalid target": 403,
        "invalid host": 400,
        "duplicate identity": 400,
        "fault": 500,
        "dependency": 503,
        "untrusted": 403,
    }
    for name, answer in answers.items():
        assert security_headers(answer) == SECURITY, (name, answer.headers)
    assert b"boom" not in answers["fault"].body and json.loads(answers["fault"].body)["code"] == "internal_error"


async def test_every_answer_is_logged_and_counted_under_the_proxys_request_id(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each /auth request leaves one access event (route forward_auth, the decision, the user where known, the
    client the proxy named) under the trusted proxy's X-Request-Id, and one metric sample by decision; a fault in
    judging the peer itself still leaves both, under an id of the gateway's own."""
    stack = await forward_stack(make_stack)
    carol = session_cookie(stack, "carol")
    asked: list[tuple[dict[str, str], dict[str, str] | None, int, str, str | None]] = [
        (nginx(ADMIN), carol, 200, "allow", "carol"),
        (nginx("https://app.example.test/public"), None, 200, "bypass", None),
        (nginx(ADMIN), None, 401, "unauthenticated", None),
        (nginx("not a url"), None, 403, "invalid_target", None),
    ]
    with caplog.at_level(logging.INFO, logger="mfa_gateway.access"):
        for number, (headers, cookies, status, _, _) in enumerate(asked):
            more = {"X-Request-Id": f"trace-{number}", "X-Forwarded-For": "203.0.113.9"}
            response = await stack.raw("GET", "/_mfa/auth", {**headers, **more}, cookies=cookies or {})
            assert response.status == status
        with monkeypatch.context() as patch:
            patch.setattr(Identifier, "judge_peer", lambda *args: (_ for _ in ()).throw(RuntimeError("boom")))
            failed = await stack.raw("GET", "/_mfa/auth", {**nginx(ADMIN), "X-Request-Id": "trace-fault"})
    assert failed.status == 500 and security_headers(failed) == SECURITY
    events = [json.loads(logs.JsonFormatter().format(r)) for r in caplog.records if r.name == "mfa_gateway.access"]
    seen = [(e["request_id"], e["route"], e["status"], e["decision"], e["user"], e["client_ip"]) for e in events]
    assert seen[:-1] == [
        (f"trace-{n}", "forward_auth", status, decision, user, "203.0.113.9")
        for n, (_, _, status, decision, user) in enumerate(asked)
    ]
    fault_id, route, status, decision, _, _ = seen[-1]
    assert (route, status, decision) == ("forward_auth", 500, "internal_error")
    assert re.fullmatch(r"[0-9a-f]{16}", fault_id), "the peer was not judged: the proxy's id is not believed"
    exposition = await scrape(stack)
    for _, _, _, decision, _ in asked:
        assert _sample(exposition, "mfa_gateway_requests_total", route="forward_auth", decision=decision) == 1
    assert _sample(exposition, "mfa_gateway_requests_total", route="forward_auth", decision="internal_error") == 1
    assert _sample(exposition, "mfa_gateway_request_duration_seconds_count", route="forward_auth") == len(asked) + 1


async def test_an_untrusted_peers_request_id_is_not_believed(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """From a peer outside trusted_proxies the X-Request-Id sent is ignored: the event carries the gateway's own."""
    stack = await forward_stack(make_stack, trusted_proxies=["10.0.0.0/8"])
    with caplog.at_level(logging.INFO, logger="mfa_gateway.access"):
        await stack.raw("GET", "/_mfa/auth", {**nginx(ADMIN), "X-Request-Id": "forged-id"})
    (event,) = [r.__dict__ for r in caplog.records if r.name == "mfa_gateway.access"]
    assert event["decision"] == "untrusted_proxy" and re.fullmatch(r"[0-9a-f]{16}", event["request_id"])


@pytest.mark.parametrize(
    "target", ["/_mfa/auth", "/_mfa/auth?x=1", "/_mfa/%61uth", "http://gateway.test/_mfa/auth"], ids=str
)
async def test_every_spelling_of_the_path_gets_the_same_answer(make_stack: StackFactory, target: str) -> None:
    """The exact path is answered by the server ahead of the router, any other spelling (a query, percent-encoding,
    the absolute form, an Expect header) by the router: the same handler, the same answers."""
    stack = await forward_stack(make_stack)
    carol = session_cookie(stack, "carol", "carol@example.test")
    for extra in ({}, {"Expect": "100-continue"}):
        allowed = final(await stack.raw("GET", target, {**nginx(ADMIN), **extra}, cookies=carol))
        assert allowed.status == 200, (target, extra, allowed.body)
        assert allowed.header("Remote-User") == "carol" and allowed.header("Remote-Email") == "carol@example.test"
        assert security_headers(allowed) == SECURITY
        challenged = final(await stack.raw("GET", target, {**nginx(ADMIN, Accept="text/html"), **extra}))
        assert challenged.status == 401 and challenged.header("Location") == "/_mfa/signin?rd=%2Fadmin"


async def test_other_paths_under_the_prefix_are_not_the_auth_endpoint(make_stack: StackFactory) -> None:
    """/_mfa/auth/ and /_mfa/authx are the sub-application's JSON 404s, with no identity header."""
    stack = await forward_stack(make_stack)
    carol = session_cookie(stack, "carol")
    for target in ("/_mfa/auth/", "/_mfa/authx", "/_mfa/auth/x"):
        response = await stack.raw("GET", target, nginx(ADMIN), cookies=carol)
        assert response.status == 404 and json.loads(response.body)["code"] == "not_found", target
        assert not any(response.header(name) for name in HEADERS), target


async def test_remembered_identities_never_cross_between_users(make_stack: StackFactory) -> None:
    """The identity headers and first factors /auth remembers per process are keyed by who asks: carol, dave and
    erin, asking in turn again and again, each get their own name, email and groups, and no cookie gets none."""
    stack = await forward_stack(make_stack)
    people: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
        "carol": (session_cookie(stack, "carol", "carol@example.test"), {"Remote-Email": "carol@example.test"}),
        "dave": (session_cookie(stack, "dave", None, ("ops",)), {"Remote-Email": "", "Remote-Groups": "ops"}),
        "erin": (session_cookie(stack, "erin", "erin@example.test", ("a", "b")), {"Remote-Groups": "a,b"}),
    }
    for _ in range(3):
        for user, (cookies, expected) in people.items():
            response = await stack.raw("GET", "/_mfa/auth", nginx(ADMIN), cookies=cookies)
            assert response.status == 200 and response.header("Remote-User") == user
            assert response.header("X-Auth-User") == user
            for name, value in expected.items():
                assert response.header(name) == value, (user, name)
        anonymous = await stack.raw("GET", "/_mfa/auth", nginx(ADMIN), cookies={})
        assert anonymous.status == 401 and anonymous.header("Remote-User") is None


async def test_remembered_client_addresses_never_cross_between_clients(make_stack: StackFactory) -> None:
    """With a networks rule, the client address read from X-Forwarded-For (remembered per value) decides for each
    client in turn: 10.1.2.3 is denied, 203.0.113.9 and a proxy that named no valid address are not."""
    stack = await forward_stack(
        make_stack,
        policy={"default": "bypass", "rules": [{"networks": ["10.0.0.0/8"], "action": "deny"}]},
    )
    for _ in range(3):
        for forwarded, status in (("10.1.2.3", 403), ("203.0.113.9", 200), ("10.1.2.3, 127.0.0.1", 403), ("x", 200)):
            response = await stack.raw("GET", "/_mfa/auth", {**nginx(ADMIN), "X-Forwarded-For": forwarded})
            assert response.status == status, forwarded
