"""The Vault KV v2 provider and its authentication, against a real OpenBao (dev mode) with the documented policy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mfa_gateway.adapters.secrets.vault import VaultProvider
from mfa_gateway.adapters.secrets.vault_auth import KubernetesAuth, TokenFileAuth
from mfa_gateway.ports import PermanentSecretError, TransientSecretError
from mfa_gateway.secrets.cache import SecretCache, SecretUnavailable
from mfa_gateway.secrets.refs import SecretRef, parse_ref
from tests.helpers.counting import Counting
from tests.helpers.gateway import FakeClock
from tests.helpers.leaks import LeakGuard
from tests.helpers.servers import free_port
from tests.integration.secrets.conftest import K8S_ACCOUNT, K8S_NAMESPACE, AppRole, Bao, vault_session


def put(bao: Bao, path: str, **data: str) -> int:
    response = bao.root.secrets.kv.v2.create_or_update_secret(path, data, mount_point="secret")
    return int(response["data"]["version"])


@pytest.fixture
def sealable(bao: Bao) -> Iterator[Bao]:
    """The shared OpenBao, unsealed again however the test ends."""
    yield bao
    if bao.server.health() == 503:
        bao.server.unseal()


def test_fetch_reads_one_field_with_its_version(bao: Bao, vault: VaultProvider, kv_path: str, leaks: LeakGuard) -> None:
    """A vault: reference yields the field's value, the KV version as the version, and a human source."""
    value = leaks.new()
    put(bao, kv_path, password=value, user="gw")
    ref = parse_ref(f"vault:secret/{kv_path}#password")
    fetched = vault.fetch(ref)
    assert (fetched.value.reveal(), fetched.version) == (value, "1")
    assert fetched.source == f"vault kv secret/{kv_path} (version 1)"
    assert vault.current_version(ref) == "1"
    put(bao, kv_path, password=leaks.new())
    assert vault.current_version(ref) == "2"


def test_missing_fields_and_paths_are_permanent(bao: Bao, vault: VaultProvider, kv_path: str, leaks: LeakGuard) -> None:
    """A missing field names the fields there are (never their values); a missing secret is not found."""
    put(bao, kv_path, password=leaks.new())
    with pytest.raises(PermanentSecretError) as caught:
        vault.fetch(parse_ref(f"vault:secret/{kv_path}#passwd"))
    assert "no field 'passwd'" in str(caught.value) and "password" in str(caught.value)
    assert leaks.clean(caught.value)
    with pytest.raises(PermanentSecretError, match="not found") as missing:
        vault.fetch(parse_ref(f"vault:secret/{kv_path}-nothing#x"))
    assert missing.value.status == 404


def test_an_explicit_version_and_its_deletion(bao: Bao, vault: VaultProvider, kv_path: str, leaks: LeakGuard) -> None:
    """?version=N reads that version; once deleted it is refused, once destroyed the change check says so."""
    first = leaks.new()
    put(bao, kv_path, k=first)
    put(bao, kv_path, k=leaks.new())
    ref = parse_ref(f"vault:secret/{kv_path}?version=1#k")
    assert vault.fetch(ref).value.reveal() == first
    assert vault.current_version(ref) == "1"

    bao.root.secrets.kv.v2.delete_secret_versions(kv_path, [1], mount_point="secret")
    assert vault.current_version(ref) is None  # deleted: only a read can tell, and it refuses
    with pytest.raises(PermanentSecretError, match="deleted or destroyed"):
        vault.fetch(ref)
    bao.root.secrets.kv.v2.destroy_secret_versions(kv_path, [1], mount_point="secret")
    with pytest.raises(PermanentSecretError, match="version 1 was destroyed"):
        vault.current_version(ref)


async def test_the_cache_reads_vault_once_per_version(
    bao: Bao, vault: VaultProvider, kv_path: str, clock: FakeClock
) -> None:
    """Within the TTL no request; after it a metadata read; a value read only when the version moved."""
    put(bao, kv_path, k="v1")
    counting = Counting(vault)
    cache = SecretCache({"vault": counting}, clock=clock, jitter=0)
    ref = cache.register(f"vault:secret/{kv_path}#k")
    await cache.load_all()
    clock.advance(100)
    await cache.refresh_due()
    assert cache.get(ref).reveal() == "v1" and counting.calls["fetch"] == 1
    clock.advance(200)
    await cache.refresh_due()
    assert counting.calls["fetch"] == 1 and counting.calls["current_version"] == 1
    put(bao, kv_path, k="v2")
    clock.advance(300)
    await cache.refresh_due()
    assert cache.get(ref).reveal() == "v2" and counting.calls["fetch"] == 2
    assert cache.status()[0].source == f"vault kv secret/{kv_path} (version 2)"


