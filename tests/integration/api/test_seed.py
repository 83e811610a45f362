"""The seed plan's acceptance criteria and its three tests, as API tests against a running gateway."""

from __future__ import annotations

import base64

import jwt
import pytest

from tests.helpers.gateway import add_user, current_code
from tests.integration.api.conftest import PASSWORD, Gateway, GatewayFactory


async def test_should_enable_mfa(alice: Gateway) -> None:
    """Seed test 1: enabling MFA returns a secret, a PNG QR data URL and ten backup codes."""
    data = await alice.enable()
    assert data["secret"]
    assert data["qrCode"].startswith("data:image/png;base64,")
    assert base64.b64decode(data["qrCode"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["qrSvg"].lstrip().startswith("<?xml") and "<svg" in data["qrSvg"]
    assert data["otpauthUrl"].startswith("otpauth://totp/mfa-gateway:alice?")
    assert len(data["backupCodes"]) == 10


async def test_should_verify_totp_token(alice: Gateway) -> None:
    """Seed test 2: a current TOTP code activates the enrollment; status then reports it active."""
    data = await alice.enable()
    response = await alice.post("/api/mfa/verify", {"token": current_code(data["secret"], alice.clock)})
    assert response.status == 200
    assert (await response.json())["success"] is True
    status = await (await alice.client.get(alice.prefix + "/api/mfa/status")).json()
    assert status["data"]["active"] is True and status["data"]["backupCodesRemaining"] == 10


async def test_should_verify_backup_code_once(alice: Gateway) -> None:
    """Seed test 3: a backup code verifies once; the same code a second time is refused."""
    data = await alice.enable()
    await alice.post("/api/mfa/verify", {"token": current_code(data["secret"], alice.clock)})
    code = data["backupCodes"][0]
    first = await alice.post("/api/mfa/challenge", {"token": code})
    assert first.status == 200
    assert (await first.json())["backupCodesRemaining"] == 9
    second = await alice.post("/api/mfa/challenge", {"token": code})
    assert second.status == 401
    assert (await second.json())["code"] == "invalid_mfa_token"


async def _enrolled(gateway: Gateway) -> dict[str, str | list[str]]:
    await gateway.login()
    data = await gateway.enable()
    response = await gateway.post("/api/mfa/verify", {"token": current_code(data["secret"], gateway.clock)})
    assert response.status == 200
    gateway.clock.advance(30)
    gateway.client.session.cookie_jar.clear()
    return data


async def test_login_requires_mfa_once_enabled(gateway: Gateway) -> None:
    """Seed login: bad password 401; with MFA on and no token mfaRequired; wrong token 401; right token a JWT."""
    data = await _enrolled(gateway)
    bad = await gateway.login(password="wrong password")
    assert bad.status == 401 and (await bad.json())["error"] == "Invalid credentials"
    pending = await gateway.login()
    assert pending.status == 200
    assert (await pending.json())["mfaRequired"] is True
    wrong = await gateway.login(
        mfaToken="000000" if current_code(str(data["secret"]), gateway.clock) != "000000" else "111111"
    )
    assert wrong.status == 401 and (await wrong.json())["error"] == "Invalid MFA token"
    good = await gateway.login(mfaToken=current_code(str(data["secret"]), gateway.clock))
    body = await good.json()
    assert good.status == 200 and body["success"] is True
    assert body["user"] == {"id": "alice", "username": "alice", "email": "alice@example.test", "mfaEnabled": True}
    assert gateway.settings.session.cookie_name in good.cookies


@pytest.mark.parametrize(
    "token",
    [123456, 12.5, True, ["123456"], {"code": "123456"}, "abcdef", "12345", "1234567890", "1" * 10_000],
    ids=["int", "float", "bool", "list", "object", "letters", "short", "long", "huge"],
)
async def test_a_malformed_mfa_token_is_refused_as_an_invalid_token(gateway: Gateway, token: object) -> None:
    """Seed login with MFA on: an mfaToken of the wrong type, not digits, of the wrong length or huge gets the seed's
    answer, 401 "Invalid MFA token" with the code of any wrong token, not a 400 that tells its shape was the
    problem."""
    await _enrolled(gateway)
    response = await gateway.login(mfaToken=token)
    assert response.status == 401
    assert await response.json() == {"success": False, "error": "Invalid MFA token", "code": "invalid_mfa_token"}


async def test_login_token_is_a_jwt_verifiable_with_the_published_jwks(gateway: Gateway) -> None:
    """The login JWT carries kid, amr, auth_time and exp, and verifies against {prefix}/jwks.json."""
    data = await _enrolled(gateway)
    good = await gateway.login(mfaToken=current_code(str(data["secret"]), gateway.clock))
    token = (await good.json())["token"]
    jwks = await (await gateway.client.get(gateway.prefix + "/jwks.json")).json()
    header = jwt.get_unverified_header(token)
    (key,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert header["alg"] == "EdDSA" and "d" not in key
    claims = jwt.decode(
        token,
        jwt.PyJWK(key).key,
        algorithms=["EdDSA"],
        audience="mfa-gateway",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["sub"] == "alice" and claims["amr"] == ["pwd", "otp"]
    assert claims["exp"] - claims["iat"] == 900 and claims["auth_time"] == int(gateway.clock.now)


async def test_pending_login_completes_with_the_challenge(gateway: Gateway) -> None:
    """After mfaRequired, POST api/mfa/challenge with the code completes the sign-in exactly once."""
    data = await _enrolled(gateway)
    pending = await (await gateway.login()).json()
    code = current_code(str(data["secret"]), gateway.clock)
    done = await gateway.post("/api/mfa/challenge", {"token": code, "challengeId": pending["challengeId"]})
    assert done.status == 200 and (await done.json())["token"]
    gateway.clock.advance(30)
    again = await gateway.post(
        "/api/mfa/challenge",
        {"token": current_code(str(data["secret"]), gateway.clock), "challengeId": pending["challengeId"]},
    )
    assert again.status == 401 and (await again.json())["code"] == "challenge_expired"


async def test_pending_login_expires(gateway: Gateway) -> None:
    """A pending challenge lives challenge_ttl seconds (5 minutes by default), by injected time."""
    data = await _enrolled(gateway)
    pending = await (await gateway.login()).json()
    gateway.clock.advance(301)
    late = await gateway.post(
        "/api/mfa/challenge",
        {"token": current_code(str(data["secret"]), gateway.clock), "challengeId": pending["challengeId"]},
    )
    assert late.status == 401 and (await late.json())["code"] == "challenge_expired"


async def test_mfa_can_be_disabled_with_a_current_code(gateway: Gateway) -> None:
    """Disabling needs a valid code; afterwards login no longer asks for MFA."""
    data = await _enrolled(gateway)
    signed_in = await gateway.login(mfaToken=current_code(str(data["secret"]), gateway.clock))
    assert signed_in.status == 200
    gateway.clock.advance(30)
    refused = await gateway.post("/api/mfa/disable", {"token": "12345678"})
    assert refused.status == 400
    disabled = await gateway.post("/api/mfa/disable", {"token": current_code(str(data["secret"]), gateway.clock)})
    assert disabled.status == 200
    body = await (await gateway.login()).json()
    assert "mfaRequired" not in body and body["user"]["mfaEnabled"] is False


async def test_regenerating_backup_codes_invalidates_the_old_set(gateway: Gateway) -> None:
    """A new set needs a current code; old codes stop working, new ones work."""
    data = await _enrolled(gateway)
    await gateway.login(mfaToken=current_code(str(data["secret"]), gateway.clock))
    gateway.clock.advance(30)
    response = await gateway.post("/api/mfa/backup-codes", {"token": current_code(str(data["secret"]), gateway.clock)})
    new_codes = (await response.json())["data"]["backupCodes"]
    assert response.status == 200 and len(new_codes) == 10 and not set(new_codes) & set(data["backupCodes"])
    old = await gateway.post("/api/mfa/challenge", {"token": data["backupCodes"][1]})
    assert old.status == 401
    new = await gateway.post("/api/mfa/challenge", {"token": new_codes[0].lower()})
    assert new.status == 200


async def test_pending_enrollment_can_restart_but_an_active_one_is_never_replaced(alice: Gateway) -> None:
    """enable twice before verifying gives a new secret; after activation enable is a 409."""
    first = await alice.enable()
    second = await alice.enable()
    assert first["secret"] != second["secret"]
    stale = await alice.post("/api/mfa/verify", {"token": current_code(first["secret"], alice.clock)})
    assert stale.status == 401
    ok = await alice.post("/api/mfa/verify", {"token": current_code(second["secret"], alice.clock)})
    assert ok.status == 200
    again = await alice.post("/api/mfa/enable")
    assert again.status == 409 and (await again.json())["code"] == "already_enrolled"


async def test_backup_codes_cannot_activate_an_enrollment(alice: Gateway) -> None:
    """Activation proves the authenticator app works, so only a TOTP code activates."""
    data = await alice.enable()
    response = await alice.post("/api/mfa/verify", {"token": data["backupCodes"][0]})
    assert response.status == 400 and (await response.json())["code"] == "invalid_code_format"


@pytest.mark.parametrize("digits", [6, 8])
async def test_configured_digits_and_algorithm_apply(make_gateway: GatewayFactory, digits: int) -> None:
    """totp.digits/algorithm shape new enrollments and the otpauth URI."""
    from mfa_gateway.core.model import TotpAlgorithm, TotpParams

    gateway = await make_gateway({"totp": {"digits": digits, "algorithm": "SHA256"}})
    await gateway.login()
    data = await gateway.enable()
    params = TotpParams(TotpAlgorithm.SHA256, digits, 30)
    assert "algorithm=SHA256" in data["otpauthUrl"]
    assert (data["algorithm"], data["digits"], data["period"]) == ("SHA256", digits, 30)  # for a key typed by hand
    response = await gateway.post("/api/mfa/verify", {"token": current_code(data["secret"], gateway.clock, params)})
    assert response.status == 200


def largest_accepted_period() -> int:
    """The largest ``totp.period`` the configuration schema accepts (its ``le`` bound)."""
    from annotated_types import Le

    from mfa_gateway.config import Totp

    bounds = [int(m.le) for m in Totp.model_fields["period"].metadata if isinstance(m, Le)]
    assert len(bounds) == 1
    return bounds[0]


async def test_the_largest_accepted_period_enrolls_end_to_end(make_gateway: GatewayFactory) -> None:
    """totp.period at the largest value config validation accepts enrolls (its URI says so), activates with a code
    of that period and verifies one a period later: every accepted period is one verification supports, no 500."""
    from mfa_gateway.core.model import TotpParams

    period = largest_accepted_period()
    gateway = await make_gateway({"totp": {"period": period}})
    await gateway.login()
    response = await gateway.post("/api/mfa/enable")
    assert response.status == 200, (period, response.status)
    data = (await response.json())["data"]
    assert f"period={period}" in data["otpauthUrl"]
    params = TotpParams(period=period)
    response = await gateway.post("/api/mfa/verify", {"token": current_code(data["secret"], gateway.clock, params)})
    assert response.status == 200
    gateway.clock.advance(period)
    token = current_code(data["secret"], gateway.clock, params)
    assert (await gateway.post("/api/mfa/challenge", {"token": token})).status == 200


async def test_a_user_name_with_a_colon_enrolls_with_a_label_apps_can_split(make_gateway: GatewayFactory) -> None:
    """A user named corp:alice enrolls and activates; the otpauth label keeps one ':' (issuer:account), the user's
    own shown as U+FF1A, and '/' or spaces of the issuer are encoded."""
    from urllib.parse import unquote, urlsplit

    gateway = await make_gateway({"totp": {"issuer": "Acme Co/EU"}})
    add_user(gateway.settings, "corp:alice", PASSWORD)
    assert (await gateway.login("corp:alice")).status == 200
    data = await gateway.enable()
    label = urlsplit(data["otpauthUrl"]).path
    assert label == "/Acme%20Co%2FEU:corp%EF%BC%9Aalice"
    assert unquote(label) == "/Acme Co/EU:corp\uff1aalice"
    response = await gateway.post("/api/mfa/verify", {"token": current_code(data["secret"], gateway.clock)})
    assert response.status == 200


async def test_unknown_user_and_wrong_password_look_the_same(gateway: Gateway) -> None:
    """No user enumeration: an unknown name gets the same 401 body as a wrong password."""
    unknown = await gateway.login(username="mallory")
    wrong = await gateway.login(password=PASSWORD + "x")
    assert unknown.status == wrong.status == 401
    assert await unknown.json() == await wrong.json()


async def test_bearer_tokens_are_revoked_by_logout_and_by_disabling_mfa(gateway: Gateway) -> None:
    """A login JWT stops working after api/logout with it, and every older JWT after MFA is disabled."""
    data = await _enrolled(gateway)
    first = (await (await gateway.login(mfaToken=current_code(str(data["secret"]), gateway.clock))).json())["token"]
    gateway.client.session.cookie_jar.clear()
    status = gateway.prefix + "/api/mfa/status"
    assert (await gateway.client.get(status, headers={"Authorization": f"Bearer {first}"})).status == 200
    out = await gateway.post("/api/logout", headers={"Authorization": f"Bearer {first}"})
    assert out.status == 200
    refused = await gateway.client.get(status, headers={"Authorization": f"Bearer {first}"})
    assert refused.status == 401 and (await refused.json())["code"] == "invalid_token"
    gateway.clock.advance(30)
    second = (await (await gateway.login(mfaToken=current_code(str(data["secret"]), gateway.clock))).json())["token"]
    gateway.client.session.cookie_jar.clear()
    gateway.clock.advance(30)
    bearer = {"Authorization": f"Bearer {second}"}
    assert (
        await gateway.post(
            "/api/mfa/disable", {"token": current_code(str(data["secret"]), gateway.clock)}, headers=bearer
        )
    ).status == 200
    gateway.clock.advance(1)
    assert (await gateway.client.get(status, headers=bearer)).status == 401
