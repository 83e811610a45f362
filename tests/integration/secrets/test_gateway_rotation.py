"""Key rotation through a running gateway, with the keyring in Vault (OpenBao) or AWS Secrets Manager (moto; the
keyring secret encrypted with a customer-managed KMS key of moto's KMS).

One runtime lives through the whole rotation (no restart): users enrolled under key A still verify after B becomes
primary, ``rekey`` moves every row to B, A is disabled, and everyone still verifies. Time is injected: the cache TTL
passes on a fake clock and the test runs the background refresh step itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import hvac
import pytest

from mfa_gateway import admin
from mfa_gateway.config import Settings
from mfa_gateway.core.keyring import new_keyring_document
from mfa_gateway.core.tokens import new_signing_key_document
from mfa_gateway.runtime import Runtime, build_runtime
from mfa_gateway.secrets.cache import SecretUnavailable
from mfa_gateway.service.mfa import Caller
from tests.helpers.gateway import FakeClock, current_code, make_settings
from tests.integration.secrets.conftest import AppRole, Bao, vault_section

USERS = (Caller("alice", "192.0.2.10"), Caller("bob", "192.0.2.11"))
TTL = 60


@dataclass
class Backend:
    """Where the keyring lives: ``publish`` writes a new version, ``overrides`` point the gateway at it."""

    publish: Callable[[dict[str, Any]], None]
    overrides: dict[str, Any]


def _keyring(keys: list[dict[str, str]], primary: str) -> dict[str, Any]:
    return {"primary": primary, "keys": keys}


@pytest.fixture(params=["vault", "awssm"])
def backend(
    request: pytest.FixtureRequest, kv_path: str, monkeypatch: pytest.MonkeyPatch, moto_url: str
) -> Iterator[Backend]:
    signing = new_signing_key_document("sig-1")
    if request.param == "vault":
        bao: Bao = request.getfixturevalue("bao")
        approle: AppRole = request.getfixturevalue("approle")

        def publish_vault(keyring: dict[str, Any]) -> None:
            bao.root.secrets.kv.v2.create_or_update_secret(
                path=kv_path, secret={"keyring": json.dumps(keyring), "signing": signing}, mount_point="secret"
            )

        yield Backend(
            publish_vault,
            {
                "secrets": {
                    "keyring": f"vault:secret/{kv_path}#keyring",
                    "signing_keys": f"vault:secret/{kv_path}#signing",
                    "vault": vault_section(bao, approle),
                    "cache": {"ttl": TTL, "jitter": 0},
                }
            },
        )
        return
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # the default credential chain, as in production
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client: Any = request.getfixturevalue("sm")  # the administrator's client
    kms = boto3.client(
        "kms",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    key_id = kms.create_key(Description="mfa-gateway keyring")["KeyMetadata"]["KeyId"]  # a customer-managed key
    kms.close()
    name = f"mfa/{kv_path}"
    client.create_secret(Name=name + "/signing", SecretString=signing)
    created: list[bool] = []

    def publish_aws(keyring: dict[str, Any]) -> None:
        if not created:
            client.create_secret(Name=name + "/keyring", SecretString=json.dumps(keyring), KmsKeyId=key_id)
            created.append(True)
        else:
            client.put_secret_value(SecretId=name + "/keyring", SecretString=json.dumps(keyring))

    yield Backend(
        publish_aws,
        {
            "secrets": {
                "keyring": f"awssm:{name}/keyring",
                "signing_keys": f"awssm:{name}/signing",
                "aws": {"region": "us-east-1", "endpoint_url": moto_url, "max_attempts": 1},
                "cache": {"ttl": TTL, "jitter": 0},
            }
        },
    )


def _settings(tmp_path: Path, backend: Backend) -> Settings:
    return make_settings(tmp_path, backend.overrides)


async def _verify_everyone(runtime: Runtime, secrets: dict[str, str], clock: FakeClock) -> None:
    clock.advance(30)
    for caller in USERS:
        assert (await runtime.mfa.verify(caller, current_code(secrets[caller.user_id], clock))).method == "otp"


async def _pass_ttl(runtime: Runtime, clock: FakeClock) -> None:
    clock.advance(TTL + 1)
    await runtime.secrets.cache.refresh_due()  # the background loop's step


async def test_full_rotation_without_restart(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Key A to key B in the backend: old enrollments keep verifying, rekey moves the rest, A is disabled, and the
    same runtime serves throughout."""
    key_a = json.loads(new_keyring_document("key-a"))["keys"][0]
    key_b = json.loads(new_keyring_document("key-b"))["keys"][0]
    backend.publish(_keyring([key_a], "key-a"))
    clock = FakeClock()
    settings = _settings(tmp_path, backend)
    runtime = build_runtime(settings, clock=clock)
    await runtime.store.migrate()
    try:
        secrets = {}
        for caller in USERS:
            start = await runtime.mfa.start_enrollment(caller)
            await runtime.mfa.activate(caller, current_code(start.secret, clock))
            secrets[caller.user_id] = start.secret
        assert {e.key_id for e in await runtime.store.list_enrollments(None, 10)} == {"key-a"}

        backend.publish(_keyring([key_a, {**key_b, "status": "decrypt-only"}], "key-a"))  # 1: B announced
        await _pass_ttl(runtime, clock)
        assert runtime.keys.keyring.statuses["key-b"] == "decrypt-only"

        backend.publish(_keyring([{**key_a, "status": "decrypt-only"}, key_b], "key-b"))  # 2: B primary
        await _pass_ttl(runtime, clock)
        assert runtime.keys.keyring.primary == "key-b"
        clock.advance(30)
        alice = USERS[0]
        await runtime.mfa.verify(alice, current_code(secrets["alice"], clock))  # lazily re-encrypted under B
        rows = {e.user_id: e.key_id for e in await runtime.store.list_enrollments(None, 10)}
        assert rows == {"alice": "key-b", "bob": "key-a"}

        assert await admin.rekey(settings) == 0  # 3: rekey moves the rest
        assert "re-encrypted 1 from key key-a to key-b" in capsys.readouterr().out
        assert {e.key_id for e in await runtime.store.list_enrollments(None, 10)} == {"key-b"}

        backend.publish(_keyring([{**key_a, "status": "disabled"}, key_b], "key-b"))  # 4: A disabled
        await _pass_ttl(runtime, clock)
        assert runtime.keys.keyring.statuses["key-a"] == "disabled"
        await _verify_everyone(runtime, secrets, clock)
        assert runtime.secrets.cache.ready
    finally:
        await runtime.close()


