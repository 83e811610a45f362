"""``tls.generate``: the injector's own CA and certificate, kept in a Secret and patched into its webhooks.

**No kube-apiserver runs here.** The injectors talk, through the product's in-cluster client (token and CA files,
``KUBERNETES_SERVICE_*``), to a stand-in for the few endpoints they call (``tests.helpers.kube_api``): over TLS with a
CA of its own, checking the bearer token and the contract's RBAC, with ``resourceVersion`` and 409 semantics. Each
injector replica serves its certificate on a real HTTPS port, checked by clients that trust only a given CA and ask
for the Service's DNS name, as the API server does. Time is injected: a replica's clock decides when a certificate is
issued and when it is due for renewal, so "near expiry" needs no waiting.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mfa_gateway.adapters.kube import InCluster, KubeApi
from mfa_gateway.config import ConfigError
from mfa_gateway.k8s.certificates import SECRET_KEYS, ServingBundle
from mfa_gateway.k8s.injector_config import Generate, InjectorConfig
from mfa_gateway.ports import KubernetesError
from mfa_gateway.runtime.generated_tls import GeneratedCertificate
from mfa_gateway.runtime.injector import InjectorRuntime, build_injector
from mfa_gateway.runtime.tls import ServingCertificate
from mfa_gateway.web.injector import create_injector_app
from mfa_gateway.web.server import start_site
from tests.helpers.certificates import TestCA
from tests.helpers.gateway import FakeClock
from tests.helpers.kube_api import KubeApiStandIn, Rbac
from tests.helpers.servers import bound_port
from tests.helpers.support import eventually
from tests.integration.injector.conftest import IMAGE, review_bytes, verifies

NAMESPACE, SERVICE = "mfa", "mfa-gateway-injector"
SECRET, WEBHOOK = "mfa-gateway-injector-tls", "mfa-gateway-injector"
GENERATE = Generate(secret=SECRET, service=SERVICE, webhook=WEBHOOK)
ASKED_FOR = f"{SERVICE}.{NAMESPACE}.svc"
"""The name the API server connects to (clientConfig.service): what the certificate must be valid for."""
WEBHOOK_NAMES = ("inject.mfa-gateway.io", "inject-native.mfa-gateway.io")
DAY = 86400.0


async def _idle(stop: asyncio.Event) -> None:
    await stop.wait()


@dataclass
class Replica:
    """One injector: its certificate keeper (driven by the test) and the HTTPS port serving its certificate."""

    keeper: GeneratedCertificate
    certificate: ServingCertificate
    port: int

    async def converge(self) -> ServingBundle:
        return await self.keeper.converge()

    async def trusted_by(self, ca_pem: bytes, name: str = ASKED_FOR) -> bool:
        return await verifies(self.port, ca_pem, name)


@dataclass
class Cluster:
    api: KubeApiStandIn
    account: Path
    _runners: list[web.AppRunner] = field(default_factory=list)
    _keepers: list[GeneratedCertificate] = field(default_factory=list)

    def client(self) -> KubeApi:
        return KubeApi(InCluster.from_environment(self.api.environ, self.account))

    async def replica(self, clock: FakeClock, generate: Generate = GENERATE) -> Replica:
        certificate = ServingCertificate()
        keeper = GeneratedCertificate(self.client(), generate, certificate, clock)
        config = InjectorConfig.model_validate({"image": IMAGE, "tls": {"generate": generate.model_dump()}})
        runtime = InjectorRuntime(config, config.injection(), certificate, _idle)
        runner = await start_site(create_injector_app(runtime), "127.0.0.1", 0, ssl_context=certificate.context)
        self._runners.append(runner)
        self._keepers.append(keeper)
        return Replica(keeper, certificate, bound_port(runner))

    def secret_bundle(self) -> ServingBundle:
        data = self.api.secrets[(NAMESPACE, SECRET)]["data"]
        return ServingBundle(*(base64.b64decode(data[key]) for key in SECRET_KEYS))

    def ca_bundles(self) -> list[str | None]:
        webhooks = self.api.webhooks[WEBHOOK]["webhooks"]
        return [webhook["clientConfig"].get("caBundle") for webhook in webhooks]

    async def close(self) -> None:
        for keeper in self._keepers:
            await keeper.api.close()
        for runner in self._runners:
            await runner.cleanup()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    standin = KubeApiStandIn(Rbac(NAMESPACE, SECRET, WEBHOOK))
    standin.add_webhook_configuration(WEBHOOK, WEBHOOK_NAMES)
    async with standin.running(tmp_path) as account:
        cluster = Cluster(standin, account)
        try:
            yield cluster
        finally:
            await cluster.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def cas_in(bundle: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle)


async def test_first_start_creates_the_secret_serves_it_and_patches_every_webhook(cluster: Cluster) -> None:
    """With no Secret, the injector creates one (kubernetes.io/tls: ca.crt, tls.crt, tls.key), serves its
    certificate for the Service's three DNS names, and sets that CA as caBundle on every webhook of the
    configuration, changing nothing else of it; a review then succeeds over TLS verified with that CA only."""
    before = json.loads(json.dumps(cluster.api.webhooks[WEBHOOK]))
    replica = await cluster.replica(FakeClock(time.time()))
    bundle = await replica.converge()
    secret = cluster.api.secrets[(NAMESPACE, SECRET)]
    assert secret["type"] == "kubernetes.io/tls"
    assert sorted(secret["data"]) == sorted(SECRET_KEYS)
    assert cluster.secret_bundle() == bundle
    assert cluster.ca_bundles() == [b64(bundle.ca_pem)] * len(WEBHOOK_NAMES)
    after = cluster.api.webhooks[WEBHOOK]
    for webhook in after["webhooks"]:
        del webhook["clientConfig"]["caBundle"]
    assert after["webhooks"] == before["webhooks"]
    for name in (SERVICE, f"{SERVICE}.{NAMESPACE}", ASKED_FOR):
        assert await replica.trusted_by(bundle.ca_pem, name)
    assert not await replica.trusted_by(bundle.ca_pem, f"{SERVICE}.elsewhere.svc")
    assert not await replica.trusted_by(TestCA("another CA").pem)
    context = ssl.create_default_context(cadata=bundle.ca_pem.decode("ascii"))
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://127.0.0.1:{replica.port}/mutate",
            data=review_bytes("plain-pod"),
            headers={"Content-Type": "application/json"},
            ssl=context,
            server_hostname=ASKED_FOR,
        ) as answer,
    ):
        assert answer.status == 200
        assert (await answer.json())["response"]["patchType"] == "JSONPatch"


async def test_the_webhook_patch_writes_only_ca_bundles_guarded_by_each_webhooks_name(cluster: Cluster) -> None:
    """The one PATCH of the webhook configuration is a JSON Patch of `test` (each webhook's name at its index) and
    `add` of that webhook's clientConfig.caBundle: nothing else of the configuration can be written by it."""
    await (await cluster.replica(FakeClock(time.time()))).converge()
    (patch,) = cluster.api.writes("PATCH")
    assert {op["op"] for op in patch.body} == {"test", "add"}
    assert [op["path"] for op in patch.body if op["op"] == "add"] == [
        f"/webhooks/{index}/clientConfig/caBundle" for index in range(len(WEBHOOK_NAMES))
    ]
    assert [op["value"] for op in patch.body if op["op"] == "test"] == list(WEBHOOK_NAMES)


async def test_a_fresh_certificate_is_used_as_it_is(cluster: Cluster) -> None:
    """A second round, and another replica's first, read the Secret and the configuration and write nothing."""
    clock = FakeClock(time.time())
    first = await cluster.replica(clock)
    bundle = await first.converge()
    writes = len(list(cluster.api.writes()))
    assert await first.converge() == bundle
    second = await cluster.replica(clock)
    assert await second.converge() == bundle
    assert len(list(cluster.api.writes())) == writes
    assert await second.trusted_by(bundle.ca_pem)


async def test_two_injectors_starting_at_once_end_with_one_ca(cluster: Cluster) -> None:
    """Two replicas read "no Secret" at the same moment and both create one: the API lets one win (201) and answers
    the other 409, which then reads and serves the winner's copy. One CA, in the Secret and in the webhooks, trusts
    both replicas."""
    clock = FakeClock(time.time())
    first, second = await cluster.replica(clock), await cluster.replica(clock)
    cluster.api.hold_reads(2)
    bundles = await asyncio.gather(first.converge(), second.converge())
    assert bundles[0] == bundles[1] == cluster.secret_bundle()
    assert sorted(call.status for call in cluster.api.writes("POST")) == [201, 409]
    assert len(cas_in(bundles[0].ca_pem)) == 1
    assert cluster.ca_bundles() == [b64(bundles[0].ca_pem)] * len(WEBHOOK_NAMES)
    for replica in (first, second):
        assert await replica.trusted_by(bundles[0].ca_pem)


async def test_near_expiry_one_replica_renews_and_the_other_follows(cluster: Cluster) -> None:
    """A certificate issued 340 days ago (25 days left, within the 30-day margin) is renewed by the first replica
    to look: a new CA and certificate replace the Secret with the resourceVersion it was read at, and the webhooks
    trust the new CA and, while it is valid, the old one, so the replica still serving the old certificate is
    trusted until its next round, after which it serves the new one (and writes nothing)."""
    clock = FakeClock(time.time() - 340 * DAY)
    first, second = await cluster.replica(clock), await cluster.replica(clock)
    old = await first.converge()
    assert await second.converge() == old
    read_at = cluster.api.secrets[(NAMESPACE, SECRET)]["metadata"]["resourceVersion"]
    clock.now = time.time()
    new = await first.converge()
    (replace,) = cluster.api.writes("PUT")
    assert (replace.status, replace.body["metadata"]["resourceVersion"]) == (200, read_at)
    assert new.cert_pem != old.cert_pem and cluster.secret_bundle() == new
    new_ca, old_ca = cas_in(new.ca_pem)
    assert old_ca == cas_in(old.ca_pem)[0]
    assert new_ca.not_valid_before_utc.timestamp() > clock.now - 2 * 3600
    assert cluster.ca_bundles() == [b64(new.ca_pem)] * len(WEBHOOK_NAMES)
    only_new = new_ca.public_bytes(serialization.Encoding.PEM)
    assert await first.trusted_by(only_new)
    assert await second.trusted_by(new.ca_pem) and not await second.trusted_by(only_new)
    writes = len(list(cluster.api.writes()))
    assert await second.converge() == new
    assert len(list(cluster.api.writes())) == writes
    assert await second.trusted_by(only_new) and not await second.trusted_by(old.ca_pem)


async def test_two_replicas_renewing_at_once_end_with_one_ca(cluster: Cluster) -> None:
    """Both replicas find the certificate due at the same moment and both replace the Secret from the same
    resourceVersion: one wins (200), the other gets 409, reads the winner's and serves it."""
    clock = FakeClock(time.time() - 340 * DAY)
    first, second = await cluster.replica(clock), await cluster.replica(clock)
    old = await first.converge()
    clock.now = time.time()
    cluster.api.hold_reads(2)
    bundles = await asyncio.gather(first.converge(), second.converge())
    assert bundles[0] == bundles[1] == cluster.secret_bundle() != old
    assert sorted(call.status for call in cluster.api.writes("PUT")) == [200, 409]
    assert cluster.ca_bundles() == [b64(bundles[0].ca_pem)] * len(WEBHOOK_NAMES)


async def test_a_secret_without_a_readable_pair_is_replaced(cluster: Cluster) -> None:
    """A Secret of that name holding something else (here a key that does not parse) is replaced, keeping its
    type and metadata, rather than served or trusted."""
    cluster.api.secrets[(NAMESPACE, SECRET)] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE, "resourceVersion": "7", "labels": {"team": "a"}},
        "type": "Opaque",
        "data": {"ca.crt": b64(b"x"), "tls.crt": b64(b"y"), "tls.key": "not base64!"},
    }
    replica = await cluster.replica(FakeClock(time.time()))
    bundle = await replica.converge()
    secret = cluster.api.secrets[(NAMESPACE, SECRET)]
    assert (secret["type"], secret["metadata"]["labels"]) == ("Opaque", {"team": "a"})
    assert cluster.secret_bundle() == bundle
    assert await replica.trusted_by(bundle.ca_pem)


