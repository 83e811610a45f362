"""The remembered-devices JSON API against a real gateway, on memory+SQLite and Redis+PostgreSQL: asking to be
remembered (never for longer than a rule allows), listing and forgetting devices (with a real second factor only),
and signing out everywhere."""

from __future__ import annotations

from typing import Any

from tests.helpers.gateway import current_code
from tests.integration.api.conftest import Gateway, GatewayFactory

DAY = 86400
REMEMBERING = {"policy": {"rules": [{"name": "everything", "action": "mfa", "remember_device": 7 * DAY}]}}
DEVICE = "__Host-mfa-device"


async def enrolled(gateway: Gateway) -> str:
    """alice signed in with a session at MFA level; returns her TOTP secret."""
    assert (await gateway.login()).status == 200
    data = await gateway.enable()
    assert (await gateway.post("/api/mfa/verify", {"token": current_code(data["secret"], gateway.clock)})).status == 200
    gateway.clock.advance(30)
    return str(data["secret"])


def device_cookie(gateway: Gateway) -> str | None:
    found = [cookie.value for cookie in gateway.client.session.cookie_jar if cookie.key == DEVICE]
    return found[0] if found else None


async def remembered(gateway: Gateway, secret: str) -> Any:
    answer = await gateway.post(
        "/api/mfa/challenge", {"token": current_code(secret, gateway.clock), "rememberDevice": True}
    )
    assert answer.status == 200, await answer.text()
    gateway.clock.advance(30)
    return answer


async def test_remember_device_on_the_api_lasts_as_long_as_a_rule_allows(make_gateway: GatewayFactory) -> None:
    """``rememberDevice: true`` on api/mfa/challenge sets the device cookie for the longest age a rule remembers
    (7 days here), and the device is listed as this one, with its label and times."""
    gateway = await make_gateway(REMEMBERING)
    secret = await enrolled(gateway)
    answer = await remembered(gateway, secret)
    assert answer.cookies[DEVICE]["max-age"] == str(7 * DAY)
    assert answer.cookies[DEVICE]["httponly"] and answer.cookies[DEVICE]["secure"]
    listed = await gateway.client.get(gateway.prefix + "/api/devices")
    [device] = (await listed.json())["data"]["devices"]
    assert device["current"] is True and device["label"] == "A browser"
    assert device["expiresAt"] - device["createdAt"] == 7 * DAY and device["lastUsedAt"] is None


async def test_without_a_remembering_rule_the_wish_is_refused_before_the_code(make_gateway: GatewayFactory) -> None:
    """No rule remembers devices: ``rememberDevice: true`` is 400 remember_device_off and the code is not spent
    (the same code then works); a non-boolean is 400 invalid_field."""
    gateway = await make_gateway()
    secret = await enrolled(gateway)
    code = current_code(secret, gateway.clock)
    refused = await gateway.post("/api/mfa/challenge", {"token": code, "rememberDevice": True})
    assert refused.status == 400 and (await refused.json())["code"] == "remember_device_off"
    odd = await gateway.post("/api/mfa/challenge", {"token": code, "rememberDevice": "yes"})
    assert odd.status == 400 and (await odd.json())["code"] == "invalid_field"
    assert (await gateway.post("/api/mfa/challenge", {"token": code})).status == 200
    assert device_cookie(gateway) is None


async def test_devices_are_managed_with_a_real_second_factor_only(make_gateway: GatewayFactory) -> None:
    """Anonymous: 401. A password session, or one a remembered device stepped up: 403 mfa_required (a stolen device
    cookie and password cannot forget or list devices). With a code: listed, and forgotten by id."""
    gateway = await make_gateway(REMEMBERING)
    secret = await enrolled(gateway)
    await remembered(gateway, secret)
    device = device_cookie(gateway)
    assert device is not None
    [listed] = (await (await gateway.client.get(gateway.prefix + "/api/devices")).json())["data"]["devices"]

    gateway.client.session.cookie_jar.clear()
    assert (await gateway.client.get(gateway.prefix + "/api/devices")).status == 401
    await gateway.login()  # password: mfaRequired, a pending sign-in
    gateway.client.session.cookie_jar.update_cookies({DEVICE: device})
    page = await gateway.client.get(
        gateway.prefix + "/challenge?rd=/app", headers={"Accept": "text/html"}, allow_redirects=False
    )
    assert page.status == 303 and page.headers["Location"] == "/app"  # the code skipped
    for request in (
        gateway.client.get(gateway.prefix + "/api/devices"),
        gateway.client.delete(gateway.prefix + f"/api/devices/{listed['id']}"),
    ):
        answer = await request
        assert answer.status == 403 and (await answer.json())["code"] == "mfa_required"

    stepped = await gateway.post("/api/mfa/challenge", {"token": current_code(secret, gateway.clock)})
    assert stepped.status == 200
    forgotten = await gateway.client.delete(gateway.prefix + f"/api/devices/{listed['id']}")
    assert forgotten.status == 200 and (await forgotten.json())["data"]["device"]["id"] == listed["id"]
    assert forgotten.cookies[DEVICE].value == ""  # this browser's cookie expired with it
    again = await gateway.client.delete(gateway.prefix + f"/api/devices/{listed['id']}")
    assert again.status == 404 and (await again.json())["code"] == "device_not_found"


async def test_another_users_device_cannot_be_forgotten_by_id(make_gateway: GatewayFactory) -> None:
    """bob, with MFA, naming alice's device id: 404, and alice's device stays."""
    gateway = await make_gateway(REMEMBERING)
    await remembered(gateway, await enrolled(gateway))
    [alices] = await gateway.runtime.devices.grants("alice")
    gateway.client.session.cookie_jar.clear()
    assert (await gateway.login(username="bob")).status == 200
    bob = await gateway.enable()
    assert (await gateway.post("/api/mfa/verify", {"token": current_code(bob["secret"], gateway.clock)})).status == 200
    refused = await gateway.client.delete(gateway.prefix + f"/api/devices/{alices.id}")
    assert refused.status == 404
    assert await gateway.runtime.devices.grants("alice") == [alices]


async def test_sign_out_everywhere_needs_a_sign_in_and_ends_sessions_and_devices(make_gateway: GatewayFactory) -> None:
    """``everywhere: true`` without a signed-in user is 401; with one, every session and device of the user ends:
    the old session cookie is refused and the device is no longer listed."""
    gateway = await make_gateway(REMEMBERING)
    await remembered(gateway, await enrolled(gateway))
    jar = gateway.client.session.cookie_jar
    kept = {cookie.key: cookie.value for cookie in jar}
    jar.clear()
    anonymous = await gateway.post("/api/logout", {"everywhere": True})
    assert anonymous.status == 401
    jar.update_cookies(kept)
    out = await gateway.post("/api/logout", {"everywhere": True})
    assert out.status == 200 and (await out.json())["message"] == "Signed out everywhere"
    assert await gateway.runtime.devices.grants("alice") == []
    jar.update_cookies(kept)
    assert (await gateway.client.get(gateway.prefix + "/api/mfa/status")).status == 401
