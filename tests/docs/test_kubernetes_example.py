"""The Kubernetes worked example (docs/examples/kubernetes/, on docs/deployment/kubernetes.md) is what the code does.

The page includes the example's files with pymdownx.snippets, so what it shows is what is checked here. The files a
person writes (app.yaml, gateway-config.yaml, app-opted-in.yaml) must be Kubernetes 1.30 objects, the opted-in
Deployment app.yaml's with only the label and the annotations added, and the gateway's config valid and in step with
what the injector injects. The files the code writes must equal what it writes now: app-opted-in.injected.yaml
(``mfa-gateway inject -f``, run as a process), refused.inject.txt (its refusal when the port annotation names no
port) and refused.webhook.txt (the ReplicaSet's event when the webhook, with the settings the chart's injector-only
release gives it, refuses the same pod: the API server's wording around the webhook's own message). The webhook must
give the pods exactly the spec ``inject -f`` gives the template. No API server runs: what it does with an answer is
its documented behaviour, not observed here.

After an intended change, regenerate the outputs and read the diff:
    .venv/bin/python -m tests.docs.test_kubernetes_example
"""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from mfa_gateway.config import parse_settings
from mfa_gateway.k8s.admission import REFUSED_PREFIX, review
from mfa_gateway.k8s.injection import DOMAIN, GATEWAY_PORT, METRICS_PORT, PREFIX, Injected, InjectorSettings, inject
from mfa_gateway.k8s.injector_config import InjectorConfig
from tests.deploy.test_helm import Rendered, render, scenario
from tests.helpers.deploy import REPO, require_module

if TYPE_CHECKING:
    import jsonpatch  # type: ignore[import-untyped]  # the package ships no type information
    import kubernetes_validate  # type: ignore[import-untyped]
else:
    jsonpatch = require_module("jsonpatch", "jsonpatch")
    kubernetes_validate = require_module("kubernetes_validate", "kubernetes-validate")

EXAMPLE = REPO / "docs" / "examples" / "kubernetes"
PAGE = REPO / "docs" / "deployment" / "kubernetes.md"
REGENERATE = ".venv/bin/python -m tests.docs.test_kubernetes_example"
KUBE_VERSION = "1.30"
# The image the injector-only release (helm/mfa-gateway/ci/injector-only.yaml) injects; inject -f is given the same.
IMAGE = "registry.example/mfa-gateway:0.1.0"
OPT_IN = {f"{DOMAIN}inject": "true"}
ANNOTATIONS = {
    f"{DOMAIN}port": "http",
    f"{DOMAIN}config": "inventory-mfa-gateway",
    f"{DOMAIN}secret": "inventory-mfa-keys",
}
# The refusal shown on the page: the port annotation names a port the pod does not declare.
TYPO = (f"{DOMAIN}port: http ", f"{DOMAIN}port: web  ")
WRITTEN = ("app.yaml", "gateway-config.yaml", "app-opted-in.yaml")
GENERATED = ("app-opted-in.injected.yaml", "refused.inject.txt", "refused.webhook.txt")


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLE / name).read_text()) if d]


def one(name: str, kind: str) -> dict[str, Any]:
    (found,) = (d for d in documents(name) if d["kind"] == kind)
    return found


def run_inject(folder: Path) -> subprocess.CompletedProcess[str]:
    """``mfa-gateway inject -f app-opted-in.yaml --image IMAGE`` in ``folder``, as the page shows it."""
    command = [sys.executable, "-m", "mfa_gateway", "inject", "-f", "app-opted-in.yaml", "--image", IMAGE]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=60, check=False)


def with_typo() -> str:
    """app-opted-in.yaml with the port annotation naming a port the pod does not declare."""
    text = (EXAMPLE / "app-opted-in.yaml").read_text()
    assert text.count(TYPO[0]) == 1, f"app-opted-in.yaml should have one line starting {TYPO[0]!r}"
    return text.replace(*TYPO)


def refused_deployment() -> dict[str, Any]:
    (deployment,) = (d for d in yaml.safe_load_all(with_typo()) if d and d["kind"] == "Deployment")
    assert isinstance(deployment, dict)
    return deployment


@cache
def injector_only() -> Rendered:
    """The chart's injector-only release, helm/mfa-gateway/ci/injector-only.yaml (the page installs it)."""
    return render(scenario("injector-only"))


def chart_injector() -> tuple[InjectorSettings, dict[str, Any]]:
    """The injector's settings and its webhook registration, as the chart's injector-only release renders them."""
    rendered = injector_only()
    config = yaml.safe_load(rendered.one("ConfigMap")["data"]["injector.yaml"])
    (hook,) = rendered.one("MutatingWebhookConfiguration")["webhooks"]
    return InjectorConfig.model_validate(config).injection(), hook


