"""Admission reviews, golden cases: one AdmissionReview in, one answer out, per case under reviews/.

Each patch is decoded as the API server decodes it (base64, then JSON), applied with the ``jsonpatch`` library to the
review's pod, and the result must be the injection's golden pod (golden/, up to the pod's identity: a controller's pod
has a ``generateName`` instead of a name) and validate strictly against the Kubernetes 1.30 schemas. No API server
runs here: the review's shape, the patch semantics and the schemas are what is checked.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from mfa_gateway.k8s.admission import MalformedReview, review
from mfa_gateway.k8s.injection import InjectorSettings
from tests.helpers.deploy import require_module

if TYPE_CHECKING:
    import jsonpatch  # type: ignore[import-untyped]  # the package ships no type information
    import kubernetes_validate  # type: ignore[import-untyped]
else:
    jsonpatch = require_module("jsonpatch", "jsonpatch")
    kubernetes_validate = require_module("kubernetes_validate", "kubernetes-validate")

HERE = Path(__file__).parent
REVIEWS, GOLDEN = HERE / "reviews", HERE / "golden"
CASES = sorted(path.name.removesuffix(".review.json") for path in REVIEWS.glob("*.review.json"))
IDENTITY = ("name", "generateName", "namespace", "ownerReferences")
"""What a controller's pod has in place of a hand-written one's name: not the injection's business."""
SETTINGS = InjectorSettings(image="registry.example/mfa-gateway:0.9.0")


def load(case: str, side: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((REVIEWS / f"{case}.{side}.json").read_text())
    return document


def settings_for(case: str) -> InjectorSettings:
    return InjectorSettings(image=SETTINGS.image, native_sidecar=case == "native-sidecar")


def without_identity(pod: dict[str, Any]) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    for key in IDENTITY:
        pod["metadata"].pop(key, None)
    return pod


def a_review(**request: Any) -> dict[str, Any]:
    """The plain pod's review with ``request`` fields replaced (a value of None removes the field)."""
    document = load("plain-pod", "review")
    document["request"].update(request)
    document["request"] = {key: value for key, value in document["request"].items() if value is not None}
    return document


def test_every_case_of_the_brief_has_a_golden_pair() -> None:
    """The cases cover the plain pod (a Deployment's: no name), named and numbered ports, an injected pod, the
    native sidecar, a pod without the label, hostNetwork, a missing port, a forbidden override and a malformed
    review, each with its expected answer."""
    assert set(CASES) == {
        "plain-pod", "named-port", "numbered-port", "already-injected", "native-sidecar",
        "no-label", "host-network", "missing-port", "forbidden-override", "malformed-review",
    }  # fmt: skip
    assert all((REVIEWS / f"{case}.response.json").is_file() for case in CASES)
    assert "name" not in load("plain-pod", "review")["request"]["object"]["metadata"]


@pytest.mark.parametrize("case", [case for case in CASES if case != "malformed-review"])
def test_the_answer_is_the_golden_one_and_its_patch_gives_the_golden_pod(case: str) -> None:
    """review() answers the golden review (same uid; allowed with a JSON Patch, allowed without one, or refused
    with a 403 saying mfa-gateway refused and why); the patch, decoded and applied with a JSON Patch library to the
    review's pod, gives the injection's golden pod, which validates strictly; the review is never mutated."""
    document, expected = load(case, "review"), load(case, "response")
    before = copy.deepcopy(document)
    answer = review(document, settings_for(case)).answer
    assert document == before
    assert answer == expected
    response = answer["response"]
    assert response["uid"] == document["request"]["uid"]
    golden = yaml.safe_load((GOLDEN / f"{case}.out.yaml").read_text())
    pod = document["request"]["object"]
    assert without_identity(pod) == without_identity(yaml.safe_load((GOLDEN / f"{case}.in.yaml").read_text()))
    if "refused" in golden:
        assert response == {
            "uid": document["request"]["uid"],
            "allowed": False,
            "status": {"code": 403, "message": "mfa-gateway: injection refused: " + golden["refused"]},
        }
        return
    assert response["allowed"] is True
    if "patch" not in response:
        assert without_identity(pod) == without_identity(golden)
        return
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"], validate=True))
    patched = jsonpatch.apply_patch(pod, patch)
    assert without_identity(patched) == without_identity(golden)
    assert [patched["metadata"].get(key) for key in IDENTITY] == [pod["metadata"].get(key) for key in IDENTITY]
    kubernetes_validate.validate(patched, "1.30", strict=True)


def test_a_malformed_review_is_the_golden_error() -> None:
    """A review without a uid raises MalformedReview (code malformed_review): the server answers 400, never allowed."""
    expected = load("malformed-review", "response")
    with pytest.raises(MalformedReview) as raised:
        review(load("malformed-review", "review"), SETTINGS)
    assert {"success": False, "error": raised.value.message, "code": raised.value.code} == expected


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (["not", "a", "review"], "must be a JSON object"),
        ({**a_review(), "apiVersion": "admission.k8s.io/v1beta1"}, "must be an admission.k8s.io/v1 AdmissionReview"),
        ({**a_review(), "kind": "TokenReview"}, "must be an admission.k8s.io/v1 AdmissionReview"),
        ({**a_review(), "request": None}, "has no request"),
        (a_review(uid=""), "has no uid"),
        (a_review(uid=7), "has no uid"),
        (a_review(kind=None), "has no kind or operation"),
        (a_review(operation=["CREATE"]), "has no kind or operation"),
        (a_review(namespace=3), "must be strings"),
        (a_review(object=None), "request.object must be a Pod"),
        (a_review(object=["a pod"]), "request.object must be a Pod"),
    ],
)
def test_what_is_not_a_readable_review_is_malformed(document: Any, message: str) -> None:
    """Not a v1 AdmissionReview, no uid, no kind or operation, a Pod CREATE whose object is not a map: each raises
    MalformedReview (400, so the API server fails closed), and the message quotes nothing from the review."""
    with pytest.raises(MalformedReview) as raised:
        review(document, SETTINGS)
    assert message in raised.value.message
    assert raised.value.code == "malformed_review"
    assert "TokenReview" not in raised.value.message and "v1beta1" not in raised.value.message


