"""The admission webhook over real HTTPS: reviews in, answers out, and every refusal in the product's JSON shape.

Clients verify the server's certificate against the CA that signed it (as the API server does with the webhook's
``caBundle``). No API server runs here: the reviews are the golden ones of tests/unit/k8s/reviews/, and each patch is
applied with ``jsonpatch`` and validated with ``kubernetes_validate`` for Kubernetes 1.30.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
from typing import TYPE_CHECKING

import aiohttp
import pytest

from tests.helpers.certificates import TestCA
from tests.helpers.deploy import require_module
from tests.integration.injector.conftest import Webhook, review_bytes, verifies

if TYPE_CHECKING:
    import jsonpatch  # type: ignore[import-untyped]  # the package ships no type information
    import kubernetes_validate  # type: ignore[import-untyped]
else:
    jsonpatch = require_module("jsonpatch", "jsonpatch")
    kubernetes_validate = require_module("kubernetes_validate", "kubernetes-validate")

UID = "7f0c2a9e-1b3d-4c5e-8f60-000000000001"


async def test_an_opted_in_pod_gets_a_patch_that_applies_and_validates(webhook: Webhook) -> None:
    """A Deployment's pod (no name, the namespace in the request) that opts in: 200, the same uid, allowed, a
    base64 JSON Patch which, applied to the pod, gives a pod with the gateway that validates strictly."""
    answer = await webhook.review(review_bytes("plain-pod"))
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.body["apiVersion"] == "admission.k8s.io/v1" and answer.body["kind"] == "AdmissionReview"
    response = answer.body["response"]
    assert (response["uid"], response["allowed"], response["patchType"]) == (UID, True, "JSONPatch")
    pod = json.loads(review_bytes("plain-pod"))["request"]["object"]
    patched = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"], validate=True)))
    assert [c["name"] for c in patched["spec"]["containers"]] == ["app", "mfa-gateway"]
    assert patched["metadata"]["annotations"]["mfa-gateway.io/status"] == "injected"
    kubernetes_validate.validate(patched, "1.30", strict=True)


async def test_a_pod_the_injector_cannot_protect_is_denied_with_the_reason(webhook: Webhook) -> None:
    """A refused pod is answered 200 (the review was read) with allowed: false and a 403 status whose message says
    mfa-gateway refused it and why: the API server rejects the pod and shows that message."""
    answer = await webhook.review(review_bytes("host-network"))
    assert answer.status == 200
    response = answer.body["response"]
    assert response["allowed"] is False
    assert "patch" not in response
    assert response["status"]["code"] == 403
    assert response["status"]["message"].startswith("mfa-gateway: injection refused: hostNetwork: true")


async def test_a_pod_without_the_label_is_allowed_unchanged(webhook: Webhook) -> None:
    """A pod that does not opt in (were the registration to send it) is allowed without a patch."""
    answer = await webhook.review(review_bytes("no-label"))
    assert answer.status == 200
    assert answer.body["response"] == {"uid": "7f0c2a9e-1b3d-4c5e-8f60-000000000006", "allowed": True}


def _without_uid() -> bytes:
    document = json.loads(review_bytes("plain-pod"))
    del document["request"]["uid"]
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"[1, 2, 3]",
        b'{"apiVersion": "admission.k8s.io/v1", "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
        review_bytes("plain-pod").replace(b"admission.k8s.io/v1", b"admission.k8s.io/v1beta1"),
        _without_uid(),
        b"\xff\xfe{}",
        b"",
    ],
    ids=["not-json", "array", "duplicate-key", "v1beta1", "no-uid", "not-utf8", "empty"],
)
async def test_a_malformed_review_is_400_with_a_stable_code(webhook: Webhook, body: bytes) -> None:
    """Whatever is not a readable admission.k8s.io/v1 AdmissionReview is 400 malformed_review in the product's
    JSON shape, never an answer that lets the pod through and never a 500; the body quotes nothing sent."""
    answer = await webhook.review(body)
    assert answer.status == 400
    assert answer.body["success"] is False
    assert answer.body["code"] == "malformed_review"
    assert "response" not in answer.body
    assert "v1beta1" not in answer.body["error"] and "not json" not in answer.body["error"]


async def test_only_a_json_body_of_bounded_size_is_read(webhook: Webhook) -> None:
    """Another content type is 415 json_required, a compressed body 415 unsupported_encoding, and a body over the
    limit 413 body_too_large: each in the product's JSON shape."""
    as_text = await webhook.request("POST", "/mutate", review_bytes("plain-pod"), {"Content-Type": "text/plain"})
    assert (as_text.status, as_text.body["code"]) == (415, "json_required")
    gzipped = await webhook.request(
        "POST", "/mutate", gzip.compress(review_bytes("plain-pod")), {"Content-Encoding": "gzip"}
    )
    assert (gzipped.status, gzipped.body["code"]) == (415, "unsupported_encoding")
    too_large = await webhook.review(b"[" + b" " * (4 * 1024 * 1024) + b"]")
    assert (too_large.status, too_large.body["code"]) == (413, "body_too_large")