def chart_app_network_policy() -> dict[str, Any]:
    (policy,) = [p for p in injector_only().all("NetworkPolicy") if p["metadata"].get("namespace")]
    return policy


def pod_review(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The AdmissionReview the API server sends when the Deployment's ReplicaSet creates a pod: the template with a
    generateName and the pod-template-hash label, no name, the namespace only in the request."""
    template = copy.deepcopy(deployment["spec"]["template"])
    metadata = template["metadata"]
    metadata["generateName"] = f"{deployment['metadata']['name']}-6d4cf56db6-"
    metadata["labels"]["pod-template-hash"] = "6d4cf56db6"
    request = {
        "uid": "0a3b9c1e-5f2d-4c6b-9e8a-7d1f2b3c4d5e",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": deployment["metadata"]["namespace"],
        "operation": "CREATE",
        "object": {"apiVersion": "v1", "kind": "Pod", **template},
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def webhook_answer(deployment: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The review of one of the Deployment's pods, and the webhook's answer to it."""
    settings, _ = chart_injector()
    sent = pod_review(deployment)
    answer: dict[str, Any] = review(sent, settings).answer["response"]
    return sent, answer


@cache
def generated() -> dict[str, str]:
    """What the code writes for the example now, by file name."""
    injected = run_inject(EXAMPLE)
    assert (injected.returncode, injected.stderr) == (0, ""), injected.stderr
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "app-opted-in.yaml").write_text(with_typo())
        refused = run_inject(Path(folder))
    assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
    _, answer = webhook_answer(refused_deployment())
    assert answer["allowed"] is False, answer
    _, hook = chart_injector()
    # The API server's wording (admission webhook "NAME" denied the request: MESSAGE), in the ReplicaSet
    # controller's FailedCreate event (Error creating: ...).
    event = f'Error creating: admission webhook "{hook["name"]}" denied the request: {answer["status"]["message"]}\n'
    return {
        "app-opted-in.injected.yaml": injected.stdout,
        "refused.inject.txt": refused.stderr,
        "refused.webhook.txt": event,
    }


def injected_template() -> dict[str, Any]:
    template: dict[str, Any] = one("app-opted-in.injected.yaml", "Deployment")["spec"]["template"]
    return template