def test_a_malformed_pod_in_a_review_keeps_its_uid() -> None:
    """When the review had a uid, the error carries it, so the server's log line can name the review."""
    with pytest.raises(MalformedReview) as raised:
        review(a_review(object="a pod"), SETTINGS)
    assert raised.value.uid == load("plain-pod", "review")["request"]["uid"]


@pytest.mark.parametrize(
    "request_fields",
    [
        {"operation": "UPDATE", "oldObject": load("plain-pod", "review")["request"]["object"]},
        {"operation": "DELETE", "object": None},
        {"subResource": "ephemeralcontainers", "operation": "UPDATE"},
        {"kind": {"group": "apps", "version": "v1", "kind": "Deployment"}, "object": {"spec": "anything"}},
        {"kind": {"group": "", "version": "v1", "kind": "ConfigMap"}, "object": "not even a map"},
    ],
)
def test_anything_but_a_pod_create_is_allowed_unchanged(request_fields: dict[str, Any]) -> None:
    """Another operation, a subresource or another kind is allowed without a patch (and without reading the
    object): a registration written too broadly cannot block the cluster's other objects or updates."""
    reviewed = review(a_review(**request_fields), SETTINGS)
    assert reviewed.answer["response"] == {"uid": load("plain-pod", "review")["request"]["uid"], "allowed": True}
    assert reviewed.result == "ignored"


def test_the_log_fields_name_the_review_and_never_hold_the_spec() -> None:
    """What the server logs per review: uid, namespace (the request's, as a controller's pod has none), kind, the
    pod's name (its generateName for a controller's pod) and the result; no field holds the pod's spec."""
    reviewed = review(load("plain-pod", "review"), SETTINGS)
    assert (reviewed.uid, reviewed.namespace, reviewed.kind, reviewed.name, reviewed.result) == (
        "7f0c2a9e-1b3d-4c5e-8f60-000000000001",
        "shop",
        "Pod",
        "legacy-5d8f7c9b4-*",
        "injected",
    )
    named = review(load("host-network", "review"), SETTINGS)
    assert (named.name, named.result) == ("node-agent", "refused")