def test_approle_token_is_renewed_at_two_thirds_of_its_ttl(
    bao: Bao, vault: VaultProvider, kv_path: str, clock: FakeClock
) -> None:
    """With a 60 s token: no renewal at 39 s, a renewal (not a new login) at 41 s, by the injected clock."""
    put(bao, kv_path, k="v")
    ref = parse_ref(f"vault:secret/{kv_path}#k")
    vault.fetch(ref)
    assert vault.session.status().logins == 1 and vault.session.status().expires_at == clock.now + 60
    clock.advance(39)
    vault.fetch(ref)
    assert vault.session.status().renewals == 0
    clock.advance(2)
    vault.fetch(ref)
    status = vault.session.status()
    assert (status.logins, status.renewals) == (1, 1)
    assert status.expires_at == clock.now + 60


def test_an_expired_token_is_replaced_by_a_fresh_login(
    bao: Bao, vault: VaultProvider, kv_path: str, clock: FakeClock
) -> None:
    """A token the clock says has expired is not used: the provider logs in again first."""
    put(bao, kv_path, k="v")
    ref = parse_ref(f"vault:secret/{kv_path}#k")
    vault.fetch(ref)
    clock.advance(3600)
    vault.fetch(ref)
    assert vault.session.status().logins == 2


@pytest.fixture
def read_before_revocation(bao: Bao, vault: VaultProvider, kv_path: str) -> SecretRef:
    """A secret (``k`` = "v") the provider has read once, logging in; Vault has since revoked the provider's token."""
    put(bao, kv_path, k="v")
    ref = parse_ref(f"vault:secret/{kv_path}#k")
    vault.fetch(ref)
    bao.root.auth.token.revoke(vault.session.client.token)
    return ref


def test_a_revoked_token_causes_one_fresh_login(vault: VaultProvider, read_before_revocation: SecretRef) -> None:
    """A 403 for a token Vault revoked is answered by a new AppRole login and a retry that succeeds."""
    assert vault.fetch(read_before_revocation).value.reveal() == "v"
    assert vault.session.status().logins == 2


def test_concurrent_requests_after_a_revocation_share_one_login(
    vault: VaultProvider, read_before_revocation: SecretRef
) -> None:
    """Thread safety: 16 worker threads hitting a revoked token all succeed, and only one of them logs in again."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        values = list(pool.map(lambda _: vault.fetch(read_before_revocation).value.reveal(), range(64)))
    assert set(values) == {"v"}
    assert vault.session.status().logins == 2


def test_a_path_outside_the_policy_is_permanent_after_a_fresh_login(bao: Bao, vault: VaultProvider) -> None:
    """403 with a fresh token is a policy decision: permanent, and only one extra login is spent on it, however often
    the denied path is asked for (no token per request)."""
    bao.root.secrets.kv.v2.create_or_update_secret("other/x", {"k": "v"}, mount_point="secret")
    with pytest.raises(PermanentSecretError, match="permission denied") as caught:
        vault.fetch(parse_ref("vault:secret/other/x#k"))
    assert "after a fresh login" in str(caught.value) and caught.value.status == 403
    assert vault.session.status().logins == 2
    for _ in range(5):  # asked again and again (a request each): no more logins until the throttle interval passes
        with pytest.raises(PermanentSecretError, match="check the policy"):
            vault.fetch(parse_ref("vault:secret/other/x#k"))
    assert vault.session.status().logins == 2


async def test_a_revoked_secret_id_fails_closed_until_a_new_one_is_written(
    bao: Bao, vault: VaultProvider, approle: AppRole, kv_path: str, clock: FakeClock, leaks: LeakGuard
) -> None:
    """Token revoked and secret-id destroyed: the re-login fails, the secret fails closed, the cache is not ready;
    logins back off; a new secret-id file restores service without a restart."""
    leaks.values.update({approle.secret_id, approle.role_id_file.read_text()})
    put(bao, kv_path, k=leaks.new())
    cache = SecretCache({"vault": vault}, clock=clock, jitter=0)
    ref = cache.register(f"vault:secret/{kv_path}#k")
    await cache.load_all()
    assert cache.ready

    bao.root.write_data(f"auth/approle/role/{approle.name}/secret-id/destroy", data={"secret_id": approle.secret_id})
    bao.root.auth.token.revoke(vault.session.client.token)
    clock.advance(300)
    await cache.refresh_due()
    [status] = cache.status()
    assert status.failed_closed and not cache.ready and status.fetches["permanent_error"] == 1
    assert status.last_error is not None and "invalid role or secret ID" in status.last_error
    with pytest.raises(SecretUnavailable):
        cache.get(ref)
    assert leaks.clean(status)

    await cache.refresh(ref)
    assert vault.session.status().login_failures == 1  # backing off: no second attempt within the second
    assert "next login attempt" in (cache.status()[0].last_error or "")

    fresh = bao.root.write_data(f"auth/approle/role/{approle.name}/secret-id")["data"]["secret_id"]
    approle.secret_id_file.write_text(fresh)
    clock.advance(10)
    await cache.refresh_due()
    assert cache.ready and not cache.status()[0].failed_closed


async def test_sealed_vault_serves_the_stale_value_then_resumes(
    sealable: Bao,
    vault: VaultProvider,
    kv_path: str,
    clock: FakeClock,
    leaks: LeakGuard,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sealed (503) is transient: the last value is served, marked stale, with a warning naming the reference."""
    value = leaks.new()
    put(sealable, kv_path, k=value)
    cache = SecretCache({"vault": vault}, clock=clock, jitter=0, max_stale=3600)
    ref = cache.register(f"vault:secret/{kv_path}#k")
    await cache.load_all()
    sealable.server.seal()
    clock.advance(300)
    await cache.refresh_due()
    [status] = cache.status()
    assert status.stale and status.usable and status.fetches["transient_error"] == 1
    assert status.last_error is not None and "sealed" in status.last_error
    assert cache.get(ref).reveal() == value and cache.ready
    assert f"secret {ref}" in caplog.text and "stale" in caplog.text

    sealable.server.unseal()
    clock.advance(10)
    await cache.refresh_due()
    [status] = cache.status()
    assert not status.stale and status.fetches["unchanged"] == 1 and status.last_error is None


