"""Sidecar injection, golden cases: one pod in, the expected pod (or refusal) out, per case under golden/.

Each injected pod is reached by applying :func:`json_patch`'s operations to the input with the ``jsonpatch`` library
(as the API server applies a webhook's patch), must equal the golden output and validate strictly against the
Kubernetes 1.30 schemas. No API server runs here: the schemas and the patch semantics are what is checked.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from mfa_gateway.k8s.injection import Injected, InjectorSettings, Refused, inject, json_patch
from tests.helpers.deploy import require_module

if TYPE_CHECKING:
    import jsonpatch  # type: ignore[import-untyped]  # the package ships no type information
    import kubernetes_validate  # type: ignore[import-untyped]
else:
    jsonpatch = require_module("jsonpatch", "jsonpatch")
    kubernetes_validate = require_module("kubernetes_validate", "kubernetes-validate")

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(path.name.removesuffix(".in.yaml") for path in GOLDEN.glob("*.in.yaml"))
KUBE_VERSION = "1.30"
IMAGE = "registry.example/mfa-gateway:0.9.0"


def settings_for(case: str) -> InjectorSettings:
    return InjectorSettings(image=IMAGE, native_sidecar=case == "native-sidecar")


def load(case: str, side: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((GOLDEN / f"{case}.{side}.yaml").read_text())
    return document


def injected(pod: dict[str, Any], settings: InjectorSettings) -> Injected:
    outcome = inject(pod, settings)
    assert isinstance(outcome, Injected), outcome
    return outcome


def test_every_case_of_the_brief_has_a_golden_pair() -> None:
    """The golden cases cover the plain pod, named and numbered ports, an injected pod, the native sidecar, a pod
    without the opt-in label, hostNetwork, a missing port and a forbidden override, each with its expected output."""
    assert set(CASES) == {
        "plain-pod", "named-port", "numbered-port", "already-injected", "native-sidecar",
        "no-label", "host-network", "missing-port", "forbidden-override",
    }  # fmt: skip
    assert all((GOLDEN / f"{case}.out.yaml").is_file() for case in CASES)


@pytest.mark.parametrize("case", CASES)
def test_the_patch_applied_to_the_input_gives_the_golden_pod_and_it_validates(case: str) -> None:
    """inject() answers the golden output; its JSON Patch, applied by a JSON Patch library, turns the input into it;
    the result validates strictly against the Kubernetes schemas; the input is never mutated."""
    pod, expected = load(case, "in"), load(case, "out")
    before = copy.deepcopy(pod)
    outcome = inject(pod, settings_for(case))
    assert pod == before
    if "refused" in expected:
        assert isinstance(outcome, Refused)
        assert outcome.message == expected["refused"]
        return
    assert isinstance(outcome, Injected)
    assert outcome.result == expected
    patch = json_patch(pod, outcome.result)
    assert jsonpatch.apply_patch(pod, patch) == expected
    assert outcome.changed is (patch != [])
    kubernetes_validate.validate(expected, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("case", [case for case in CASES if "refused" not in load(case, "out")])
def test_a_second_pass_changes_nothing(case: str) -> None:
    """Injection is idempotent: the injected pod passes again unchanged, with an empty patch."""
    once = injected(load(case, "in"), settings_for(case)).result
    twice = injected(once, settings_for(case))
    assert twice.result == once
    assert not twice.changed
    assert json_patch(once, twice.result) == []


def test_the_upstream_is_the_apps_port_on_loopback() -> None:
    """The gateway's upstream is the app's port number on 127.0.0.1, for a named and a numbered port alike."""
    assert injected(load("named-port", "in"), settings_for("named-port")).upstream == "http://127.0.0.1:3000"
    assert injected(load("numbered-port", "in"), settings_for("numbered-port")).upstream == "http://127.0.0.1:8080"


def test_the_image_comes_only_from_the_settings() -> None:
    """Whatever the pod says, the gateway's image is the injector's."""
    pod = load("plain-pod", "in")
    result = injected(pod, InjectorSettings(image="mine:1")).result
    assert [c["image"] for c in result["spec"]["containers"] if c["name"] == "mfa-gateway"] == ["mine:1"]


def plain_pod(**changes: Any) -> dict[str, Any]:
    pod = load("plain-pod", "in")
    pod["metadata"]["annotations"].update(changes.pop("annotations", {}))
    pod["metadata"]["labels"].update(changes.pop("labels", {}))
    pod["spec"].update(changes)
    return pod


SECOND_APP = {"name": "admin", "image": "admin:1", "ports": [{"name": "http", "containerPort": 8081}]}


@pytest.mark.parametrize(
    ("pod", "message"),
    [
        (plain_pod(annotations={"mfa-gateway.io/env": "DEBUG=1"}), "mfa-gateway.io/env is not allowed"),
        (plain_pod(annotations={"mfa-gateway.io/privileged": "true"}), "mfa-gateway.io/privileged is not allowed"),
        (plain_pod(annotations={"mfa-gateway.io/command": "sh"}), "mfa-gateway.io/command is not allowed"),
        (plain_pod(labels={"mfa-gateway.io/inject": "yes"}), 'label mfa-gateway.io/inject must be "true" or "false"'),
        (plain_pod(annotations={"mfa-gateway.io/port": "9090"}), "is the gateway's own port"),
        (plain_pod(annotations={"mfa-gateway.io/port": "admin"}), "no container declares a port with that name"),
        (plain_pod(annotations={"mfa-gateway.io/status": "injected"}), "there is no mfa-gateway container"),
        (plain_pod(annotations={"mfa-gateway.io/config": "Not_A_Name"}), "not a valid Kubernetes object name"),
        (plain_pod(annotations={"mfa-gateway.io/memory": "lots"}), "not a Kubernetes quantity"),
        (plain_pod(containers=[*plain_pod()["spec"]["containers"], SECOND_APP]), "is ambiguous"),
        (plain_pod(containers={"app": "not a list"}), "the pod spec is malformed"),
        (plain_pod(containers=[{"name": "app", "ports": ["http"]}]), "the pod spec is malformed"),
        (
            plain_pod(containers=[{"name": "app", "image": "a", "ports": [{"name": "http", "containerPort": 9464}]}]),
            "declares port 9464, which the gateway listens on",
        ),
    ],
)
def test_what_the_injector_cannot_protect_is_refused(pod: dict[str, Any], message: str) -> None:
    """Overrides that could weaken the gateway, unreadable annotations or spec, ambiguous ports, port clashes and a
    claimed but absent injection are refused with a message saying why, never injected half-way or passed through."""
    outcome = inject(pod, InjectorSettings(image=IMAGE))
    assert isinstance(outcome, Refused)
    assert message in outcome.message


def labelled(pod: dict[str, Any], label: str | None) -> dict[str, Any]:
    """``pod`` with its opt-in label set to ``label``, or without any label (None)."""
    if label is None:
        del pod["metadata"]["labels"]
    else:
        pod["metadata"]["labels"]["mfa-gateway.io/inject"] = label
    return pod


@pytest.mark.parametrize("label", ["true", "false", None])
def test_the_old_opt_in_annotation_is_refused_with_a_hint_to_use_the_label(label: str | None) -> None:
    """A pod that says mfa-gateway.io/inject as an annotation (how pods opted in before) is refused whatever its
    label says, with the fix: the webhook never sees a pod without the label, so passing it through would leave
    the pod without its gateway and without a word."""
    pod = labelled(plain_pod(annotations={"mfa-gateway.io/inject": "true"}), label)
    outcome = inject(pod, InjectorSettings(image=IMAGE))
    assert isinstance(outcome, Refused)
    assert 'opt in with the label mfa-gateway.io/inject: "true"' in outcome.message


@pytest.mark.parametrize("label", [None, "false"])
def test_a_pod_without_the_label_passes_unchanged_whatever_its_other_annotations(label: str | None) -> None:
    """Only the label opts in: without it (or with "false") even a pod carrying the gateway's other annotations,
    and an override the injector would refuse, passes as it is."""
    pod = labelled(plain_pod(annotations={"mfa-gateway.io/image": "attacker.example/x:1"}), label)
    outcome = inject(pod, InjectorSettings(image=IMAGE))
    assert isinstance(outcome, Injected)
    assert not outcome.changed
    assert outcome.result == pod


def test_labels_that_are_not_a_map_are_refused() -> None:
    """metadata.labels of the wrong shape is refused, never read as "no label"."""
    pod = plain_pod()
    pod["metadata"]["labels"] = ["mfa-gateway.io/inject"]
    outcome = inject(pod, InjectorSettings(image=IMAGE))
    assert isinstance(outcome, Refused)
    assert outcome.message == "metadata.labels is not a map"


def test_the_patch_escapes_annotation_keys() -> None:
    """Annotation keys hold '/', which a JSON Pointer writes as '~1' (RFC 6901)."""
    pod = load("plain-pod", "in")
    patch = json_patch(pod, injected(pod, settings_for("plain-pod")).result)
    assert {"op": "add", "path": "/metadata/annotations/mfa-gateway.io~1status", "value": "injected"} in patch
