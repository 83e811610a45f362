"""Passkey sign-in (both factors at once) on a real runtime (in-memory state, SQLite), with the software
authenticator and real py_webauthn verification.

Pinned: the answer's userHandle and credential id must name one stored credential of one user (an unknown handle,
or another user's credential under this handle, is refused); user verification is required even where the setting
only prefers it; a ceremony answers once; success signs in with ``pin`` and ``hwk``, so the session has MFA and a
phishing-resistant method from now; failures are audited as ``login.passkey`` with a reason and count towards the
user's and the address's limits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mfa_gateway.adapters.audit import MemoryAudit
from mfa_gateway.core import methods
from mfa_gateway.core.errors import CeremonyExpired, InvalidWebAuthnResponse, LockedOut
from mfa_gateway.runtime import Runtime
from mfa_gateway.service.mfa import Caller
from mfa_gateway.service.webauthn import WebAuthnService
from tests.helpers.gateway import FakeClock, add_user, make_runtime, make_settings
from tests.helpers.webauthn import SoftAuthenticator

ORIGIN = "https://app.example.com"
RP_ID = "example.com"
ADDRESS = "192.0.2.10"


@pytest.fixture
async def built(tmp_path: Path) -> AsyncIterator[tuple[Runtime, MemoryAudit, FakeClock]]:
    clock = FakeClock()
    # user_verification preferred (the default): passkey sign-in must require it all the same
    settings = make_settings(tmp_path, {"webauthn": {"origins": [ORIGIN], "rp_id": RP_ID}})
    add_user(settings, "alice", "alice-password")
    add_user(settings, "bob", "bob-password")
    runtime, audit = make_runtime(settings, clock)
    await runtime.store.migrate()
    yield runtime, audit, clock
    await runtime.close()


@pytest.fixture
def service(built: tuple[Runtime, MemoryAudit, FakeClock]) -> WebAuthnService:
    assert built[0].webauthn is not None
    return built[0].webauthn


async def register(service: WebAuthnService, user: str, key: SoftAuthenticator) -> None:
    caller = Caller(user, ADDRESS)
    started = await service.start_registration(caller, binding="ff:s", name="Passkey", unenrolled="enroll")
    response = key.create(started.options)
    await service.finish_registration(
        caller, binding="ff:s", ceremony_id=started.ceremony_id, response=response, unenrolled="enroll"
    )


def known(user_id: str) -> bool:
    return user_id in ("alice", "bob")


async def passkey(service: WebAuthnService, key: SoftAuthenticator, **answer: Any) -> str:
    started = await service.start_passkey()
    response = key.get(started.options, **answer)
    return await service.verify_passkey(ADDRESS, ceremony_id=started.ceremony_id, response=response, known=known)


def events(audit: MemoryAudit) -> list[tuple[str, str, dict[str, str]]]:
    return [(e.result, e.user_id or "", dict(e.detail)) for e in audit.events if e.event == "login.passkey"]


async def test_a_passkey_signs_in_with_both_factors(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """The options name no credential and require user verification; the answer finds alice by its handle; the
    session has methods pin and hwk, MFA and a phishing-resistant method now, and the JWT says so."""
    runtime, audit, clock = built
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(service, "alice", key)
    started = await service.start_passkey()
    assert started.options["allowCredentials"] == []
    assert started.options["userVerification"] == "required"
    response = key.get(started.options)
    user = await service.verify_passkey(ADDRESS, ceremony_id=started.ceremony_id, response=response, known=known)
    assert user == "alice"
    assert runtime.login is not None
    signed_in = await runtime.login.signed_in_with_passkey(user)
    session = signed_in.session
    assert session.methods == ("pin", "hwk")
    assert methods.has_mfa(session.methods) and methods.phishing_resistant(session.methods)
    assert session.mfa_time == clock.now and session.phishing_resistant_time == clock.now
    assert signed_in.mfa_enabled
    assert events(audit) == [("success", "alice", {"method": "passkey"})]


async def test_registration_asks_for_a_discoverable_credential_with_a_random_handle(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """The creation options ask for a resident key (preferred by default) and carry a random 32-byte user id, never
    the user name; a second key of the user gets the same handle, so either maps back to her."""
    first, second = SoftAuthenticator(ORIGIN, RP_ID), SoftAuthenticator(ORIGIN, RP_ID)
    started = await service.start_registration(Caller("alice", ADDRESS), binding="ff:s", name="K", unenrolled="enroll")
    assert started.options["authenticatorSelection"]["residentKey"] == "preferred"
    await register(service, "alice", first)
    assert first.user_handle is not None and len(first.user_handle) == 32 and b"alice" not in first.user_handle
    recent = Caller("alice", ADDRESS, built[2].now)
    options = (await service.start_registration(recent, binding="ff:s", name="K2", unenrolled="enroll")).options
    assert second.create(options) and second.user_handle == first.user_handle


async def test_without_user_verification_a_passkey_is_refused(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """An answer whose authenticator did not verify the user (presence alone) signs nobody in, though the setting
    only prefers verification: a touch is one factor, not two."""
    _, audit, _ = built
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(service, "alice", key)
    with pytest.raises(InvalidWebAuthnResponse) as refused:
        await passkey(service, key, verified=False)
    assert refused.value.reason == "user_verification"
    assert events(audit) == [("failure", "alice", {"method": "passkey", "reason": "user_verification"})]


async def test_an_unknown_user_handle_is_refused(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """A handle no user has, or none at all (a credential that is not discoverable), finds nobody."""
    _, audit, _ = built
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(service, "alice", key)
    with pytest.raises(InvalidWebAuthnResponse) as refused:
        await passkey(service, key, user_handle=b"\x01" * 32)
    assert refused.value.reason == "unknown_credential"
    key.user_handle = None
    with pytest.raises(InvalidWebAuthnResponse):
        await passkey(service, key)
    assert [e[0:2] for e in events(audit)] == [("failure", ""), ("failure", "")]


async def test_a_passkey_of_a_user_gone_from_the_users_source_signs_nobody_in(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """bob's passkey still verifies, but bob is no longer a user: refused as an unknown credential, counted on the
    address alone and audited as a failure for nobody, never as bob's success."""
    runtime, audit, _ = built
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(service, "bob", key)
    assert runtime.login is not None
    started = await service.start_passkey()
    with pytest.raises(InvalidWebAuthnResponse) as refused:
        await service.verify_passkey(
            ADDRESS, ceremony_id=started.ceremony_id, response=key.get(started.options), known=lambda user: False
        )
    assert refused.value.reason == "unknown_credential"
    assert [e[0:2] for e in events(audit)] == [("failure", "")]
    assert runtime.login.knows("bob") and not runtime.login.knows("mallory")


