"""Contract suite for ``CredentialStore`` (WebAuthn credentials), on SQLite (a file) and a real PostgreSQL server.

The rules that carry security: a credential id is registered once across every user; a user's list holds only
their own credentials; the signature counter is compare-and-set, so two assertions reporting one count cannot both
pass, on any number of replicas; the per-user limit holds under concurrent registrations.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from mfa_gateway.adapters.sql.store import SqlEnrollmentStore
from mfa_gateway.core.errors import CredentialExists, TooManyCredentials
from mfa_gateway.core.model import WebAuthnCredential
from tests.contracts.conftest import Database, store_at_revision

NOW = 1_700_000_000.0


def key(user_id: str = "alice", tag: bytes = b"k1", **changes: object) -> WebAuthnCredential:
    credential = WebAuthnCredential(
        credential_id=b"\x00id-" + tag + b"\xff",
        user_id=user_id,
        user_handle=b"handle-" + user_id.encode(),
        public_key=b"\xa5cose-" + tag,
        sign_count=0,
        transports=("nfc", "usb"),
        backup_eligible=True,
        backup_state=False,
        aaguid="ee882879-721c-4913-9775-3dfcce97072a",
        name=f"Key {tag.decode()}",
        created_at=NOW,
    )
    return replace(credential, **changes)  # type: ignore[arg-type]


async def test_a_credential_round_trips_every_field(store: SqlEnrollmentStore) -> None:
    """What add_credential keeps, get_credential and credentials_of return unchanged (bytes, flags, transports)."""
    stored = key(sign_count=7, last_used_at=NOW + 5)
    await store.add_credential(stored, limit=10)
    assert await store.get_credential("alice", stored.credential_id) == stored
    assert await store.credentials_of("alice") == [stored]
    assert await store.count_credentials("alice") == 1


async def test_a_users_credentials_are_theirs_alone(store: SqlEnrollmentStore) -> None:
    """credentials_of lists only the user's own, oldest first; another user's id is not found for this user, and
    no rename or delete reaches it."""
    first, second = key(tag=b"a"), key(tag=b"b", created_at=NOW + 1)
    bobs = key("bob", tag=b"c")
    for credential in (second, bobs, first):
        await store.add_credential(credential, limit=10)
    assert await store.credentials_of("alice") == [first, second]
    assert await store.get_credential("alice", bobs.credential_id) is None
    assert await store.rename_credential("alice", bobs.credential_id, "mine") is False
    assert await store.delete_credential("alice", bobs.credential_id) is False
    assert await store.get_credential("bob", bobs.credential_id) == bobs
    assert await store.credentials_of("nobody") == []


async def test_a_credential_is_found_by_its_users_handle_only(store: SqlEnrollmentStore) -> None:
    """credential_by_handle (passkey sign-in) finds a credential only with its own user's handle: another user's
    handle with this id, or this handle with another user's id, finds nothing."""
    alices, bobs = key(tag=b"a"), key("bob", tag=b"b")
    for credential in (alices, bobs):
        await store.add_credential(credential, limit=10)
    assert await store.credential_by_handle(alices.user_handle, alices.credential_id) == alices
    assert await store.credential_by_handle(bobs.user_handle, alices.credential_id) is None
    assert await store.credential_by_handle(alices.user_handle, bobs.credential_id) is None
    assert await store.credential_by_handle(b"unknown", alices.credential_id) is None


async def test_a_credential_id_is_registered_once_across_users(store: SqlEnrollmentStore) -> None:
    """The same credential id cannot be added twice, by the same user or by another (it names one private key):
    CredentialExists, and the first registration is unchanged."""
    await store.add_credential(key(), limit=10)
    with pytest.raises(CredentialExists):
        await store.add_credential(key(name="again"), limit=10)
    with pytest.raises(CredentialExists):
        await store.add_credential(key("bob", name="stolen id"), limit=10)
    assert await store.credentials_of("bob") == []
    assert (await store.credentials_of("alice"))[0].name == "Key k1"


async def test_the_limit_per_user_holds(store: SqlEnrollmentStore) -> None:
    """A user at the limit gets TooManyCredentials; another user is not affected."""
    await store.add_credential(key(tag=b"a"), limit=2)
    await store.add_credential(key(tag=b"b"), limit=2)
    with pytest.raises(TooManyCredentials):
        await store.add_credential(key(tag=b"c"), limit=2)
    await store.add_credential(key("bob", tag=b"d"), limit=2)
    assert await store.count_credentials("alice") == 2


async def test_concurrent_registrations_on_two_replicas_never_pass_the_limit(database: Database) -> None:
    """Ten registrations for one user at once, split over two replicas, with a limit of 3: exactly 3 are kept,
    the others refused with TooManyCredentials."""
    first, second = database.store(), database.store()
    await first.migrate()
    results = await asyncio.gather(
        *((first if i % 2 else second).add_credential(key(tag=f"c{i}".encode()), limit=3) for i in range(10)),
        return_exceptions=True,
    )
    assert sum(result is None for result in results) == 3
    assert all(result is None or isinstance(result, TooManyCredentials) for result in results)
    assert await second.count_credentials("alice") == 3