async def test_stale_beyond_max_stale_is_refused(
    sealable: Bao, vault: VaultProvider, kv_path: str, clock: FakeClock
) -> None:
    """A value not confirmed for longer than max_stale is no longer served."""
    put(sealable, kv_path, k="v")
    cache = SecretCache({"vault": vault}, clock=clock, ttl=300, max_stale=600, jitter=0)
    ref = cache.register(f"vault:secret/{kv_path}#k")
    await cache.load_all()
    sealable.server.seal()
    clock.advance(601)
    await cache.refresh_due()
    with pytest.raises(SecretUnavailable) as caught:
        cache.get(ref)
    assert "max_stale" in caught.value.reason and not cache.ready


async def test_transient_then_permanent_then_transient(
    sealable: Bao, vault: VaultProvider, kv_path: str, clock: FakeClock
) -> None:
    """Each error gets its own rule: stale on transient, closed on permanent, and a later outage does not reopen."""
    put(sealable, kv_path, k="v")
    cache = SecretCache({"vault": vault}, clock=clock, jitter=0)
    ref = cache.register(f"vault:secret/{kv_path}#k")
    await cache.load_all()
    sealable.server.seal()
    await cache.refresh(ref, force=False)
    assert cache.status()[0].stale and cache.get(ref).reveal() == "v"

    sealable.server.unseal()
    sealable.root.secrets.kv.v2.delete_metadata_and_all_versions(kv_path, mount_point="secret")
    await cache.refresh(ref, force=False)
    assert cache.status()[0].failed_closed

    sealable.server.seal()
    await cache.refresh(ref, force=False)
    [status] = cache.status()
    assert status.failed_closed and not status.usable and status.fetches["transient_error"] == 2

    sealable.server.unseal()
    put(sealable, kv_path, k="back")
    await cache.refresh(ref)
    assert cache.get(ref).reveal() == "back"


def test_an_unreachable_vault_is_transient(bao: Bao, tmp_path: Path, clock: FakeClock) -> None:
    """Connection refused is an outage, not a verdict."""
    (tmp_path / "token").write_text(bao.server.root_token)
    session = vault_session(bao, TokenFileAuth(tmp_path / "token"), clock, address=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientSecretError, match="cannot connect to Vault"):
        VaultProvider(session).fetch(parse_ref("vault:secret/mfa/x#k"))


