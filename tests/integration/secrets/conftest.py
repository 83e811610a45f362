"""Fixtures for the secrets layer: a real OpenBao (dev mode) and a real moto server, each started once per session.

Every test uses its own KV paths, AppRole role, Transit key and AWS secret names, so tests share the servers without
sharing state. Tests that seal OpenBao unseal it before they finish. Time seen by the code under test is a
``FakeClock``: token renewal, TTLs and backoff are driven by moving it, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import hvac
import pytest
from botocore.config import Config

from mfa_gateway.adapters.secrets.awssm import AwsOptions, AwsSecretsProvider
from mfa_gateway.adapters.secrets.vault import VaultProvider
from mfa_gateway.adapters.secrets.vault_auth import AppRoleAuth, VaultAuth, VaultOptions, VaultSession
from tests.helpers.gateway import FakeClock
from tests.helpers.kubernetes_standin import TokenReviewStandIn
from tests.helpers.leaks import leaks  # noqa: F401 - the autouse leak check, for every test here
from tests.helpers.servers import OpenBaoServer, running_moto, running_openbao
from tests.helpers.support import eventually

POLICY = """
path "secret/data/mfa/*"     { capabilities = ["read"] }
path "secret/metadata/mfa/*" { capabilities = ["read"] }
path "transit/keys/mfa-*"    { capabilities = ["read"] }
path "transit/encrypt/mfa-*" { capabilities = ["update"] }
path "transit/decrypt/mfa-*" { capabilities = ["update"] }
path "transit/rewrap/mfa-*"  { capabilities = ["update"] }
path "auth/token/renew-self" { capabilities = ["update"] }
"""
"""The policy docs/secrets.md gives operators: the tests log in with exactly this much access."""

K8S_NAMESPACE, K8S_ACCOUNT = "mfa", "mfa-gateway"


@dataclass
class Bao:
    server: OpenBaoServer
    root: hvac.Client
    token_review: TokenReviewStandIn

    @property
    def address(self) -> str:
        return self.server.address


@pytest.fixture(scope="session")
def token_review() -> Iterator[TokenReviewStandIn]:
    standin = TokenReviewStandIn()
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture(scope="session")
def bao(token_review: TokenReviewStandIn) -> Iterator[Bao]:
    with tempfile.TemporaryDirectory(prefix="mfa-bao-") as workdir, running_openbao(Path(workdir)) as server:
        root = hvac.Client(server.address, token=server.root_token, timeout=10)
        root.sys.create_or_update_policy("mfa-gateway", POLICY)
        root.sys.enable_auth_method("approle")
        root.sys.enable_auth_method("kubernetes")
        root.sys.enable_secrets_engine("transit")
        root.write_data(
            "auth/kubernetes/config",
            data={
                "kubernetes_host": token_review.url,
                "disable_local_ca_jwt": True,
                "kubernetes_ca_cert": token_review.ca_pem(),
            },
        )
        root.write_data(
            "auth/kubernetes/role/mfa-gateway",
            data={
                "bound_service_account_names": K8S_ACCOUNT,
                "bound_service_account_namespaces": K8S_NAMESPACE,
                "token_policies": "mfa-gateway",
                "token_no_default_policy": True,
                "token_ttl": "60s",
            },
        )
        yield Bao(server, root, token_review)
        root.adapter.close()


@pytest.fixture
def kv_path() -> str:
    """A fresh KV path under the policy's mfa/ prefix."""
    return f"mfa/{uuid.uuid4().hex[:12]}"


@dataclass
class AppRole:
    name: str
    role_id_file: Path
    secret_id_file: Path
    secret_id: str

    def auth(self) -> AppRoleAuth:
        return AppRoleAuth(role_id_file=self.role_id_file, secret_id_file=self.secret_id_file)


@pytest.fixture
def approle(bao: Bao, tmp_path: Path) -> AppRole:
    """An AppRole role with the gateway policy and 60 s tokens, its role-id and secret-id written to files."""
    name = f"gw-{uuid.uuid4().hex[:8]}"
    bao.root.write_data(
        f"auth/approle/role/{name}",
        data={
            "token_policies": "mfa-gateway",
            "token_no_default_policy": True,
            "token_ttl": "60s",
            "token_max_ttl": "600s",
        },
    )
    role_id = bao.root.read(f"auth/approle/role/{name}/role-id")["data"]["role_id"]
    secret_id = bao.root.write_data(f"auth/approle/role/{name}/secret-id")["data"]["secret_id"]
    (tmp_path / "role-id").write_text(role_id)
    (tmp_path / "secret-id").write_text(secret_id + "\n")
    return AppRole(name, tmp_path / "role-id", tmp_path / "secret-id", secret_id)


def vault_section(bao: Bao, approle: AppRole) -> dict[str, Any]:
    """The gateway's ``secrets.vault`` config for this OpenBao, logging in with ``approle``."""
    return {
        "address": bao.address,
        "auth": "approle",
        "approle": {"role_id_file": str(approle.role_id_file), "secret_id_file": str(approle.secret_id_file)},
    }


def vault_session(bao: Bao, auth: VaultAuth, clock: FakeClock, address: str | None = None) -> VaultSession:
    return VaultSession(VaultOptions(address=address or bao.address, auth=auth, timeout=5), clock=clock)


@pytest.fixture
def vault(bao: Bao, approle: AppRole, clock: FakeClock) -> Iterator[VaultProvider]:
    """A KV provider logged in through AppRole with the documented policy."""
    session = vault_session(bao, approle.auth(), clock)
    yield VaultProvider(session)
    session.close()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log says nothing useful here
    with running_moto() as url:
        yield url


@pytest.fixture
def aws_options(moto_url: str) -> AwsOptions:
    return AwsOptions(region="us-east-1", endpoint_url=moto_url, max_attempts=1)


@pytest.fixture
def sm(moto_url: str) -> Iterator[object]:
    """An administrator's Secrets Manager client (creates and rotates secrets); dummy credentials, no env vars."""
    client = boto3.client(
        "secretsmanager",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    yield client
    client.close()


@pytest.fixture
def aws(aws_options: AwsOptions) -> Iterator[AwsSecretsProvider]:
    from mfa_gateway.adapters.secrets.awssm import make_client

    provider = AwsSecretsProvider(
        aws_options, client=make_client(aws_options, aws_access_key_id="testing", aws_secret_access_key="testing")
    )
    yield provider
    provider.close()


@contextlib.asynccontextmanager
async def steady_flow(call: Callable[[], Awaitable[object]], clients: int, pause: float) -> AsyncIterator[list[bool]]:
    """``clients`` tasks calling ``call`` in a loop (``pause`` seconds apart) while the block runs: a steady flow of
    requests during a rotation. Yields the outcomes (True: the call succeeded), complete once the block has ended."""
    outcomes: list[bool] = []
    stop = asyncio.Event()

    async def flow() -> None:
        while not stop.is_set():
            try:
                await call()
                outcomes.append(True)
            except Exception:  # noqa: BLE001 - any failure is what the caller counts
                outcomes.append(False)
            await asyncio.sleep(pause)

    tasks = [asyncio.create_task(flow()) for _ in range(clients)]
    try:
        yield outcomes
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def completed(outcomes: list[bool], count: int, what: str) -> None:
    """Return once a steady flow has finished ``count`` calls (whether they succeeded is asserted at the end): a slow
    machine takes longer to reach them, it does not make fewer."""
    await eventually(lambda: len(outcomes) >= count, f"{count} {what}", within=60)