async def test_the_counter_only_moves_forward(store: SqlEnrollmentStore) -> None:
    """record_assertion stores a count greater than the stored one (with the backup state and last use), refuses an
    equal or lower one, and refuses an unknown credential or another user's."""
    await store.add_credential(key(sign_count=5), limit=10)
    credential_id = key().credential_id
    assert await store.record_assertion("alice", credential_id, sign_count=6, backup_state=True, now=NOW + 1)
    for stale in (6, 5, 0):
        assert not await store.record_assertion("alice", credential_id, sign_count=stale, backup_state=False, now=NOW)
    assert not await store.record_assertion("bob", credential_id, sign_count=99, backup_state=False, now=NOW)
    assert not await store.record_assertion("alice", b"unknown", sign_count=99, backup_state=False, now=NOW)
    stored = await store.get_credential("alice", credential_id)
    assert stored is not None
    assert (stored.sign_count, stored.backup_state, stored.last_used_at) == (6, True, NOW + 1)


async def test_an_authenticator_without_a_counter_stays_at_zero(store: SqlEnrollmentStore) -> None:
    """Two zeros have nothing to compare (most passkeys): each use is recorded; but once a count was seen, a 0 is
    refused."""
    await store.add_credential(key(), limit=10)
    credential_id = key().credential_id
    for at in (NOW + 1, NOW + 2):
        assert await store.record_assertion("alice", credential_id, sign_count=0, backup_state=False, now=at)
    assert await store.record_assertion("alice", credential_id, sign_count=1, backup_state=False, now=NOW + 3)
    assert not await store.record_assertion("alice", credential_id, sign_count=0, backup_state=False, now=NOW + 4)


async def test_two_replicas_recording_one_count_have_one_winner(database: Database) -> None:
    """20 concurrent record_assertion calls reporting the same count (a cloned key, or one answer replayed), split
    over two replicas: exactly one succeeds."""
    first, second = database.store(), database.store()
    await first.migrate()
    await first.add_credential(key(sign_count=10), limit=10)
    credential_id = key().credential_id
    results = await asyncio.gather(
        *(
            (first if i % 2 else second).record_assertion(
                "alice", credential_id, sign_count=11, backup_state=False, now=NOW + i
            )
            for i in range(20)
        )
    )
    assert results.count(True) == 1


async def test_rename_and_delete(store: SqlEnrollmentStore) -> None:
    """rename changes only the name; delete removes one credential; delete_credentials removes all of a user's and
    says how many."""
    await store.add_credential(key(tag=b"a"), limit=10)
    await store.add_credential(key(tag=b"b"), limit=10)
    await store.add_credential(key("bob", tag=b"c"), limit=10)
    assert await store.rename_credential("alice", key(tag=b"a").credential_id, "Blue key")
    renamed = await store.get_credential("alice", key(tag=b"a").credential_id)
    assert renamed == replace(key(tag=b"a"), name="Blue key")
    assert await store.delete_credential("alice", key(tag=b"b").credential_id)
    assert not await store.delete_credential("alice", key(tag=b"b").credential_id)
    assert await store.delete_credentials("alice") == 1
    assert await store.delete_credentials("alice") == 0
    assert await store.count_credentials("bob") == 1


async def test_a_0003_database_upgrades_with_an_empty_credentials_table(database: Database) -> None:
    """A database as the previous release left it (revision 0003) migrates to 0004: its enrollments stay, and the
    credentials table starts empty and usable."""
    store = await store_at_revision(database, "0003", NOW)
    await store.migrate()
    assert (await store.get_enrollment("alice")) is not None
    assert await store.credentials_of("alice") == []
    await store.add_credential(key(), limit=10)
    assert await store.count_credentials("alice") == 1


async def test_credential_counts_page_through_users_in_order(store: SqlEnrollmentStore) -> None:
    """credential_counts names each user holding credentials once, with how many, by user id, a page at a time
    after the last user of the page before (as list_enrollments pages enrollments)."""
    for user, tag in (("carol", b"c1"), ("alice", b"a1"), ("carol", b"c2"), ("bob", b"b1"), ("carol", b"c3")):
        await store.add_credential(key(user, tag=tag), limit=10)
    assert await store.credential_counts(None, 10) == [("alice", 1), ("bob", 1), ("carol", 3)]
    assert await store.credential_counts(None, 2) == [("alice", 1), ("bob", 1)]
    assert await store.credential_counts("bob", 2) == [("carol", 3)]
    assert await store.credential_counts("carol", 2) == []
    assert await store.credential_counts(None, 0) == []