async def test_the_token_is_read_again_for_every_request(cluster: Cluster) -> None:
    """The kubelet rotates a projected token while the pod runs: after the token file changes and the old token
    is revoked, the next calls carry the new one and succeed."""
    replica = await cluster.replica(FakeClock(time.time()))
    await replica.converge()
    (cluster.account / "token").write_text("token-2\n")
    cluster.api.tokens = {"token-2"}
    calls = len(cluster.api.calls)
    await replica.converge()
    assert [call.status for call in cluster.api.calls[calls:]] == [200, 200]


async def test_an_api_server_the_cluster_ca_did_not_sign_is_not_talked_to(cluster: Cluster) -> None:
    """The API server's certificate must chain to the service account's ca.crt: against another CA the round
    fails before any request is sent (so no token leaves the pod), and nothing is served."""
    TestCA("not the cluster's CA").write(cluster.account / "ca.crt")
    replica = await cluster.replica(FakeClock(time.time()))
    with pytest.raises(KubernetesError, match="the Kubernetes API did not answer"):
        await replica.converge()
    assert cluster.api.calls == []
    assert not replica.certificate.loaded


async def test_a_refusal_names_the_rbac_the_injector_needs(cluster: Cluster) -> None:
    """The stand-in grants the contract's RBAC only (its Secret by name, its webhook configuration by name): a
    Secret the Role does not name is refused with 403, and the error names the object and the RBAC to grant."""
    replica = await cluster.replica(FakeClock(time.time()), Generate(secret="other", service=SERVICE, webhook=WEBHOOK))
    with pytest.raises(KubernetesError) as raised:
        await replica.converge()
    assert raised.value.status == 403
    assert raised.value.message.startswith("cannot get the Secret other: the Kubernetes API refused it (403)")
    assert "RBAC" in raised.value.message
    assert "token-1" not in raised.value.message


