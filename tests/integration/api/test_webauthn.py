"""Security keys and passkeys through the real gateway's JSON API, on both backend pairs, with the software
authenticator answering as a browser would (real py_webauthn verification, real signatures).

Pinned: registration as an enrollment steps the session up; a key-only user signs in with the password and the key
(api/login answers mfaRequired, then api/webauthn/authentication completes the pending sign-in) and gets a JWT whose
amr says hwk; challenges are taken once and serve one user; a look-alike origin and a counter that went backwards
are refused with their codes; listing needs MFA; removing needs a fresh factor and, for the last factor, ends every
session. Two replicas sharing Redis and PostgreSQL: a key registered on A signs in on B, and one assertion sent to
both at once passes on exactly one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import jwt
import pytest

from tests.helpers.webauthn import SoftAuthenticator
from tests.integration.api.conftest import PASSWORD, Gateway, GatewayFactory

ORIGIN = "https://app.example.test"
RP_ID = "example.test"
WEBAUTHN = {"webauthn": {"origins": [ORIGIN], "rp_id": RP_ID}}


async def _json(response: Any, status: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == status, body
    return body


async def register(gateway: Gateway, key: SoftAuthenticator, name: str = "Blue key", **headers: str) -> dict[str, Any]:
    started = await _json(await gateway.post("/api/webauthn/registration/options", {"name": name}, headers=headers))
    data = started["data"]
    answer = key.create(data["publicKey"])
    body = {"ceremonyId": data["ceremonyId"], "credential": answer}
    return await _json(await gateway.post("/api/webauthn/registration", body, headers=headers))


async def assertion(gateway: Gateway, key: SoftAuthenticator, body: dict[str, Any] | None = None, **answer: Any) -> Any:
    """Options, then the key's answer: the body to post to api/webauthn/authentication (with ``body``'s fields)."""
    started = await _json(await gateway.post("/api/webauthn/authentication/options", body or {}))
    data = started["data"]
    return {**(body or {}), "ceremonyId": data["ceremonyId"], "credential": key.get(data["publicKey"], **answer)}


async def bearer(gateway: Gateway, user: str) -> dict[str, str]:
    """A first-factor bearer token of ``user``, signed in outside the test client (its cookie jar stays alice's)."""
    async with aiohttp.ClientSession() as session:
        url = gateway.client.make_url(gateway.prefix + "/api/login")
        async with session.post(url, json={"username": user, "password": PASSWORD}) as response:
            body = await _json(response)
    return {"Authorization": f"Bearer {body['token']}"}


@pytest.fixture
async def webauthn(make_gateway: GatewayFactory) -> Gateway:
    gateway = await make_gateway(WEBAUTHN)
    assert (await gateway.login()).status == 200
    return gateway


async def test_a_key_enrolls_steps_up_and_signs_in_with_the_password(webauthn: Gateway) -> None:
    """alice (first factor only) registers a key: the answer says enrolled and her session now has MFA. After
    sign-out, api/login asks for MFA; the key completes the pending sign-in, and the JWT's amr is [pwd, hwk]."""
    key = SoftAuthenticator(ORIGIN, RP_ID)
    registered = await register(webauthn, key)
    assert registered["data"]["enrolled"] is True
    assert registered["data"]["credential"]["name"] == "Blue key"
    status = (await _json(await webauthn.client.get(webauthn.prefix + "/api/mfa/status")))["data"]
    assert (status["enrolled"], status["active"], status["totp"], status["webauthnCredentials"]) == (
        True,
        True,
        False,
        1,
    )
    assert status["mfaSession"] is True
    await _json(await webauthn.post("/api/logout"))
    pending = await _json(await webauthn.login())
    assert pending["mfaRequired"] is True
    body = await assertion(webauthn, key, {"challengeId": pending["challengeId"]})
    signed_in = await _json(await webauthn.post("/api/webauthn/authentication", body))
    claims = jwt.decode(signed_in["token"], options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "hwk"] and signed_in["user"]["mfaEnabled"] is True
    bearer = {"Authorization": f"Bearer {signed_in['token']}"}
    by_token = (await _json(await webauthn.client.get(webauthn.prefix + "/api/mfa/status", headers=bearer)))["data"]
    assert by_token["mfaSession"] is True


async def test_a_session_steps_up_with_a_key_and_an_answer_works_once(webauthn: Gateway) -> None:
    """A first-factor session steps up with the key (method hwk, a new session cookie); the same answer posted
    again is 401 webauthn_challenge_expired."""
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(webauthn, key)
    body = await assertion(webauthn, key)
    first = await _json(await webauthn.post("/api/webauthn/authentication", body))
    assert first["method"] == "hwk"
    replay = await _json(await webauthn.post("/api/webauthn/authentication", body), 401)
    assert replay["code"] == "webauthn_challenge_expired"


async def test_a_challenge_issued_to_alice_verifies_nothing_for_bob(webauthn: Gateway) -> None:
    """bob, signed in with his own token, posts alice's ceremony id with alice's valid answer (relayed into his
    session): refused, and the ceremony is spent for alice too."""
    alices = SoftAuthenticator(ORIGIN, RP_ID)
    await register(webauthn, alices)
    bob = await bearer(webauthn, "bob")
    started = (await _json(await webauthn.post("/api/webauthn/authentication/options", {})))["data"]
    stolen = {"ceremonyId": started["ceremonyId"], "credential": alices.get(started["publicKey"])}
    assert (await _json(await webauthn.post("/api/webauthn/authentication", stolen, headers=bob), 401))[
        "code"
    ] == "webauthn_challenge_expired"
    own = {"ceremonyId": started["ceremonyId"], "credential": alices.get(started["publicKey"])}
    assert (await webauthn.post("/api/webauthn/authentication", own)).status == 401


async def test_a_look_alike_origin_and_a_cloned_counter_are_refused(webauthn: Gateway) -> None:
    """An answer signed on another origin is 401 invalid_webauthn_response; a correctly signed one whose counter
    went backwards is 401 webauthn_counter_regressed and audited as mfa.webauthn.counter_regressed."""
    key = SoftAuthenticator(ORIGIN, RP_ID, counter=5)
    await register(webauthn, key)
    phished = await assertion(webauthn, key, origin="https://app.example.test.evil.example")
    assert (await _json(await webauthn.post("/api/webauthn/authentication", phished), 401))[
        "code"
    ] == "invalid_webauthn_response"
    await _json(await webauthn.post("/api/webauthn/authentication", await assertion(webauthn, key)))
    cloned = await assertion(webauthn, key, counter=3)
    assert (await _json(await webauthn.post("/api/webauthn/authentication", cloned), 401))[
        "code"
    ] == "webauthn_counter_regressed"
    assert webauthn.audit is not None
    assert [e.result for e in webauthn.audit.events if e.event == "mfa.webauthn.counter_regressed"] == ["refused"]


async def test_managing_keys_needs_mfa_and_removing_one_needs_a_fresh_factor(
    webauthn: Gateway, make_gateway: GatewayFactory
) -> None:
    """Listing and renaming answer 403 mfa_required to a first factor alone. Removing needs a fresh factor in the
    request: none is 400, a wrong one 401; an assertion removes the key. Removing the last factor turns MFA off and
    ends the session (as api/mfa/disable does)."""
    key = SoftAuthenticator(ORIGIN, RP_ID)
    credential_id = (await register(webauthn, key))["data"]["credential"]["id"]
    path = f"/api/webauthn/credentials/{credential_id}"
    listed = (await _json(await webauthn.client.get(webauthn.prefix + "/api/webauthn/credentials")))["data"]
    assert [c["name"] for c in listed["credentials"]] == ["Blue key"]
    renamed = await _json(await webauthn.client.patch(webauthn.prefix + path, json={"name": "Red key"}))
    assert renamed["data"]["credential"]["name"] == "Red key"
    first_factor_only = await bearer(webauthn, "bob")
    for method in ("get", "patch"):
        target = webauthn.prefix + ("/api/webauthn/credentials" if method == "get" else path)
        refused = await getattr(webauthn.client, method)(target, json={"name": "x"}, headers=first_factor_only)
        assert (await _json(refused, 403))["code"] == "mfa_required"
    assert (await _json(await webauthn.client.delete(webauthn.prefix + path, json={}), 400))["code"] == "invalid_field"
    wrong = await webauthn.client.delete(webauthn.prefix + path, json={"token": "000000"})
    assert (await _json(wrong, 409))["code"] == "totp_not_enrolled"  # no authenticator app: no code is right
    body = await assertion(webauthn, key)
    removed = await _json(await webauthn.client.delete(webauthn.prefix + path, json=body))
    assert removed["data"]["mfaActive"] is False
    assert (await webauthn.client.get(webauthn.prefix + "/api/mfa/status")).status == 401  # signed out everywhere


async def test_a_key_only_user_is_asked_for_the_key_everywhere(webauthn: Gateway, make_gateway: GatewayFactory) -> None:
    """With only a key: api/login with an mfaToken still answers mfaRequired (a code cannot be right); from a
    first factor alone (a trusted header, no session), api/mfa/challenge with a code is 409 totp_not_enrolled and
    api/mfa/enable is 403 mfa_required: a password alone adds no authenticator app to a key-only account."""
    await register(webauthn, SoftAuthenticator(ORIGIN, RP_ID))
    await _json(await webauthn.post("/api/logout"))
    assert (await _json(await webauthn.login(mfaToken="123456")))["mfaRequired"] is True
    header = {"identity": {"source": "trusted_header"}, "trusted_proxies": ["127.0.0.1/32"]}
    gateway = await make_gateway({**WEBAUTHN, **header}, users=False)
    carol = {"X-Forwarded-User": "carol"}
    assert (await register(gateway, SoftAuthenticator(ORIGIN, RP_ID), **carol))["data"]["enrolled"] is True
    gateway.client.session.cookie_jar.clear()  # the stepped-up session gone: the header alone remains
    refused = await _json(await gateway.post("/api/mfa/challenge", {"token": "123456"}, headers=carol), 409)
    assert refused["code"] == "totp_not_enrolled"
    assert (await _json(await gateway.post("/api/mfa/enable", headers=carol), 403))["code"] == "mfa_required"
    status = (await _json(await gateway.client.get(gateway.prefix + "/api/mfa/status", headers=carol)))["data"]
    assert (status["enrolled"], status["mfaSession"]) == (True, False)


async def test_webauthn_off_answers_404(make_gateway: GatewayFactory) -> None:
    """Without origins (and no public_url) every api/webauthn route answers 404 webauthn_unavailable."""
    gateway = await make_gateway()
    assert (await gateway.login()).status == 200
    refused = await _json(await gateway.post("/api/webauthn/registration/options", {"name": "x"}), 404)
    assert refused["code"] == "webauthn_unavailable"


@pytest.mark.parametrize(
    "body",
    [
        {"ceremonyId": "x"},
        {"ceremonyId": "x", "credential": "not an object"},
        {"ceremonyId": 7, "credential": {}},
        {"ceremonyId": "x" * 1000, "credential": {}},
        {"ceremonyId": "x", "credential": {"id": [], "rawId": {}, "response": 3}},
    ],
)
async def test_malformed_answers_are_4xx(webauthn: Gateway, body: dict[str, Any]) -> None:
    """Whatever the answer's shape, the API answers 400 or 401 with a code, never a 500."""
    for path in ("/api/webauthn/registration", "/api/webauthn/authentication"):
        response = await webauthn.post(path, body)
        assert response.status in (400, 401), await response.text()
        assert (await response.json())["code"]


@pytest.mark.parametrize("backend", ["redis+postgres"], indirect=True)
async def test_two_replicas_share_keys_and_take_each_challenge_once(make_gateway: GatewayFactory) -> None:
    """Replicas A and B share Redis and PostgreSQL: a key registered on A signs in on B; one assertion posted to
    A and B at once passes on exactly one of them (the other: webauthn_challenge_expired)."""
    a = await make_gateway(WEBAUTHN)
    b = await make_gateway(WEBAUTHN)
    key = SoftAuthenticator(ORIGIN, RP_ID)
    assert (await a.login()).status == 200
    await register(a, key)
    pending = await _json(await b.login())
    signed_in = await _json(
        await b.post("/api/webauthn/authentication", await assertion(b, key, {"challengeId": pending["challengeId"]}))
    )
    alice = {"Authorization": f"Bearer {signed_in['token']}"}
    started = (await _json(await a.post("/api/webauthn/authentication/options", {}, headers=alice)))["data"]
    body = {"ceremonyId": started["ceremonyId"], "credential": key.get(started["publicKey"])}
    answers = await asyncio.gather(
        a.post("/api/webauthn/authentication", body, headers=alice),
        b.post("/api/webauthn/authentication", body, headers=alice),
    )
    assert sorted(response.status for response in answers) == [200, 401]
    refused = next(response for response in answers if response.status == 401)
    assert (await refused.json())["code"] == "webauthn_challenge_expired"
