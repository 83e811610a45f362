"""The WebAuthn use cases on a real runtime (in-memory state, SQLite), with the software authenticator.

Each rule that keeps a security key a second factor is pinned here, with real py_webauthn verification: a
challenge answers one ceremony of one user, one first factor and one purpose; a look-alike origin, a missing user
verification or a counter that did not move forward is refused (the last audited apart); failures count towards the
same lockout as wrong codes; an enrolled user adds or removes a factor only with a recent or fresh second factor; a
user whose only factor is a key is enrolled everywhere that decides it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mfa_gateway.adapters.audit import MemoryAudit
from mfa_gateway.core.errors import (
    CeremonyExpired,
    EnrollmentDisabled,
    FreshSecondFactorRequired,
    InvalidWebAuthnResponse,
    LockedOut,
    NotEnrolled,
    SecondFactorRequired,
    SignCounterRegressed,
    TooManyCredentials,
)
from mfa_gateway.core.model import WebAuthnCredential
from mfa_gateway.runtime import Runtime
from mfa_gateway.service.login import MfaRequired
from mfa_gateway.service.mfa import ADD_FACTOR_WITHIN, Caller
from mfa_gateway.service.webauthn import WebAuthnService
from tests.helpers.gateway import FakeClock, add_user, current_code, make_runtime, make_settings
from tests.helpers.webauthn import SoftAuthenticator

ORIGIN = "https://app.example.com"
RP_ID = "example.com"
SESSION = "ff:session-1"


@pytest.fixture
async def built(tmp_path: Path) -> AsyncIterator[tuple[Runtime, MemoryAudit, FakeClock]]:
    clock = FakeClock()
    settings = make_settings(tmp_path, {"webauthn": {"origins": [ORIGIN], "rp_id": RP_ID, "max_credentials": 3}})
    runtime, audit = make_runtime(settings, clock)
    await runtime.store.migrate()
    yield runtime, audit, clock
    await runtime.close()


@pytest.fixture
def service(built: tuple[Runtime, MemoryAudit, FakeClock]) -> WebAuthnService:
    assert built[0].webauthn is not None
    return built[0].webauthn


def alice(clock: FakeClock, *, mfa: bool = False) -> Caller:
    return Caller("alice", "192.0.2.10", clock.now if mfa else None)


async def register(
    service: WebAuthnService, caller: Caller, key: SoftAuthenticator, name: str = "Blue key", binding: str = SESSION
) -> WebAuthnCredential:
    started = await service.start_registration(caller, binding=binding, name=name, unenrolled="enroll")
    registered = await service.finish_registration(
        caller,
        binding=binding,
        ceremony_id=started.ceremony_id,
        response=key.create(started.options),
        unenrolled="enroll",
    )
    return registered.credential


async def sign_in(
    service: WebAuthnService, caller: Caller, key: SoftAuthenticator, binding: str = SESSION, **answer: Any
) -> Any:
    started = await service.start_authentication(caller, binding=binding)
    return await service.verify(
        caller, binding=binding, ceremony_id=started.ceremony_id, response=key.get(started.options, **answer)
    )


def events(audit: MemoryAudit, name: str) -> list[tuple[str, dict[str, str]]]:
    return [(event.result, dict(event.detail)) for event in audit.events if event.event == name]


async def test_a_first_key_enrolls_the_user_and_signs_in(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """With no second factor, a first factor alone registers a key (trust on first use, as for TOTP): the
    registration is an enrollment, the user is enrolled, and the key signs in as method hwk."""
    runtime, audit, clock = built
    key = SoftAuthenticator(ORIGIN, RP_ID)
    started = await service.start_registration(alice(clock), binding=SESSION, name="  Blue key ", unenrolled="enroll")
    registered = await service.finish_registration(
        alice(clock),
        binding=SESSION,
        ceremony_id=started.ceremony_id,
        response=key.create(started.options),
        unenrolled="enroll",
    )
    assert registered.enrolled and registered.credential.name == "Blue key"
    assert await runtime.mfa.is_enrolled("alice")
    status = await runtime.mfa.status("alice")
    assert (status.enrolled, status.active, status.totp, status.webauthn) == (True, True, False, 1)
    verified = await sign_in(service, alice(clock), key)
    assert verified.method == "hwk"
    assert events(audit, "mfa.verify") == [("success", {"method": "webauthn"})]
    assert events(audit, "mfa.webauthn.register")[0][0] == "success"


async def test_an_enrolled_user_adds_a_key_only_with_a_recent_mfa(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """Once enrolled, a first factor alone cannot add a key (mfa_required), nor an MFA older than 15 minutes
    (fresh_mfa_required); a recent MFA can. So a stolen password, or an old stolen session, plants no key."""
    _, _, clock = built
    await register(service, alice(clock), SoftAuthenticator(ORIGIN, RP_ID))
    with pytest.raises(SecondFactorRequired):
        await register(service, alice(clock), SoftAuthenticator(ORIGIN, RP_ID))
    stale = Caller("alice", None, clock.now - ADD_FACTOR_WITHIN - 1)
    with pytest.raises(FreshSecondFactorRequired):
        await register(service, stale, SoftAuthenticator(ORIGIN, RP_ID))
    clock.advance(1)
    await register(service, alice(clock, mfa=True), SoftAuthenticator(ORIGIN, RP_ID), "Spare")
    assert [c.name for c in await service.credentials("alice")] == ["Blue key", "Spare"]


async def test_the_right_to_add_a_key_is_judged_again_when_it_is_verified(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """Options taken while unenrolled, then an authenticator app enrolled meanwhile (another tab): finishing the
    first-factor-only registration is refused."""
    runtime, _, clock = built
    started = await service.start_registration(alice(clock), binding=SESSION, name="Key", unenrolled="enroll")
    start = await runtime.mfa.start_enrollment(alice(clock))
    await runtime.mfa.activate(alice(clock), current_code(start.secret, clock))
    with pytest.raises(SecondFactorRequired):
        await service.finish_registration(
            alice(clock),
            binding=SESSION,
            ceremony_id=started.ceremony_id,
            response=SoftAuthenticator(ORIGIN, RP_ID).create(started.options),
            unenrolled="enroll",
        )
    assert await service.credentials("alice") == []


async def test_self_enrollment_off_means_no_first_key(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """With enrollment.unenrolled: deny, a user without a factor cannot register a key either."""
    with pytest.raises(EnrollmentDisabled):
        await service.start_registration(alice(built[2]), binding=SESSION, name="Key", unenrolled="deny")


async def test_a_challenge_answers_one_ceremony_once(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """The same answer sent twice: the second finds its challenge taken (webauthn_challenge_expired), and an
    expired challenge is refused the same way."""
    _, audit, clock = built
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(service, alice(clock), key)
    started = await service.start_authentication(alice(clock), binding=SESSION)
    answer = key.get(started.options)
    await service.verify(alice(clock), binding=SESSION, ceremony_id=started.ceremony_id, response=answer)
    with pytest.raises(CeremonyExpired):
        await service.verify(alice(clock), binding=SESSION, ceremony_id=started.ceremony_id, response=answer)
    late = await service.start_authentication(alice(clock), binding=SESSION)
    clock.advance(service.rp.challenge_ttl)
    with pytest.raises(CeremonyExpired):
        await service.verify(
            alice(clock), binding=SESSION, ceremony_id=late.ceremony_id, response=key.get(late.options)
        )
    assert ("refused", {"method": "webauthn", "reason": "challenge_unknown"}) in events(
        audit, "mfa.webauthn.authenticate"
    )


async def test_a_ceremony_of_another_user_session_or_purpose_verifies_nothing(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """alice's challenge cannot verify bob's assertion (nor alice's own once bob spent it), a challenge issued to
    one first factor does not serve another, and a registration challenge does not sign in."""
    runtime, _, clock = built
    alices, bobs = SoftAuthenticator(ORIGIN, RP_ID), SoftAuthenticator(ORIGIN, RP_ID)
    await register(service, alice(clock), alices)
    bob = Caller("bob", "192.0.2.11")
    await register(service, bob, bobs, "Bob's", binding="ff:bob")
    started = await service.start_authentication(alice(clock), binding=SESSION)
    with pytest.raises(CeremonyExpired):
        await service.verify(bob, binding="ff:bob", ceremony_id=started.ceremony_id, response=bobs.get(started.options))
    with pytest.raises(CeremonyExpired):  # taken by bob's attempt: gone for alice too
        await service.verify(
            alice(clock), binding=SESSION, ceremony_id=started.ceremony_id, response=alices.get(started.options)
        )
    other_session = await service.start_authentication(alice(clock), binding="ff:session-2")
    with pytest.raises(CeremonyExpired):
        await service.verify(
            alice(clock),
            binding=SESSION,
            ceremony_id=other_session.ceremony_id,
            response=alices.get(other_session.options),
        )
    registration = await service.start_registration(
        alice(clock, mfa=True), binding=SESSION, name="x", unenrolled="enroll"
    )
    with pytest.raises(CeremonyExpired):
        await service.verify(
            alice(clock),
            binding=SESSION,
            ceremony_id=registration.ceremony_id,
            response=alices.get(registration.options),
        )
    assert await runtime.state.take_ceremony(started.ceremony_id, clock.now) is None


async def test_another_users_key_is_an_unknown_credential(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """bob's key answering alice's own ceremony is refused: the store looks credentials up by user and id."""
    _, audit, clock = built
    await register(service, alice(clock), SoftAuthenticator(ORIGIN, RP_ID))
    bobs = SoftAuthenticator(ORIGIN, RP_ID)
    await register(service, Caller("bob", None), bobs, "Bob's", binding="ff:bob")
    with pytest.raises(InvalidWebAuthnResponse) as refused:
        await sign_in(service, alice(clock), bobs)
    assert refused.value.reason == "unknown_credential"
    assert events(audit, "mfa.verify")[-1] == ("failure", {"method": "webauthn", "reason": "unknown_credential"})


async def test_a_look_alike_origin_is_refused_and_counted(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """An assertion made on a phishing page's origin is refused (reason origin, audited), and five such failures
    lock the user out: the next assertion, even a genuine one, is refused."""
    _, audit, clock = built
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(service, alice(clock), key)
    for _ in range(5):
        with pytest.raises(InvalidWebAuthnResponse) as refused:
            await sign_in(service, alice(clock), key, origin="https://app-example.com")
        assert refused.value.reason == "origin"
    with pytest.raises(LockedOut):
        await sign_in(service, alice(clock), key)
    assert events(audit, "mfa.verify")[0] == ("failure", {"method": "webauthn", "reason": "origin"})


async def test_wrong_codes_and_wrong_assertions_share_one_lockout(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """Three wrong TOTP codes and two forged assertions lock the user: guesses cannot be spread over methods."""
    runtime, _, clock = built
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(service, alice(clock), key)
    start = await runtime.mfa.start_enrollment(alice(clock, mfa=True))
    await runtime.mfa.activate(alice(clock), current_code(start.secret, clock))
    for _ in range(3):
        with pytest.raises(Exception, match="Invalid MFA token"):
            await runtime.mfa.verify(alice(clock), "000000" if current_code(start.secret, clock) != "000000" else "1")
    for _ in range(2):
        with pytest.raises(InvalidWebAuthnResponse):
            await sign_in(service, alice(clock), key, rp_id="evil.test")
    with pytest.raises(LockedOut):
        await sign_in(service, alice(clock), key)


async def test_a_counter_that_went_backwards_is_refused_and_audited(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """A key whose counter was 10 answering with 7 (a clone, or a replay) is refused with
    webauthn_counter_regressed and an mfa.webauthn.counter_regressed event naming the credential; the stored
    counter stays; the genuine key still signs in."""
    _, audit, clock = built
    key = SoftAuthenticator(ORIGIN, RP_ID, counter=9)
    credential = await register(service, alice(clock), key)
    await sign_in(service, alice(clock), key)  # counter 10
    with pytest.raises(SignCounterRegressed):
        await sign_in(service, alice(clock), key, counter=7)
    [(result, detail)] = events(audit, "mfa.webauthn.counter_regressed")
    assert result == "refused" and detail["stored"] == "10" and detail["credential"]
    assert events(audit, "mfa.verify")[-1] == ("failure", {"method": "webauthn", "reason": "counter_regressed"})
    stored = (await service.credentials("alice"))[0]
    assert stored.credential_id == credential.credential_id and stored.sign_count == 10
    assert (await sign_in(service, alice(clock), key)).method == "hwk"


async def test_a_passkey_without_a_counter_signs_in_again_and_again(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """Many passkeys report 0 for ever: with both sides 0 there is nothing to compare, and each use is recorded."""
    _, _, clock = built
    key = SoftAuthenticator(ORIGIN, RP_ID, counter_step=0, backup_eligible=True, backed_up=True)
    await register(service, alice(clock), key)
    for _ in range(3):
        clock.advance(60)
        assert (await sign_in(service, alice(clock), key)).method == "hwk"
    stored = (await service.credentials("alice"))[0]
    assert (stored.sign_count, stored.last_used_at, stored.backup_eligible) == (0, clock.now, True)


async def test_user_verification_required_refuses_a_key_without_it(tmp_path: Path) -> None:
    """With webauthn.user_verification: required, an answer without the UV flag is refused (reason
    user_verification) at sign-in, and a key that cannot verify the user is not registered."""
    clock = FakeClock()
    settings = make_settings(
        tmp_path, {"webauthn": {"origins": [ORIGIN], "rp_id": RP_ID, "user_verification": "required"}}
    )
    runtime, _ = make_runtime(settings, clock)
    await runtime.store.migrate()
    try:
        service = runtime.webauthn
        assert service is not None
        key = SoftAuthenticator(ORIGIN, RP_ID)
        await register(service, alice(clock), key)
        with pytest.raises(InvalidWebAuthnResponse) as refused:
            await sign_in(service, alice(clock), key, verified=False)
        assert refused.value.reason == "user_verification"
        with pytest.raises(InvalidWebAuthnResponse):
            await register(service, alice(clock, mfa=True), SoftAuthenticator(ORIGIN, RP_ID, user_verifying=False))
    finally:
        await runtime.close()


async def test_removing_a_key_needs_a_fresh_second_factor(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """remove runs the proof first: a failing proof removes nothing; an assertion of the key itself is proof
    enough. Removing the last factor says none is left (MFA is then off for the user)."""
    runtime, audit, clock = built
    key, spare = SoftAuthenticator(ORIGIN, RP_ID), SoftAuthenticator(ORIGIN, RP_ID)
    first = await register(service, alice(clock), key)
    second = await register(service, alice(clock, mfa=True), spare, "Spare")

    async def wrong() -> None:
        await sign_in(service, alice(clock), key, rp_id="evil.test")

    with pytest.raises(InvalidWebAuthnResponse):
        await service.remove(alice(clock), second.credential_id, wrong)
    assert len(await service.credentials("alice")) == 2

    async def with_spare() -> object:
        return await sign_in(service, alice(clock), spare)

    removed = await service.remove(alice(clock), second.credential_id, with_spare)
    assert removed.factors_left and removed.credential.name == "Spare"

    async def with_key() -> object:
        return await sign_in(service, alice(clock), key)

    last = await service.remove(alice(clock), first.credential_id, with_key)
    assert not last.factors_left and not await runtime.mfa.is_enrolled("alice")
    assert [result for result, _ in events(audit, "mfa.webauthn.remove")] == ["success", "success"]


async def test_the_limit_per_user(built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService) -> None:
    """With max_credentials 3, the fourth registration is refused before its ceremony."""
    _, _, clock = built
    for n in range(3):
        await register(service, alice(clock, mfa=n > 0), SoftAuthenticator(ORIGIN, RP_ID), f"Key {n}")
    with pytest.raises(TooManyCredentials):
        await register(service, alice(clock, mfa=True), SoftAuthenticator(ORIGIN, RP_ID))


async def test_a_user_whose_only_factor_is_a_key_is_enrolled_everywhere(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """Holding only a key: the password login asks for MFA (even with an mfaToken, which cannot be right), a TOTP
    code is refused as totp_not_enrolled, and an authenticator app is added only with a recent MFA."""
    runtime, _, clock = built
    add_user(runtime.settings, "alice", "pw")
    await register(service, alice(clock), SoftAuthenticator(ORIGIN, RP_ID))
    assert runtime.login is not None
    assert isinstance(await runtime.login.login("alice", "pw", None, None), MfaRequired)
    assert isinstance(await runtime.login.login("alice", "pw", "123456", None), MfaRequired)
    with pytest.raises(NotEnrolled) as refused:
        await runtime.mfa.verify(alice(clock), "123456")
    assert refused.value.code == "totp_not_enrolled"
    with pytest.raises(SecondFactorRequired):
        await runtime.mfa.start_enrollment(alice(clock))
    await runtime.mfa.start_enrollment(alice(clock, mfa=True))


async def test_an_administrators_reset_removes_every_key(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """users reset (a lost key) deletes the user's credentials with the enrollment: the user is unenrolled."""
    runtime, audit, clock = built
    await register(service, alice(clock), SoftAuthenticator(ORIGIN, RP_ID))
    assert await runtime.mfa.reset("alice", via="cli")
    assert not await runtime.mfa.is_enrolled("alice") and await service.credentials("alice") == []
    assert events(audit, "mfa.reset")[-1][1]["webauthn"] == "1"


async def test_no_audit_event_holds_a_challenge_signature_or_key(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """Audit details of every WebAuthn outcome hold only fixed words, ids and counts: no challenge, signature,
    client data or public key."""
    _, audit, clock = built
    key = SoftAuthenticator(ORIGIN, RP_ID)
    await register(service, alice(clock), key)
    started = await service.start_authentication(alice(clock), binding=SESSION)
    answer = key.get(started.options)
    await service.verify(alice(clock), binding=SESSION, ceremony_id=started.ceremony_id, response=answer)
    secrets = [started.options["challenge"], answer["response"]["signature"], answer["response"]["clientDataJSON"]]
    for event in audit.events:
        text = repr(event)
        assert not any(secret in text for secret in secrets)


async def test_metrics_count_webauthn_by_method_with_bounded_labels(
    built: tuple[Runtime, MemoryAudit, FakeClock], service: WebAuthnService
) -> None:
    """The existing metrics count the new method: verifications by method="webauthn" and result, enrollments by
    webauthn_added / webauthn_removed; no user, credential id or name reaches a label."""
    runtime, _, clock = built
    key = SoftAuthenticator(ORIGIN, RP_ID)
    credential = await register(service, alice(clock), key, "Alice's blue key")
    await sign_in(service, alice(clock), key)
    with pytest.raises(InvalidWebAuthnResponse):
        await sign_in(service, alice(clock), key, origin="https://evil.test")

    async def proof() -> object:
        return await sign_in(service, alice(clock), key)

    await service.remove(alice(clock), credential.credential_id, proof)
    text = runtime.metrics.exposition().decode()
    assert 'mfa_gateway_mfa_verifications_total{method="webauthn",result="success"} 2.0' in text
    assert 'mfa_gateway_mfa_verifications_total{method="webauthn",result="failure"} 1.0' in text
    assert 'mfa_gateway_enrollments_total{change="webauthn_added"} 1.0' in text
    assert 'mfa_gateway_enrollments_total{change="webauthn_removed"} 1.0' in text
    assert "alice" not in text.lower() and "blue key" not in text.lower()
