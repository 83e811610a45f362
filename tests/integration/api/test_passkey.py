"""Passkey sign-in through the real gateway's JSON API, with the software authenticator answering as a browser
would (real py_webauthn verification, real signatures).

Pinned: a key registered (a discoverable credential, its user handle random) signs alice in with no password:
api/webauthn/passkey answers as api/login does, with a session cookie and a JWT whose amr is [pin, hwk], an MFA
session; the answer works once; without user verification, or under another handle, nobody is signed in; with
another identity source, or WebAuthn off, both routes answer 404 passkey_signin_unavailable.
"""

from __future__ import annotations

from typing import Any

import jwt

from tests.helpers.gateway import add_user
from tests.helpers.webauthn import SoftAuthenticator
from tests.integration.api.conftest import Gateway, GatewayFactory
from tests.integration.api.test_webauthn import ORIGIN, RP_ID, WEBAUTHN, _json, register


async def passkey_answer(gateway: Gateway, key: SoftAuthenticator, **answer: Any) -> dict[str, Any]:
    started = (await _json(await gateway.post("/api/webauthn/passkey/options")))["data"]
    assert started["publicKey"]["allowCredentials"] == []
    assert started["publicKey"]["userVerification"] == "required"
    return {"ceremonyId": started["ceremonyId"], "credential": key.get(started["publicKey"], **answer)}


async def test_a_passkey_signs_in_alone_with_both_factors(make_gateway: GatewayFactory) -> None:
    """alice registers a key, signs out, and signs in with the key alone: the answer of api/login (token, user),
    a session cookie whose session has MFA, and a JWT whose amr is [pin, hwk]. The same answer again is refused."""
    gateway = await make_gateway(WEBAUTHN)
    assert (await gateway.login()).status == 200
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(gateway, key)
    await _json(await gateway.post("/api/logout"))
    assert (await gateway.client.get(gateway.prefix + "/api/mfa/status")).status == 401
    body = await passkey_answer(gateway, key)
    signed_in = await _json(await gateway.post("/api/webauthn/passkey", body))
    assert signed_in["user"]["username"] == "alice" and signed_in["user"]["mfaEnabled"] is True
    claims = jwt.decode(signed_in["token"], options={"verify_signature": False})
    assert claims["amr"] == ["pin", "hwk"] and claims["sub"] == "alice"
    status = (await _json(await gateway.client.get(gateway.prefix + "/api/mfa/status")))["data"]
    assert status["mfaSession"] is True
    replayed = await _json(await gateway.post("/api/webauthn/passkey", body), 401)
    assert replayed["code"] == "webauthn_challenge_expired"


async def test_no_user_verification_or_a_foreign_handle_signs_nobody_in(make_gateway: GatewayFactory) -> None:
    """A touch without user verification, or alice's credential under a handle that is not hers, answers 401
    invalid_webauthn_response and sets no session cookie."""
    gateway = await make_gateway(WEBAUTHN)
    assert (await gateway.login()).status == 200
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(gateway, key)
    await _json(await gateway.post("/api/logout"))
    for answer in ({"verified": False}, {"user_handle": b"\x07" * 32}):
        refused = await gateway.post("/api/webauthn/passkey", await passkey_answer(gateway, key, **answer))
        assert (await _json(refused, 401))["code"] == "invalid_webauthn_response"
        assert not any(cookie.value for cookie in refused.cookies.values())


async def test_a_user_removed_from_the_users_file_is_not_signed_in_nor_audited_as_signed_in(
    make_gateway: GatewayFactory,
) -> None:
    """alice registers a key and is then removed from the users file (her key stays in the store): her passkey
    answers 401 invalid_webauthn_response, sets no cookie, and the audit holds no login.passkey success."""
    gateway = await make_gateway(WEBAUTHN)
    assert (await gateway.login()).status == 200
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(gateway, key)
    await _json(await gateway.post("/api/logout"))
    users_file = gateway.settings.identity.users_file
    assert users_file is not None
    users_file.unlink()
    add_user(gateway.settings, "bob", "bob password 1")
    refused = await gateway.post("/api/webauthn/passkey", await passkey_answer(gateway, key))
    assert (await _json(refused, 401))["code"] == "invalid_webauthn_response"
    assert not any(cookie.value for cookie in refused.cookies.values())
    assert gateway.audit is not None
    results = [(e.result, e.user_id) for e in gateway.audit.events if e.event == "login.passkey"]
    assert results == [("failure", "")], results  # nobody: the address alone is counted


async def test_passkey_sign_in_needs_the_builtin_identity_and_webauthn(make_gateway: GatewayFactory) -> None:
    """With trusted-header identity (WebAuthn on), or builtin with WebAuthn off, both routes answer 404
    passkey_signin_unavailable."""
    trusted = {"identity": {"source": "trusted_header"}, "trusted_proxies": ["127.0.0.1/32"]}
    headers = await make_gateway({**WEBAUTHN, **trusted})
    plain = await make_gateway()
    for gateway in (headers, plain):
        for path, body in (("/api/webauthn/passkey/options", {}), ("/api/webauthn/passkey", {})):
            refused = await _json(await gateway.post(path, body), 404)
            assert refused["code"] == "passkey_signin_unavailable"
