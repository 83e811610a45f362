"""Contract suite for ``DeviceStore`` (remembered devices), on SQLite (a file) and a real PostgreSQL server.

The rules that carry security: a grant is found only by its token's hash and comes back as it was kept; a revoked
or expired grant is never used again, on any replica, and a use judged before a revocation cannot overtake it; one
user's revocations reach none of another user's grants; the per-user bound holds under concurrent grants.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from mfa_gateway.adapters.sql.store import SqlEnrollmentStore
from mfa_gateway.core import devices
from mfa_gateway.core.devices import DeviceGrant
from tests.contracts.conftest import Database, store_at_revision

NOW = 1_700_000_000.0
DAY = 86400.0


def grant(user_id: str = "alice", tag: str = "1", **changes: object) -> DeviceGrant:
    made = DeviceGrant(
        id=f"id-{user_id}-{tag}",
        user_id=user_id,
        factor="pwd",
        token_hash=devices.token_hash(f"token-{user_id}-{tag}".ljust(43, "x")),
        label="Firefox on Linux",
        created_at=NOW,
        expires_at=NOW + 30 * DAY,
    )
    return replace(made, **changes)  # type: ignore[arg-type]


async def test_a_grant_round_trips_and_is_found_only_by_its_hash(store: SqlEnrollmentStore) -> None:
    """What add_device_grant keeps comes back unchanged by its token hash; another hash finds nothing; the user's
    list holds their active grants, oldest first, and no one else's."""
    first, second = grant(tag="a"), grant(tag="b", created_at=NOW + 1, last_used_at=NOW + 2)
    bobs = grant("bob")
    for kept in (second, bobs, first):
        await store.add_device_grant(kept, keep=10, now=NOW + 3)
    assert await store.device_grant(first.token_hash) == first
    assert await store.device_grant(devices.token_hash(devices.new_token())) is None
    assert await store.device_grants_of("alice", NOW + 3) == [first, second]
    assert await store.device_grants_of("nobody", NOW + 3) == []


async def test_a_use_is_recorded_only_while_the_grant_is_active(store: SqlEnrollmentStore) -> None:
    """use_device_grant stamps last use on an active grant; an expired or revoked grant is not used (False) and
    stays as it was; an unknown id is False."""
    await store.add_device_grant(grant(), keep=10, now=NOW)
    assert await store.use_device_grant(grant().id, NOW + 60) is True
    used = await store.device_grant(grant().token_hash)
    assert used is not None and used.last_used_at == NOW + 60
    assert await store.use_device_grant(grant().id, NOW + 30 * DAY) is False  # its expiry
    assert await store.revoke_device_grant("alice", grant().id, NOW + 120) is True
    assert await store.use_device_grant(grant().id, NOW + 180) is False
    revoked = await store.device_grant(grant().token_hash)
    assert revoked is not None and revoked.revoked_at == NOW + 120 and revoked.last_used_at == NOW + 60
    assert await store.use_device_grant("no-such-id", NOW) is False


async def test_a_user_revokes_only_their_own_grants(store: SqlEnrollmentStore) -> None:
    """Revoking by id needs the owner: bob's id under alice is False and his grant stays usable; revoking all of
    alice's counts hers only, and a second time finds none."""
    for kept in (grant(tag="a"), grant(tag="b"), grant("bob")):
        await store.add_device_grant(kept, keep=10, now=NOW)
    assert await store.revoke_device_grant("alice", grant("bob").id, NOW + 1) is False
    assert await store.revoke_device_grants("alice", NOW + 1) == 2
    assert await store.revoke_device_grants("alice", NOW + 2) == 0
    assert await store.revoke_device_grant("alice", grant(tag="a").id, NOW + 2) is False
    assert await store.device_grants_of("alice", NOW + 2) == []
    assert await store.use_device_grant(grant("bob").id, NOW + 2) is True


async def test_new_grants_keep_the_bound_and_purge_what_has_ended(store: SqlEnrollmentStore) -> None:
    """With keep=2, a third grant revokes the oldest; a new grant deletes the user's revoked grants and everyone's
    expired ones, and leaves other users' active grants alone."""
    await store.add_device_grant(grant("bob", expires_at=NOW + 10), keep=2, now=NOW)
    await store.add_device_grant(grant("carol"), keep=2, now=NOW)
    for index in range(3):
        await store.add_device_grant(grant(tag=str(index), created_at=NOW + index), keep=2, now=NOW + index)
    assert [g.id for g in await store.device_grants_of("alice", NOW + 5)] == ["id-alice-1", "id-alice-2"]
    oldest = await store.device_grant(grant(tag="0").token_hash)
    assert oldest is not None and oldest.revoked_at == NOW + 2
    await store.add_device_grant(grant(tag="3", created_at=NOW + 20), keep=2, now=NOW + 20)
    assert await store.device_grant(grant(tag="0").token_hash) is None  # revoked earlier: gone
    assert await store.device_grant(grant("bob").token_hash) is None  # expired: gone
    assert await store.device_grant(grant("carol").token_hash) == grant("carol")
    assert [g.id for g in await store.device_grants_of("alice", NOW + 20)] == ["id-alice-2", "id-alice-3"]


async def test_concurrent_grants_on_two_replicas_never_pass_the_bound(database: Database) -> None:
    """Six grants for one user made at once through two replicas: at most ``keep`` stay active."""
    one, two = database.store(), database.store()
    await one.migrate()
    await asyncio.gather(
        *((one if index % 2 else two).add_device_grant(grant(tag=str(index)), keep=3, now=NOW) for index in range(6))
    )
    assert len(await one.device_grants_of("alice", NOW)) == 3


async def test_a_revocation_on_one_replica_refuses_the_grant_on_another(database: Database) -> None:
    """Grants live in the database, not in a process: revoked through one replica, the other finds the grant
    revoked and cannot use it."""
    one, two = database.store(), database.store()
    await one.migrate()
    await one.add_device_grant(grant(), keep=10, now=NOW)
    assert await two.revoke_device_grants("alice", NOW + 1) == 1
    found = await one.device_grant(grant().token_hash)
    assert found is not None and not found.active(NOW + 2)
    assert await one.use_device_grant(grant().id, NOW + 2) is False


async def test_a_0004_database_upgrades_with_an_empty_device_table(database: Database) -> None:
    """A database as the previous release left it (revision 0004) migrates to the head: its enrollments stay, and
    the device table starts empty and usable."""
    store = await store_at_revision(database, "0004", NOW)
    await store.migrate()
    assert (await store.get_enrollment("alice")) is not None
    assert await store.device_grants_of("alice", NOW) == []
    await store.add_device_grant(grant(), keep=10, now=NOW)
    assert await store.device_grant(grant().token_hash) == grant()