def container(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    (found,) = (c for c in spec["containers"] if c["name"] == name)
    assert isinstance(found, dict)
    return found


# --- The files the code writes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GENERATED)
def test_the_committed_output_is_what_the_code_produces_now(name: str) -> None:
    """Each generated file of the example equals what inject -f and the webhook's answer produce now."""
    assert (EXAMPLE / name).read_text() == generated()[name], (
        f"docs/examples/kubernetes/{name} differs from what the code produces now. If the change is intended, "
        f"regenerate the example's outputs with `{REGENERATE}` and read the diff."
    )


def test_a_refusal_says_the_same_on_both_paths() -> None:
    """The webhook denies the pod (403, not created) with the same reason inject -f gives (exit 2, nothing written),
    each naming who refused; the reason names the annotation and the port."""
    text = (EXAMPLE / "refused.inject.txt").read_text()
    match = re.fullmatch(r"mfa-gateway: Deployment/inventory in namespace shop: injection refused: (.+)\n", text)
    assert match, text
    _, answer = webhook_answer(refused_deployment())
    assert answer["status"] == {"code": 403, "message": REFUSED_PREFIX + match[1]}
    assert "mfa-gateway.io/port 'web'" in match[1]


def test_the_webhook_gives_the_pods_what_inject_f_gives_the_template() -> None:
    """With the chart's injector-only release, the webhook selects the example's pods and patches each one (the patch
    applied as the API server applies it) into the pod template inject -f wrote, except for what the ReplicaSet adds."""
    deployment = one("app-opted-in.yaml", "Deployment")
    _, hook = chart_injector()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(key) == value for key, value in hook["objectSelector"]["matchLabels"].items())
    assert deployment["metadata"]["namespace"] not in hook["namespaceSelector"]["matchExpressions"][0]["values"]
    sent, answer = webhook_answer(deployment)
    assert answer["allowed"] is True and answer["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(answer["patch"]))
    pod = jsonpatch.apply_patch(sent["request"]["object"], patch)
    expected = injected_template()
    assert pod["spec"] == expected["spec"]
    assert pod["metadata"]["annotations"] == expected["metadata"]["annotations"]
    assert {k: v for k, v in pod["metadata"]["labels"].items() if k != "pod-template-hash"} == expected["metadata"][
        "labels"
    ]


# --- The files a person writes -----------------------------------------------------------------------------------


def test_the_opted_in_deployment_is_app_yaml_plus_the_label_and_the_annotations() -> None:
    """app-opted-in.yaml is app.yaml with one label and three annotations added to the pod template, nothing else;
    the Service is the same."""
    before, after = one("app.yaml", "Deployment"), one("app-opted-in.yaml", "Deployment")
    metadata = after["spec"]["template"]["metadata"]
    assert metadata["annotations"] == ANNOTATIONS
    assert {k: v for k, v in metadata["labels"].items() if k not in OPT_IN} == before["spec"]["template"]["metadata"][
        "labels"
    ]
    assert {k: metadata["labels"][k] for k in OPT_IN} == OPT_IN
    undone = copy.deepcopy(after)
    del undone["spec"]["template"]["metadata"]["annotations"]
    for key in OPT_IN:
        del undone["spec"]["template"]["metadata"]["labels"][key]
    assert undone == before
    assert one("app-opted-in.yaml", "Service") == one("app.yaml", "Service")
    assert [d["kind"] for d in documents("app-opted-in.injected.yaml")] == ["Deployment", "Service"]


@pytest.mark.parametrize("name", [*WRITTEN, "app-opted-in.injected.yaml"])
def test_every_object_validates_against_kubernetes_1_30(name: str) -> None:
    """Every object of the example, written or injected, validates strictly against the Kubernetes 1.30 schemas."""
    for document in documents(name):
        kubernetes_validate.validate(document, KUBE_VERSION, strict=True)


def test_the_gateway_config_is_valid_and_matches_what_is_injected() -> None:
    """gateway.yaml passes the gateway's own validation; its upstream is the app's port on 127.0.0.1 (what the
    injection reports), it listens where the injected container is probed and scraped, and its ConfigMap is the one
    the pods name, in their namespace."""
    config_map = one("gateway-config.yaml", "ConfigMap")
    settings = parse_settings(yaml.safe_load(config_map["data"]["gateway.yaml"]), base_dir=Path("/etc/mfa-gateway"))
    deployment = one("app-opted-in.yaml", "Deployment")
    outcome = inject(deployment["spec"]["template"], InjectorSettings(image=IMAGE))
    assert isinstance(outcome, Injected)
    assert settings.upstream.url == outcome.upstream == "http://127.0.0.1:8080"
    assert (settings.listen.port, settings.admin.enabled, settings.admin.port) == (GATEWAY_PORT, True, METRICS_PORT)
    assert settings.prefix == PREFIX
    assert config_map["metadata"]["name"] == ANNOTATIONS[f"{DOMAIN}config"]
    assert config_map["metadata"]["namespace"] == deployment["metadata"]["namespace"]


def test_the_service_now_reaches_the_gateway_and_the_app_keeps_its_probe() -> None:
    """The unchanged Service targets the port name http, which the injected pod gives the gateway (9090); the app's
    port is renamed http-app and its readiness probe follows it, so the kubelet still probes the app itself."""
    spec = injected_template()["spec"]
    target = one("app-opted-in.injected.yaml", "Service")["spec"]["ports"][0]["targetPort"]
    ports = {p["name"]: (c["name"], p["containerPort"]) for c in spec["containers"] for p in c.get("ports", [])}
    assert ports[target] == ("mfa-gateway", GATEWAY_PORT)
    assert ports["http-app"] == ("app", 8080)
    assert container(spec, "app")["readinessProbe"]["httpGet"]["port"] == "http-app"


def test_the_charts_network_policy_admits_only_the_gateway_to_the_example_pods() -> None:
    """The injector-only release's NetworkPolicy in the example's namespace selects the injected pods and admits
    the gateway's port only: not the app's, which stays reachable by pod IP otherwise."""
    policy = chart_app_network_policy()
    template = injected_template()
    assert policy["metadata"]["namespace"] == one("app-opted-in.yaml", "Deployment")["metadata"]["namespace"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert all(template["metadata"]["labels"].get(key) == value for key, value in selector.items())
    admitted = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert admitted == [container(template["spec"], "mfa-gateway")["ports"][0]["containerPort"]]
    assert 8080 not in admitted


def test_the_page_shows_every_file_of_the_example() -> None:
    """docs/deployment/kubernetes.md includes each file of the example (the build fails on a missing one), and the
    example holds nothing else."""
    page = PAGE.read_text()
    included = set(re.findall(r'--8<-- "docs/examples/kubernetes/([^"]+)"', page))
    assert included == {p.name for p in EXAMPLE.iterdir()} == {*WRITTEN, *GENERATED}
    assert '--8<-- "helm/mfa-gateway/ci/injector-only.yaml"' in page


def main() -> None:
    """Write the generated files of the example from the code as it is now."""
    for name, text in generated().items():
        (EXAMPLE / name).write_text(text)
        print(f"wrote docs/examples/kubernetes/{name}")


if __name__ == "__main__":
    main()