async def test_a_malformed_new_keyring_is_refused_and_the_old_one_stays(backend: Backend, tmp_path: Path) -> None:
    """A broken keyring version (a typo in a rotation) is not served: the gateway keeps the previous keyring."""
    key_a = json.loads(new_keyring_document("key-a"))["keys"][0]
    backend.publish(_keyring([key_a], "key-a"))
    clock = FakeClock()
    runtime = build_runtime(_settings(tmp_path, backend), clock=clock)
    try:
        backend.publish(_keyring([key_a], "key-missing"))  # the primary is not among the keys
        await _pass_ttl(runtime, clock)
        assert runtime.keys.keyring.primary == "key-a"
        statuses = {s.ref: s for s in runtime.secrets.cache.status()}
        keyring_status = statuses[str(runtime.secrets.refs["secrets.keyring"])]
        assert keyring_status.usable and keyring_status.fetches["rejected"] == 1
        assert key_a["k"] not in (keyring_status.last_error or "")
    finally:
        await runtime.close()


async def test_vault_outage_serves_cached_secrets_then_a_revoked_approle_makes_the_gateway_unready(
    bao: Bao, approle: AppRole, kv_path: str, tmp_path: Path, aiohttp_client: Any
) -> None:
    """Vault sealed: the gateway keeps serving on cached keys, reports them stale and stays ready; unsealed: refresh
    resumes. The AppRole's secret id revoked (403 after a fresh login): secrets fail closed once the cache expires,
    readyz answers 503 with secrets unavailable, and a request needing a key is a 503, never a wrong answer."""
    keyring = new_keyring_document("key-a")
    bao.root.secrets.kv.v2.create_or_update_secret(
        path=kv_path, secret={"keyring": keyring, "signing": new_signing_key_document("s")}, mount_point="secret"
    )
    overrides = {
        "secrets": {
            "keyring": f"vault:secret/{kv_path}#keyring",
            "signing_keys": f"vault:secret/{kv_path}#signing",
            "vault": vault_section(bao, approle),
            "cache": {"ttl": TTL, "jitter": 0, "max_stale": 600},
        }
    }
    served = await _serve_with_enrolled_user(tmp_path, overrides, aiohttp_client)
    runtime, clock = served.runtime, served.clock

    bao.server.seal()
    try:
        await _pass_ttl(runtime, clock)
        assert (await served.gateway.get("/_mfa/readyz")).status == 200
        assert 'mfa_gateway_secret_stale{secret="secrets.keyring"} 1.0' in await served.exposition()
        assert await served.verifies()
    finally:
        bao.server.unseal()
    await _pass_ttl(runtime, clock)
    assert 'mfa_gateway_secret_stale{secret="secrets.keyring"} 0.0' in await served.exposition()

    bao.root.write_data(f"auth/approle/role/{approle.name}/secret-id/destroy", data={"secret_id": approle.secret_id})
    for token in bao.root.list("auth/token/accessors")["data"]["keys"]:  # revoke every token the role was given
        info = bao.root.lookup_token(token, accessor=True)["data"]
        if "mfa-gateway" in (info.get("policies") or []):
            bao.root.revoke_token(token, accessor=True)
    await _pass_ttl(runtime, clock)
    ready = await served.gateway.get("/_mfa/readyz")
    assert ready.status == 503 and (await ready.json())["checks"]["secrets"] == "unavailable"
    assert (await served.gateway.get("/_mfa/healthz")).status == 200  # liveness never depends on Vault
    with pytest.raises(SecretUnavailable):
        await served.verifies()
    await runtime.close()


