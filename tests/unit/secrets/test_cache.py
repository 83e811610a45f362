"""The secret cache over real files: TTL, change check, single flight, subscribers, fail-closed rules, status."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mfa_gateway.adapters.secrets.file import FileProvider
from mfa_gateway.core.keyring import Keyring, new_keyring_document
from mfa_gateway.core.secret import Secret
from mfa_gateway.ports import Fetched, PermanentSecretError, SecretProvider
from mfa_gateway.secrets.cache import SecretCache, SecretUnavailable
from mfa_gateway.secrets.refs import SecretRef, SecretRefError
from tests.helpers.counting import Counting
from tests.helpers.gateway import FakeClock
from tests.helpers.leaks import LeakGuard
from tests.helpers.support import eventually


def make_cache(provider: FileProvider | Counting, clock: FakeClock, **options: float) -> SecretCache:
    settings: dict[str, float] = {"ttl": 300.0, "jitter": 0.0, "max_stale": 3600.0, **options}
    return SecretCache({"file": provider}, clock=clock, **settings)


@pytest.fixture
def counting() -> Counting:
    return Counting(FileProvider())


async def test_served_from_memory_within_the_ttl_and_reread_after(
    tmp_path: Path, clock: FakeClock, counting: Counting, leaks: LeakGuard
) -> None:
    """One read at load; gets inside the TTL cost nothing; after the TTL a changed file is picked up."""
    path = tmp_path / "db-password"
    first, second = leaks.new("pw"), leaks.new("pw")
    path.write_text(first + "\n")
    cache = make_cache(counting, clock)
    ref = cache.register(f"file:{path}")
    assert await cache.load_all() == {}
    for _ in range(10):
        assert cache.get(ref).reveal() == first
    clock.advance(200)
    await cache.refresh_due()
    assert counting.calls == {"fetch": 1, "previous": 1}

    path.write_text(second)
    assert cache.get(ref).reveal() == first  # memory until the refresh
    clock.advance(100)
    await cache.refresh_due()
    assert cache.get(ref).reveal() == second
    assert counting.calls["fetch"] == 2 and counting.calls["current_version"] == 1


async def test_an_unchanged_version_is_not_fetched_again(tmp_path: Path, clock: FakeClock, counting: Counting) -> None:
    """The refresh asks for the version first and skips the value read when it is the one held."""
    path = tmp_path / "token"
    path.write_text("t-1")
    cache = make_cache(counting, clock)
    ref = cache.register(f"file:{path}")
    await cache.load_all()
    for _ in range(2):
        clock.advance(301)
        await cache.refresh_due()
    assert counting.calls["fetch"] == 1 and counting.calls["current_version"] == 2
    [status] = cache.status()
    assert status.fetches["unchanged"] == 2 and status.fetches["ok"] == 1
    assert status.age == 0 and not status.stale
    assert cache.get(ref).reveal() == "t-1"


async def test_the_value_is_read_again_every_three_ttls_even_when_the_version_is_unchanged(
    clock: FakeClock,
) -> None:
    """Access to a value can be revoked while its metadata stays readable: version checks alone would confirm the old
    value for ever; a full read at least every 3 TTLs notices the refusal and fails closed."""

    class MetadataStaysReadable(SecretProvider):
        revoked = False

        def fetch(self, ref: SecretRef) -> Fetched:
            if self.revoked:
                raise PermanentSecretError(f"{ref}: permission denied", status=403)
            return Fetched(Secret("v"), "1", "test")

        def current_version(self, ref: SecretRef) -> str | None:
            return "1"

    provider = MetadataStaysReadable()
    cache = SecretCache({"file": provider}, clock=clock, ttl=300, jitter=0)
    ref = cache.register("file:/revocable")
    await cache.load_all()
    provider.revoked = True
    for _ in range(2):  # within 3 TTLs: the unchanged version is enough
        clock.advance(301)
        await cache.refresh_due()
        assert cache.get(ref).reveal() == "v"
    clock.advance(301)
    await cache.refresh_due()  # the third TTL reads the value itself, and is refused
    with pytest.raises(SecretUnavailable):
        cache.get(ref)


async def test_refreshes_are_spread_by_jitter_ahead_of_expiry(tmp_path: Path, clock: FakeClock) -> None:
    """Each secret is refreshed before its TTL ends, at a jittered moment, so replicas do not refresh in step."""
    paths = [tmp_path / f"s{i}" for i in range(20)]
    for path in paths:
        path.write_text("v")
    cache = SecretCache({"file": FileProvider()}, clock=clock, ttl=300, jitter=0.2, refresh_ahead=0.1)
    for path in paths:
        cache.register(f"file:{path}")
    await cache.load_all()
    dues = sorted(status.next_refresh - clock.now for status in cache.status())
    assert 300 * 0.9 * 0.8 <= dues[0] < dues[-1] <= 300 * 0.9
    assert len(set(dues)) > 1


async def test_concurrent_callers_share_one_fetch(tmp_path: Path, clock: FakeClock, counting: Counting) -> None:
    """Single flight: many concurrent waits and refreshes of one secret cause one read."""
    path = tmp_path / "key"
    path.write_text("k-1")
    cache = make_cache(counting, clock)
    ref = cache.register(f"file:{path}")
    results = await asyncio.gather(*(cache.wait_value(ref) for _ in range(20)), cache.refresh(ref), cache.load_all())
    assert {secret.reveal() for secret in results[:20]} == {"k-1"}
    assert counting.calls["fetch"] == 1


async def test_a_refused_rotation_ends_in_fail_closed_after_max_stale(tmp_path: Path, clock: FakeClock) -> None:
    """A refused new value keeps the previous one only as stale: it is not confirmed again, so once the refusal has
    lasted max_stale the previous value is taken out of service too (a broken rotation cannot last for ever)."""
    path = tmp_path / "keyring.json"
    path.write_text(new_keyring_document("k1"))
    cache = make_cache(FileProvider(), clock, max_stale=900.0)
    ref = cache.register(f"file:{path}")
    await cache.load_all()
    cache.subscribe(ref, lambda secret: Keyring.from_json(secret.reveal()))
    path.write_text(json.dumps({"primary": "k2", "keys": []}))
    clock.advance(301)
    await cache.refresh_due()
    assert json.loads(cache.get(ref).reveal())["primary"] == "k1"
    for _ in range(3):
        clock.advance(301)
        await cache.refresh_due()
    [status] = cache.status()
    assert not status.usable
    with pytest.raises(SecretUnavailable):
        cache.get(ref)


async def test_a_refused_new_keyring_keeps_the_previous_one(
    tmp_path: Path, clock: FakeClock, leaks: LeakGuard, caplog: pytest.LogCaptureFixture
) -> None:
    """A subscriber that cannot build the new value refuses it: the old value and object stay, the error is recorded."""
    path = tmp_path / "keyring.json"
    path.write_text(new_keyring_document("k1"))
    cache = make_cache(FileProvider(), clock)
    ref = cache.register(f"file:{path}")
    await cache.load_all()
    built: list[Keyring] = []
    cache.subscribe(ref, lambda secret: built.append(Keyring.from_json(secret.reveal())))
    assert [keyring.primary for keyring in built] == ["k1"]

    broken_key = leaks.new("key")
    path.write_text(json.dumps({"primary": "k2", "keys": [{"kid": "k2", "k": broken_key}]}))
    clock.advance(301)
    await cache.refresh_due()
    assert [keyring.primary for keyring in built] == ["k1"]
    assert json.loads(cache.get(ref).reveal())["primary"] == "k1"
    [status] = cache.status()
    assert status.usable and not status.failed_closed and status.fetches["rejected"] == 1
    assert status.last_error is not None and "refused" in status.last_error and "KeyringError" in status.last_error
    assert "was refused" in caplog.text and str(ref) in caplog.text

    path.write_text(new_keyring_document("k3"))
    clock.advance(301)
    await cache.refresh_due()
    assert [keyring.primary for keyring in built] == ["k1", "k3"]
    assert cache.status()[0].last_error is None


async def test_a_refused_first_value_fails_closed(tmp_path: Path, clock: FakeClock) -> None:
    """With nothing good to fall back on, a value the subscriber refuses leaves the secret unusable."""
    path = tmp_path / "keyring.json"
    path.write_text('{"not": "a keyring"}')
    cache = make_cache(FileProvider(), clock)
    ref = cache.register(f"file:{path}")
    cache.subscribe(ref, lambda secret: Keyring.from_json(secret.reveal()))
    failures = await cache.load_all()
    assert list(failures) == [str(ref)] and "KeyringError" in failures[str(ref)]
    assert not cache.ready
    with pytest.raises(SecretUnavailable):
        cache.get(ref)


async def test_a_missing_file_fails_closed_then_recovers(tmp_path: Path, clock: FakeClock) -> None:
    """Not found is permanent: get raises; retries back off and a file that appears is picked up."""
    path = tmp_path / "late"
    cache = make_cache(FileProvider(), clock, retry_min=5)
    ref = cache.register(f"file:{path}")
    failures = await cache.load_all()
    assert "No such file" in failures[str(ref)]
    [status] = cache.status()
    assert status.failed_closed and not status.usable and status.fetches["permanent_error"] == 1
    with pytest.raises(SecretUnavailable) as caught:
        cache.get(ref)
    assert str(caught.value) == SecretUnavailable.default_message  # a client sees no location
    assert caught.value.ref == str(ref) and "No such file" in caught.value.reason

    path.write_text("arrived")
    clock.advance(5)
    await cache.refresh_due()
    assert cache.get(ref).reveal() == "arrived" and cache.ready


async def test_only_required_secrets_decide_readiness(tmp_path: Path, clock: FakeClock) -> None:
    """An optional secret that fails is reported but does not make the gateway unready."""
    (tmp_path / "have").write_text("x")
    cache = make_cache(FileProvider(), clock)
    cache.register(f"file:{tmp_path / 'have'}")
    cache.register(f"file:{tmp_path / 'absent'}", required=False)
    await cache.load_all()
    assert cache.ready
    cache.register(f"file:{tmp_path / 'absent'}", required=True)
    assert not cache.ready


async def test_a_provider_bug_is_transient_and_its_message_is_not_repeated(
    tmp_path: Path, clock: FakeClock, leaks: LeakGuard
) -> None:
    """An unexpected exception keeps the last value (stale) and never copies the exception text, which may hold data."""
    value = leaks.new()

    class Broken(FileProvider):
        fail = False

        def fetch(self, ref: SecretRef) -> Fetched:
            if self.fail:
                raise RuntimeError(f"parsing {value} failed")
            return super().fetch(ref)

    provider = Broken()
    path = tmp_path / "v"
    path.write_text(value)
    cache = SecretCache({"file": provider}, clock=clock, jitter=0)
    ref = cache.register(f"file:{path}")
    await cache.load_all()
    provider.fail = True
    await cache.refresh(ref)
    [status] = cache.status()
    assert status.stale and status.usable and status.last_error == "unexpected RuntimeError in the file provider"
    assert cache.get(ref).reveal() == value
    assert leaks.clean(status)


async def test_registration_and_option_errors(tmp_path: Path, clock: FakeClock) -> None:
    """References need a configured provider; unknown references are a programming error; options are checked."""
    cache = make_cache(FileProvider(), clock)
    with pytest.raises(SecretRefError, match="no vault: provider"):
        cache.register("vault:secret/x#k")
    with pytest.raises(LookupError, match="never registered"):
        cache.get("file:/nowhere")
    with pytest.raises(ValueError, match="max_stale >= ttl"):
        SecretCache({}, clock=clock, ttl=300, max_stale=100)


async def test_the_background_loop_refreshes_and_stops(tmp_path: Path, clock: FakeClock, counting: Counting) -> None:
    """run() reads a secret that is due (registered, never read) and returns promptly once stop is set."""
    (tmp_path / "a").write_text("a")
    cache = make_cache(counting, clock)
    cache.register(f"file:{tmp_path / 'a'}")
    stop = asyncio.Event()
    task = asyncio.create_task(cache.run(stop))
    await eventually(lambda: counting.calls["fetch"] > 0, "the loop to read the due secret", within=2, interval=0.01)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert counting.calls["fetch"] == 1 and cache.ready
