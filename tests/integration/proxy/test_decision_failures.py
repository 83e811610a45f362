"""Any exception inside the decision denies: a fault at each step, in proxy and forward-auth mode, is a refusal.

A real gateway with a host-scoped ``mfa`` rule and a ``bypass`` default; a signed-in user with MFA is allowed to
``/public`` on the app's host (the baseline). Then each step of the decision raises in turn, once an unexpected
``RuntimeError`` and once ``DependencyUnavailable``: the answer must be a 500 ``internal_error`` (no detail, no
traceback) or a 503, never a 2xx and never the app's page.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from mfa_gateway.core.errors import DependencyUnavailable
from mfa_gateway.core.policy import Policy
from mfa_gateway.core.tokens import SigningKeys
from mfa_gateway.web import gate as gate_module
from mfa_gateway.web.gate import Gate
from mfa_gateway.web.headers import UpstreamHeaders
from mfa_gateway.web.identity import Identifier
from tests.integration.proxy.conftest import RawResponse, Stack, StackFactory
from tests.integration.proxy.test_forward_auth import forward_stack, mfa_cookies, nginx

APP_HOST = "app.example.test"
SECRET_DETAIL = "boom-internal-detail"
PUBLIC = b"Public page"


def host_rule(action: str) -> dict[str, Any]:
    return {"default": "bypass", "rules": [{"name": "app", "hosts": [APP_HOST], "action": action}]}


def failures() -> list[tuple[str, Callable[[], BaseException]]]:
    return [
        ("unexpected", lambda: RuntimeError(SECRET_DETAIL)),
        ("dependency", lambda: DependencyUnavailable("redis", "Sessions cannot be checked right now.")),
    ]


def raising(make: Callable[[], BaseException]) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise make()

    return fail


def step_targets(stack: Stack) -> dict[str, tuple[object, str]]:
    """Where each step of the decision can be made to fail: (object, attribute)."""
    return {
        "path normalisation": (Gate, "normalise"),
        "host check": (Gate, "host"),
        "policy match": (Policy, "match"),
        "cookie open": (Identifier, "_open_cookie_value"),
        "revocation check": (stack.runtime.revocations, "is_revoked"),
        "decide": (gate_module, "decide"),
        "identity headers": (UpstreamHeaders, "_identity_pairs"),  # under both the proxy and forward-auth
    }


def assert_refused(response: RawResponse, kind: str, where: str) -> None:
    """A 500 ``internal_error`` without detail for an unexpected fault, a 503 for a dependency; never a pass."""
    assert not 200 <= response.status < 400 and PUBLIC not in response.body, (where, response.status)
    assert SECRET_DETAIL.encode() not in response.body and b"Traceback" not in response.body, where
    body = json.loads(response.body)
    if kind == "unexpected":
        assert (response.status, body["code"]) == (500, "internal_error"), (where, response.status, body)
    else:
        assert (response.status, body["code"]) == (503, "dependency_unavailable"), (where, response.status, body)


async def signed_in_stack(make_stack: StackFactory) -> tuple[Stack, dict[str, str]]:
    stack = await forward_stack(make_stack, policy=host_rule("mfa"))
    return stack, await mfa_cookies(stack)


async def ask_proxy(stack: Stack, cookies: dict[str, str], **more: str) -> RawResponse:
    return await stack.raw("GET", "/public", {"Accept": "application/json", **more}, cookies=cookies, hosts=(APP_HOST,))


async def ask_forward_auth(stack: Stack, cookies: dict[str, str], **more: str) -> RawResponse:
    return await stack.raw("GET", "/_mfa/auth", nginx(f"https://{APP_HOST}/public", **more), cookies=cookies)


@pytest.mark.parametrize("mode", ["proxy", "forward_auth"])
async def test_a_fault_at_any_step_of_the_decision_denies(
    make_stack: StackFactory, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Path normalisation, host check, policy match, cookie opening, revocation check, decide() and identity header
    building each raise in turn: every answer is a 500 or 503, never the allowed user's 2xx."""
    stack, cookies = await signed_in_stack(make_stack)
    ask = ask_proxy if mode == "proxy" else ask_forward_auth
    baseline = await ask(stack, cookies)
    assert baseline.status == 200, "the signed-in user is allowed when nothing fails"
    for step, (owner, attribute) in step_targets(stack).items():
        for kind, make in failures():
            with monkeypatch.context() as patch:
                patch.setattr(owner, attribute, raising(make))
                assert_refused(await ask(stack, cookies), kind, f"{mode}: {step}: {kind}")
    assert (await ask(stack, cookies)).status == 200, "nothing stays broken once the fault is gone"


@pytest.mark.parametrize("mode", ["proxy", "forward_auth"])
async def test_a_fault_verifying_a_bearer_token_denies(
    make_stack: StackFactory, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A gateway-issued JWT allows on its own; a fault inside its verification is a 500 or 503, never a pass."""
    stack = await forward_stack(make_stack, policy=host_rule("mfa"))
    now = int(stack.clock())
    session = stack.settings.session
    claims = {"iss": session.jwt_issuer, "aud": session.jwt_audience, "sub": "carol", "iat": now, "exp": now + 600}
    token = stack.runtime.keys.signing_keys.issue({**claims, "auth_time": now, "amr": ["pwd", "otp"], "sid": "s1"})
    bearer = {"Authorization": f"Bearer {token}"}
    ask = ask_proxy if mode == "proxy" else ask_forward_auth
    assert (await ask(stack, {}, **bearer)).status == 200, "the token allows when nothing fails"
    for kind, make in failures():
        with monkeypatch.context() as patch:
            patch.setattr(SigningKeys, "verify", raising(make))
            assert_refused(await ask(stack, {}, **bearer), kind, f"{mode}: jwt verify: {kind}")


@pytest.mark.parametrize("mode", ["proxy", "forward_auth"])
async def test_a_fault_reading_the_trusted_header_denies(
    make_stack: StackFactory, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A trusted proxy's user header allows an ``identity`` route; a fault reading it is a 500 or 503."""
    identity = {"source": "trusted_header", "header": "X-Forwarded-User", "upstream_login": None}
    stack = await forward_stack(make_stack, identity=identity, policy=host_rule("identity"))
    ask = ask_proxy if mode == "proxy" else ask_forward_auth
    user = {"X-Forwarded-User": "alice"}
    assert (await ask(stack, {}, **user)).status == 200, "the header allows when nothing fails"
    for kind, make in failures():
        with monkeypatch.context() as patch:
            patch.setattr(Identifier, "_from_header", raising(make))
            assert_refused(await ask(stack, {}, **user), kind, f"{mode}: trusted header: {kind}")


async def test_an_unexpected_fault_shows_browsers_a_page_without_detail(
    make_stack: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In proxy mode a browser gets the gateway's 500 page (no traceback, no detail), never the app's page."""
    stack, cookies = await signed_in_stack(make_stack)
    monkeypatch.setattr(gate_module, "decide", raising(lambda: RuntimeError(SECRET_DETAIL)))
    page = await stack.raw("GET", "/public", {"Accept": "text/html"}, cookies=cookies, hosts=(APP_HOST,))
    assert page.status == 500 and b"<!doctype html>" in page.body and PUBLIC not in page.body
    assert SECRET_DETAIL.encode() not in page.body and b"Traceback" not in page.body