def test_token_file_auth_follows_the_file(bao: Bao, kv_path: str, tmp_path: Path, clock: FakeClock) -> None:
    """A token file is re-read when it changes; a refused token the file still holds is permanent."""
    put(bao, kv_path, k="v")
    ref = parse_ref(f"vault:secret/{kv_path}#k")
    token_file = tmp_path / "vault-token"
    first = bao.root.auth.token.create(policies=["mfa-gateway"], ttl="1h")["auth"]["client_token"]
    token_file.write_text(first)
    provider = VaultProvider(vault_session(bao, TokenFileAuth(token_file), clock))
    assert provider.fetch(ref).value.reveal() == "v"

    bao.root.auth.token.revoke(first)
    second = bao.root.auth.token.create(policies=["mfa-gateway"], ttl="1h")["auth"]["client_token"]
    token_file.write_text(second + "\n")
    assert provider.fetch(ref).value.reveal() == "v"

    bao.root.auth.token.revoke(second)
    with pytest.raises(PermanentSecretError, match="still holds the same token") as caught:
        provider.fetch(ref)
    assert first not in str(caught.value) and second not in str(caught.value)
    provider.session.close()


def test_kubernetes_auth_logs_in_with_the_service_account_token(
    bao: Bao, kv_path: str, tmp_path: Path, clock: FakeClock
) -> None:
    """Kubernetes auth: OpenBao reviews the pod's token (stand-in TokenReview API) and grants the role's policy;
    a token the cluster no longer accepts makes the login fail permanently."""
    put(bao, kv_path, k="v")
    ref = parse_ref(f"vault:secret/{kv_path}#k")
    sa_token = bao.token_review.issue(K8S_NAMESPACE, K8S_ACCOUNT)
    token_file = tmp_path / "token"
    token_file.write_text(sa_token)
    reviews = bao.token_review.reviews
    provider = VaultProvider(vault_session(bao, KubernetesAuth(role="mfa-gateway", token_file=token_file), clock))
    assert provider.fetch(ref).value.reveal() == "v"
    assert provider.session.status().logins == 1 and bao.token_review.reviews == reviews + 1

    bao.token_review.revoke(sa_token)
    bao.root.auth.token.revoke(provider.session.client.token)
    with pytest.raises(PermanentSecretError, match="vault login") as caught:
        provider.fetch(ref)
    assert sa_token not in str(caught.value)

    token_file.write_text(bao.token_review.issue(K8S_NAMESPACE, K8S_ACCOUNT))  # kubelet rotated the token
    clock.advance(60)
    assert provider.fetch(ref).value.reveal() == "v"
    provider.session.close()


def test_kubernetes_auth_refuses_another_service_account(bao: Bao, tmp_path: Path, clock: FakeClock) -> None:
    """The role is bound to one namespace and service account; any other is refused (permanently)."""
    (tmp_path / "token").write_text(bao.token_review.issue("default", "someone-else"))
    provider = VaultProvider(
        vault_session(bao, KubernetesAuth(role="mfa-gateway", token_file=tmp_path / "token"), clock)
    )
    with pytest.raises(PermanentSecretError):
        provider.fetch(parse_ref("vault:secret/mfa/x#k"))
    provider.session.close()


def test_a_mount_whose_path_has_slashes_is_found(bao: Bao, tmp_path: Path, clock: FakeClock, leaks: LeakGuard) -> None:
    """A KV v2 mount at ``teams/<id>/kv``: the provider asks where the mount ends and reads the field and its version,
    with a token that may read only that secret (no default policy)."""
    team = uuid.uuid4().hex[:8]
    mount = f"teams/{team}/kv"
    bao.root.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    value = leaks.new()
    bao.root.secrets.kv.v2.create_or_update_secret("mfa/keyring", {"value": value}, mount_point=mount)
    policy = "".join(f'path "{mount}/{kind}/mfa/*" {{ capabilities = ["read"] }}\n' for kind in ("data", "metadata"))
    bao.root.sys.create_or_update_policy(f"nested-{team}", policy)
    created = bao.root.auth.token.create(policies=[f"nested-{team}"], no_default_policy=True, ttl="1h")
    (tmp_path / "vault-token").write_text(created["auth"]["client_token"])
    provider = VaultProvider(vault_session(bao, TokenFileAuth(tmp_path / "vault-token"), clock))
    try:
        ref = parse_ref(f"vault:{mount}/mfa/keyring#value")
        assert provider.split(ref) == (mount, "mfa/keyring")
        fetched = provider.fetch(ref)
        assert (fetched.value.reveal(), fetched.version) == (value, "1")
        assert provider.current_version(ref) == "1"
    finally:
        provider.session.close()
