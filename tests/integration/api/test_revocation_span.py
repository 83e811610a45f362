"""A user's revocation outlives every token issued before it, not only the sessions."""

from __future__ import annotations

from tests.helpers.gateway import current_code
from tests.integration.api.conftest import GatewayFactory


async def test_a_jwt_from_before_disable_stays_refused_for_its_whole_life(make_gateway: GatewayFactory) -> None:
    """With session.ttl shorter than session.jwt_ttl, a bearer JWT issued before MFA was disabled is still refused
    after session.ttl has passed: the user's revocation is kept for the longer of the two lifetimes."""
    gateway = await make_gateway({"session": {"ttl": 600, "idle_timeout": 600, "jwt_ttl": 3600}})
    await gateway.login()
    secret = str((await gateway.enable())["secret"])
    assert (await gateway.post("/api/mfa/verify", {"token": current_code(secret, gateway.clock)})).status == 200
    gateway.clock.advance(30)
    gateway.client.session.cookie_jar.clear()
    signed_in = await gateway.login(mfaToken=current_code(secret, gateway.clock))
    bearer = {"Authorization": f"Bearer {(await signed_in.json())['token']}"}
    gateway.client.session.cookie_jar.clear()
    gateway.clock.advance(30)
    disabled = await gateway.post("/api/mfa/disable", {"token": current_code(secret, gateway.clock)}, headers=bearer)
    assert disabled.status == 200

    gateway.clock.advance(1200)  # past session.ttl, well within the JWT's lifetime
    await gateway.runtime.revocations.resync()  # what the background resync does: forget what has lapsed
    response = await gateway.client.get(gateway.prefix + "/api/mfa/status", headers=bearer)
    assert response.status == 401