async def test_the_keeper_retries_until_the_webhook_configuration_exists(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Run as the server runs it: without the webhook configuration the round logs a warning naming it and is
    tried again (every 20 ms here); the certificate is served meanwhile; once the configuration exists its caBundle
    is set. The keeper stops when told and closes its client."""
    del cluster.api.webhooks[WEBHOOK]
    certificate = ServingCertificate()
    keeper = GeneratedCertificate(cluster.client(), GENERATE, certificate, time.time, interval=3600, retry=0.02)
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="mfa_gateway"):
        task = asyncio.create_task(keeper.run(stop))
        await eventually(lambda: certificate.loaded, "the certificate served", within=10)
        await eventually(lambda: "does not exist (yet)" in caplog.text, "a warning naming the configuration", within=10)
    cluster.api.add_webhook_configuration(WEBHOOK, WEBHOOK_NAMES)
    await eventually(lambda: cluster.ca_bundles()[0] is not None, "the caBundle patched", within=10)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert cluster.ca_bundles() == [b64(cluster.secret_bundle().ca_pem)] * len(WEBHOOK_NAMES)


async def test_the_injector_built_for_generate_mode_serves_what_it_generated(cluster: Cluster) -> None:
    """The whole wiring: build_injector with tls.generate (the pod's environment and service-account files), its
    app started as the server starts it: the keeper's first round creates the Secret and patches the webhooks, and a
    review is answered over TLS verified with the Secret's CA."""
    config = InjectorConfig.model_validate({"image": IMAGE, "tls": {"generate": GENERATE.model_dump()}})
    runtime = build_injector(config, environ=cluster.api.environ, service_account=cluster.account)
    runner = await start_site(create_injector_app(runtime), "127.0.0.1", 0, ssl_context=runtime.certificate.context)
    try:
        await eventually(lambda: cluster.ca_bundles()[-1] is not None, "the webhooks patched", within=10)
        assert await verifies(bound_port(runner), cluster.secret_bundle().ca_pem, ASKED_FOR)
    finally:
        await runner.cleanup()


def test_generate_mode_outside_a_cluster_is_a_config_error(tmp_path: Path) -> None:
    """Without KUBERNETES_SERVICE_HOST/PORT (not in a pod) generate mode stops at start with exit 2's error,
    naming the variables and the alternative."""
    config = InjectorConfig.model_validate({"image": IMAGE, "tls": {"generate": GENERATE.model_dump()}})
    with pytest.raises(ConfigError) as raised:
        build_injector(config, environ={}, service_account=tmp_path)
    (problem,) = raised.value.problems
    assert problem.startswith("tls.generate needs the Kubernetes API, but KUBERNETES_SERVICE_HOST")
    assert "tls.cert_file and tls.key_file" in problem