async def test_another_users_credential_under_ones_handle_is_refused(service: WebAuthnService) -> None:
    """bob's credential sent with alice's handle (or the other way round) names no credential: the handle and
    the id must belong together."""
    alices, bobs = SoftAuthenticator(ORIGIN, RP_ID), SoftAuthenticator(ORIGIN, RP_ID)
    await register(service, "alice", alices)
    await register(service, "bob", bobs)
    with pytest.raises(InvalidWebAuthnResponse) as refused:
        await passkey(service, bobs, user_handle=alices.user_handle)
    assert refused.value.reason == "unknown_credential"
    assert await passkey(service, bobs) == "bob"


async def test_a_passkey_ceremony_answers_once_and_serves_nothing_else(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """The same answer sent twice passes once (the ceremony is taken); a second-factor ceremony of alice cannot
    serve a passkey sign-in, nor a passkey ceremony a second factor."""
    _, audit, _ = built
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(service, "alice", key)
    started = await service.start_passkey()
    response = key.get(started.options)
    assert (
        await service.verify_passkey(ADDRESS, ceremony_id=started.ceremony_id, response=response, known=known)
        == "alice"
    )
    with pytest.raises(CeremonyExpired):
        await service.verify_passkey(ADDRESS, ceremony_id=started.ceremony_id, response=response, known=known)
    assert events(audit)[-1] == ("refused", "", {"method": "passkey", "reason": "challenge_unknown"})
    second = await service.start_authentication(Caller("alice", ADDRESS), binding="ff:s")
    with pytest.raises(CeremonyExpired):
        await service.verify_passkey(
            ADDRESS, ceremony_id=second.ceremony_id, response=key.get(second.options), known=known
        )
    third = await service.start_passkey()
    with pytest.raises(CeremonyExpired):
        await service.verify(
            Caller("", ADDRESS), binding="", ceremony_id=third.ceremony_id, response=key.get(third.options)
        )


async def test_failures_count_towards_the_users_and_the_addresss_limits(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """Wrong answers for alice's passkey lock her out (the lockout shared with codes), and unknown handles count
    against the address: enough of them lock the address out of passkey sign-in too."""
    runtime, _, _ = built
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(service, "alice", key)
    limit = runtime.settings.limits.user.max_failures
    for _ in range(limit):
        with pytest.raises(InvalidWebAuthnResponse):
            await passkey(service, key, verified=False)
    with pytest.raises(LockedOut):
        await passkey(service, key)
    stranger = SoftAuthenticator(ORIGIN, RP_ID, user_handle=b"\x02" * 32)
    unknown = 0
    for _ in range(runtime.settings.limits.ip.max_failures):
        try:
            await passkey(service, stranger)
        except InvalidWebAuthnResponse:
            unknown += 1
        except LockedOut:
            break
    assert unknown == runtime.settings.limits.ip.max_failures - limit  # alice's failures counted on the address
    with pytest.raises(LockedOut):
        await passkey(service, stranger)