async def test_other_routes_and_methods_answer_in_the_products_json_shape(webhook: Webhook) -> None:
    """GET /mutate is 405 with Allow: POST, an unknown path 404: JSON with a stable code, never aiohttp's text."""
    wrong_method = await webhook.request("GET", "/mutate")
    assert (wrong_method.status, wrong_method.body["code"]) == (405, "method_not_allowed")
    assert wrong_method.headers["Allow"] == "POST"
    unknown = await webhook.request("GET", "/admin")
    assert unknown.status == 404
    assert unknown.body == {"success": False, "error": "No such endpoint.", "code": "not_found"}


async def test_health_and_readiness(webhook: Webhook) -> None:
    """healthz is 200; readyz is 200 with the certificate loaded (the fixture loaded it)."""
    assert (await webhook.request("GET", "/healthz")).body == {"status": "ok"}
    ready = await webhook.request("GET", "/readyz")
    assert (ready.status, ready.body) == (200, {"status": "ready", "checks": {"certificate": "ok"}})


async def test_it_speaks_only_tls_verified_against_its_ca(webhook: Webhook) -> None:
    """A client that trusts another CA cannot complete the handshake, and plain HTTP gets no answer: reviews
    reach the webhook only over TLS from a client that trusts its CA."""
    assert await verifies(webhook.port, webhook.ca.pem)
    assert not await verifies(webhook.port, TestCA("another CA").pem)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            await session.post(f"http://127.0.0.1:{webhook.port}/mutate", data=review_bytes("plain-pod"))


async def test_one_log_line_per_review_names_it_and_never_holds_the_spec(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    """Each review is one log line with its uid, namespace, kind, the pod's name and the result; nothing of the
    pod's spec (images, ports, annotations) is logged, for an injected, a refused or a malformed review."""
    caplog.set_level(logging.INFO, logger="mfa_gateway")
    await webhook.review(review_bytes("plain-pod"))
    await webhook.review(review_bytes("host-network"))
    await webhook.review(_without_uid())
    lines = [r for r in caplog.records if r.name == "mfa_gateway.injector"]
    fields = [{key: getattr(r, key, None) for key in ("uid", "namespace", "kind", "pod", "result")} for r in lines]
    assert fields == [
        {"uid": UID, "namespace": "shop", "kind": "Pod", "pod": "legacy-5d8f7c9b4-*", "result": "injected"},
        {
            "uid": "7f0c2a9e-1b3d-4c5e-8f60-000000000007",
            "namespace": "shop",
            "kind": "Pod",
            "pod": "node-agent",
            "result": "refused",
        },
        {"uid": "", "namespace": None, "kind": None, "pod": None, "result": None},
    ]
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for spec_value in ("legacy-app:1.0", "agent:1", "legacy-gateway", "containerPort", "hostNetwork: true\n"):
        assert spec_value not in logged