def test_secrets_check_reports_sources_and_failures_never_values(
    bao: Bao, approle: AppRole, kv_path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mfa-gateway secrets check` names each secret's reference, source and version, and a missing one with its
    reason (exit 2); no secret value is printed."""
    import yaml

    from mfa_gateway.cli import main

    keyring = new_keyring_document("key-a")
    signing = new_signing_key_document("sig-1")
    bao.root.secrets.kv.v2.create_or_update_secret(
        path=kv_path, secret={"keyring": keyring, "signing": signing}, mount_point="secret"
    )
    vault = vault_section(bao, approle)
    settings = make_settings(tmp_path)
    document = {
        "identity": {"source": "builtin", "users_file": str(settings.identity.users_file)},
        "store": {"url": settings.store.url},
        "secrets": {
            "keyring": f"vault:secret/{kv_path}#keyring",
            "signing_keys": f"vault:secret/{kv_path}#signing",
            "vault": vault,
        },
    }
    config_path = tmp_path / "check.yaml"
    config_path.write_text(yaml.safe_dump(document))
    assert main(["secrets", "check", "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert f"secrets.keyring: ok  vault:secret/{kv_path}#keyring  from vault kv secret/{kv_path} (version 1)" in out
    assert "keyring: primary key key-a" in out
    document["secrets"]["session_keyring"] = f"vault:secret/{kv_path}#missing"  # type: ignore[index]
    config_path.write_text(yaml.safe_dump(document))
    assert main(["secrets", "check", "--config", str(config_path)]) == 2
    out = capsys.readouterr().out
    assert f"secrets.session_keyring: FAILED  vault:secret/{kv_path}#missing" in out
    for value in (json.loads(keyring)["keys"][0]["k"], signing, approle.secret_id):
        assert value not in out


async def test_vault_stopped_keeps_the_gateway_on_cached_secrets_and_refresh_resumes_when_it_is_back(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """The Vault process stopped (connection refused, not sealed): the gateway keeps verifying codes on its cached
    keyring, reports the secrets stale and stays ready; Vault started again at the same address: the next refresh
    confirms the secrets and the stale mark goes away. No gateway restart."""
    from tests.helpers.servers import running_openbao

    keyring, signing = new_keyring_document("key-a"), new_signing_key_document("s")
    (tmp_path / "bao").mkdir()
    with running_openbao(tmp_path / "bao") as server:
        root = hvac.Client(server.address, token=server.root_token)

        def publish() -> None:
            root.secrets.kv.v2.create_or_update_secret(
                path="mfa/gw", secret={"keyring": keyring, "signing": signing}, mount_point="secret"
            )

        publish()
        token_file = tmp_path / "vault-token"
        token_file.write_text(server.root_token)  # as Vault Agent would write it
        overrides = {
            "secrets": {
                "keyring": "vault:secret/mfa/gw#keyring",
                "signing_keys": "vault:secret/mfa/gw#signing",
                "vault": {"address": server.address, "auth": "token_file", "token_file": str(token_file)},
                "cache": {"ttl": TTL, "jitter": 0, "max_stale": 3600},
            }
        }
        served = await _serve_with_enrolled_user(tmp_path, overrides, aiohttp_client)

        server.stop()
        await _pass_ttl(served.runtime, served.clock)
        assert 'mfa_gateway_secret_stale{secret="secrets.keyring"} 1.0' in await served.exposition()
        assert (await served.gateway.get("/_mfa/readyz")).status == 200
        assert await served.verifies()

        server.start(same_port=True)
        publish()  # dev mode keeps nothing across a restart; a production Vault keeps its data
        await _pass_ttl(served.runtime, served.clock)
        assert 'mfa_gateway_secret_stale{secret="secrets.keyring"} 0.0' in await served.exposition()
        assert await served.verifies()
        root.adapter.close()
        await served.runtime.close()


@dataclass
class Served:
    """A runtime serving the gateway's app and admin listener, with one user enrolled."""

    runtime: Runtime
    gateway: Any
    metrics: Any
    clock: FakeClock
    secret: str

    async def exposition(self) -> str:
        return str(await (await self.metrics.get("/metrics")).text())

    async def verifies(self) -> bool:
        self.clock.advance(30)
        return (await self.runtime.mfa.verify(USERS[0], current_code(self.secret, self.clock))).method == "otp"


async def _serve_with_enrolled_user(tmp_path: Path, overrides: dict[str, Any], aiohttp_client: Any) -> Served:
    from mfa_gateway.web.admin_listener import create_admin_app
    from mfa_gateway.web.app import create_app

    clock = FakeClock()
    runtime = build_runtime(make_settings(tmp_path, overrides), clock=clock)
    gateway = await aiohttp_client(create_app(runtime))
    metrics = await aiohttp_client(create_admin_app(runtime))
    start = await runtime.mfa.start_enrollment(USERS[0])
    await runtime.mfa.activate(USERS[0], current_code(start.secret, clock))
    return Served(runtime, gateway, metrics, clock, start.secret)
