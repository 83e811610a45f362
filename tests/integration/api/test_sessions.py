"""The sessions JSON API against a real gateway, on memory+SQLite and Redis+PostgreSQL: the live sessions listed
(with a real second factor only), one ended by its public id, and "sign out everywhere else", which ends every
other session, on another replica too, and keeps the caller's under a new id."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.gateway import current_code
from tests.helpers.support import eventually
from tests.integration.api.conftest import Gateway, GatewayFactory


async def signed_in_with_mfa(gateway: Gateway, secret: str | None = None) -> str:
    """alice signed in on ``gateway``'s client with a session at MFA level (enrolled first without ``secret``)."""
    assert (await gateway.login()).status == 200
    if secret is None:
        secret = str((await gateway.enable())["secret"])
        assert (await gateway.post("/api/mfa/verify", {"token": current_code(secret, gateway.clock)})).status == 200
    else:
        assert (await gateway.post("/api/mfa/challenge", {"token": current_code(secret, gateway.clock)})).status == 200
    gateway.clock.advance(30)
    return secret


def cookies_of(gateway: Gateway) -> dict[str, str]:
    return {cookie.key: cookie.value for cookie in gateway.client.session.cookie_jar}


async def works(gateway: Gateway, cookies: dict[str, str]) -> bool:
    gateway.client.session.cookie_jar.clear()
    gateway.client.session.cookie_jar.update_cookies(cookies)
    return (await gateway.client.get(gateway.prefix + "/api/sessions")).status == 200


async def listed(gateway: Gateway) -> list[dict[str, Any]]:
    answer = await gateway.client.get(gateway.prefix + "/api/sessions")
    assert answer.status == 200, await answer.text()
    sessions: list[dict[str, Any]] = (await answer.json())["data"]["sessions"]
    return sessions


async def test_sessions_are_listed_and_ended_by_id(make_gateway: GatewayFactory) -> None:
    """Anonymous or a sign-in pending its code: 401. With MFA: the live sessions, the current one marked,
    named by an id that is not the cookie's session id; ending the other by id stops its cookie; an unknown id is
    404 session_not_found."""
    gateway = await make_gateway()
    assert (await gateway.client.get(gateway.prefix + "/api/sessions")).status == 401
    secret = await signed_in_with_mfa(gateway)
    first = cookies_of(gateway)
    gateway.client.session.cookie_jar.clear()
    assert (await gateway.login()).status == 200
    assert (await gateway.client.get(gateway.prefix + "/api/sessions")).status == 401  # a pending sign-in
    await signed_in_with_mfa(gateway, secret)
    second = cookies_of(gateway)
    sessions = await listed(gateway)
    assert [s["current"] for s in sessions] == [False, True]
    assert sessions[1]["methods"] == ["pwd", "otp"] and sessions[1]["label"] == "A browser"
    assert all(s["id"] not in value for s in sessions for value in (*first.values(), *second.values()))
    ended = await gateway.client.delete(gateway.prefix + f"/api/sessions/{sessions[0]['id']}")
    assert ended.status == 200
    assert not await works(gateway, first)
    assert await works(gateway, second)
    again = await gateway.client.delete(gateway.prefix + f"/api/sessions/{sessions[0]['id']}")
    assert again.status == 404 and (await again.json())["code"] == "session_not_found"


async def test_sign_out_everywhere_else_keeps_only_this_session(make_gateway: GatewayFactory) -> None:
    """end-others: the other session's cookie stops working, the caller's old cookie too (its session continues
    under a new id, in the new cookie), and the list holds the new one alone, marked current."""
    gateway = await make_gateway()
    secret = await signed_in_with_mfa(gateway)
    other = cookies_of(gateway)
    gateway.client.session.cookie_jar.clear()
    await signed_in_with_mfa(gateway, secret)
    before = cookies_of(gateway)
    name = gateway.settings.session.cookie_name
    answer = await gateway.post("/api/sessions/end-others")
    assert answer.status == 200 and answer.cookies[name].value
    after = cookies_of(gateway)
    assert after[name] != before[name]
    [only] = await listed(gateway)
    assert only["current"] is True
    assert not await works(gateway, other) and not await works(gateway, before)
    assert await works(gateway, after)


@pytest.mark.parametrize("backend", ["redis+postgres"], indirect=True)
async def test_sign_out_everywhere_else_reaches_another_replica(make_gateway: GatewayFactory) -> None:
    """Two replicas sharing Redis and PostgreSQL: alice signed in on A and on B; each lists both sessions; "sign out
    everywhere else" on A ends her session on B (through the shared revocations), and A's goes on."""
    a, b = await make_gateway(), await make_gateway()
    secret = await signed_in_with_mfa(a)
    await signed_in_with_mfa(b, secret)
    on_b = cookies_of(b)
    assert len(await listed(b)) == 2
    assert (await a.post("/api/sessions/end-others")).status == 200
    kept = cookies_of(a)

    async def ended_on_b() -> bool:
        return not await works(b, on_b)

    await eventually(ended_on_b, "replica B to refuse the session ended on A", within=5)
    assert await works(a, kept)
    assert len(await listed(a)) == 1


async def test_sign_out_everywhere_else_forgets_every_other_remembered_device(make_gateway: GatewayFactory) -> None:
    """alice remembered on two browsers (two gateways on one database): "sign out everywhere else" from the first
    forgets the second browser's device and keeps this browser's, still marked current."""
    remembering = {"policy": {"rules": [{"name": "everything", "action": "mfa", "remember_device": 86400}]}}
    a, b = await make_gateway(remembering), await make_gateway(remembering)
    secret = await signed_in_with_mfa(a)
    for gateway in (a, b):
        if gateway is b:
            assert (await b.login()).status == 200
        code = current_code(secret, gateway.clock)
        answer = await gateway.post("/api/mfa/challenge", {"token": code, "rememberDevice": True})
        assert answer.status == 200, await answer.text()
        gateway.clock.advance(30)
    assert len((await (await a.client.get(a.prefix + "/api/devices")).json())["data"]["devices"]) == 2
    assert (await a.post("/api/sessions/end-others")).status == 200
    [kept] = (await (await a.client.get(a.prefix + "/api/devices")).json())["data"]["devices"]
    assert kept["current"] is True
