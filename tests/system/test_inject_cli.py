"""``mfa-gateway inject -f``: every workload kind round-trips through the injection; other documents are untouched.

The command runs as a process (``python -m mfa_gateway``), as an operator's pipeline would run it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from mfa_gateway.k8s.injection import InjectorSettings, inject

if TYPE_CHECKING:
    import kubernetes_validate  # type: ignore[import-untyped]  # the package ships no type information
else:
    from tests.helpers.deploy import require_module

    kubernetes_validate = require_module("kubernetes_validate", "kubernetes-validate")

CLI = [sys.executable, "-m", "mfa_gateway", "inject"]
IMAGE = "registry.example/mfa-gateway:0.9.0"
TEMPLATE = """\
metadata:
  labels: {app: legacy, mfa-gateway.io/inject: "true"}
  annotations:
    mfa-gateway.io/port: http
    mfa-gateway.io/config: legacy-gateway
spec:
  containers:
    - name: app
      image: legacy-app:1.0
      ports:
        - name: http
          containerPort: 8080
"""
UNTOUCHED = """\
# The gateway's config, as the operator wrote it (comments, quoting and order kept).
apiVersion: v1
kind: ConfigMap
metadata: {name: legacy-gateway}
data:
  gateway.yaml: |
    upstream: {url: "http://127.0.0.1:8080"}
---
apiVersion: v1
kind: Service
metadata:
  name: legacy
spec:
  selector: {app: legacy}
  ports:
    - port: 80
      targetPort: http   # the gateway takes this name over
"""


def template(indent: int) -> str:
    """The pod template (metadata + spec) opting in, indented for its place in a workload."""
    return "".join(" " * indent + line + "\n" for line in TEMPLATE.splitlines())


WORKLOADS = {
    "Pod": "apiVersion: v1\nkind: Pod\n" + template(0).replace("metadata:\n", "metadata:\n  name: legacy\n", 1),
    "Deployment": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: legacy}\nspec:\n"
    "  selector: {matchLabels: {app: legacy}}\n  template:\n" + template(4),
    "StatefulSet": "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: legacy}\nspec:\n"
    "  serviceName: legacy\n  selector: {matchLabels: {app: legacy}}\n  template:\n" + template(4),
    "DaemonSet": "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: legacy}\nspec:\n"
    "  selector: {matchLabels: {app: legacy}}\n  template:\n" + template(4),
    "Job": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: legacy}\nspec:\n  template:\n"
    + template(4).replace("    spec:\n", "    spec:\n      restartPolicy: Never\n"),
    "CronJob": "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: legacy}\nspec:\n  schedule: '@daily'\n"
    "  jobTemplate:\n    spec:\n      template:\n"
    + template(8).replace("        spec:\n", "        spec:\n          restartPolicy: Never\n"),
}
PATHS = {"CronJob": ("spec", "jobTemplate", "spec", "template"), "Pod": ()}


def pod_of(document: dict[str, Any]) -> dict[str, Any]:
    node = document
    for key in PATHS.get(document["kind"], ("spec", "template")):
        node = node[key]
    return node


def run_inject(tmp_path: Path, manifest: str, *extra: str) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "manifest.yaml"
    source.write_text(manifest)
    return subprocess.run(
        [*CLI, "-f", str(source), "--image", IMAGE, *extra], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_workload_fixtures_are_valid_kubernetes_objects() -> None:
    """Every workload handed to the command validates against the Kubernetes 1.30 schemas before injection."""
    for text in WORKLOADS.values():
        kubernetes_validate.validate(yaml.safe_load(text), "1.30", strict=True)


@pytest.mark.parametrize("kind", sorted(WORKLOADS))
def test_every_workload_kind_gets_the_gateway_and_the_rest_is_byte_identical(kind: str, tmp_path: Path) -> None:
    """Each workload kind's pod template is injected exactly as inject() does it, the result validates, and the
    ConfigMap and Service documents around it come out byte for byte (comments and all)."""
    first, last = UNTOUCHED.split("---\n")
    done = run_inject(tmp_path, first + "---\n" + WORKLOADS[kind] + "---\n" + last)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(first + "---\n")
    assert done.stdout.endswith("---\n" + last)
    documents = list(yaml.safe_load_all(done.stdout))
    assert [d["kind"] for d in documents] == ["ConfigMap", kind, "Service"]
    expected = inject(pod_of(yaml.safe_load(WORKLOADS[kind])), InjectorSettings(image=IMAGE))
    assert pod_of(documents[1]) == expected.result  # type: ignore[union-attr]
    assert pod_of(documents[1])["metadata"]["annotations"]["mfa-gateway.io/status"] == "injected"
    kubernetes_validate.validate(documents[1], "1.30", strict=True)


def test_a_second_run_over_the_output_changes_nothing(tmp_path: Path) -> None:
    """Running the command on its own output writes the same bytes: injection is idempotent."""
    once = run_inject(tmp_path, "---\n".join(WORKLOADS.values()))
    assert once.returncode == 0, once.stderr
    twice = run_inject(tmp_path, once.stdout, "-o", str(tmp_path / "out.yaml"))
    assert twice.returncode == 0, twice.stderr
    assert (tmp_path / "out.yaml").read_text() == once.stdout


def test_native_sidecar_puts_the_gateway_among_the_init_containers(tmp_path: Path) -> None:
    """--native-sidecar injects an init container with restartPolicy: Always instead of a container."""
    done = run_inject(tmp_path, WORKLOADS["Deployment"], "--native-sidecar")
    assert done.returncode == 0, done.stderr
    spec = pod_of(yaml.safe_load(done.stdout))["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app"]
    assert [(c["name"], c["restartPolicy"]) for c in spec["initContainers"]] == [("mfa-gateway", "Always")]


def test_a_refused_workload_exits_2_naming_it_and_writes_nothing(tmp_path: Path) -> None:
    """One workload the injector cannot protect: exit 2, stderr names the object and why, no output at all."""
    refused = WORKLOADS["Deployment"].replace("      containers:", "      hostNetwork: true\n      containers:")
    refused = refused.replace("name: legacy}", "name: legacy, namespace: shop}", 1)
    done = run_inject(tmp_path, UNTOUCHED + "---\n" + refused, "-o", str(tmp_path / "out.yaml"))
    assert done.returncode == 2
    assert "Deployment/legacy in namespace shop: injection refused: hostNetwork: true" in done.stderr
    assert not (tmp_path / "out.yaml").exists()
    assert done.stdout == ""


def test_a_manifest_without_opted_in_workloads_comes_out_byte_identical(tmp_path: Path) -> None:
    """Workloads that do not opt in pass through as written."""
    manifest = UNTOUCHED + "---\n" + WORKLOADS["Deployment"].replace('inject: "true"', 'inject: "false"')
    done = run_inject(tmp_path, manifest)
    assert done.returncode == 0, done.stderr
    assert done.stdout == manifest


def test_a_workload_opting_in_with_the_old_annotation_is_refused_with_the_fix(tmp_path: Path) -> None:
    """The annotation mfa-gateway.io/inject (the old way to opt in) is refused naming the label to use instead, so
    a manifest written for it fails loudly rather than going out without its gateway."""
    old_style = (
        WORKLOADS["Deployment"]
        .replace('labels: {app: legacy, mfa-gateway.io/inject: "true"}', "labels: {app: legacy}")
        .replace("annotations:\n", 'annotations:\n        mfa-gateway.io/inject: "true"\n', 1)
    )
    assert 'mfa-gateway.io/inject: "true"\n        mfa-gateway.io/port' in old_style
    done = run_inject(tmp_path, old_style)
    assert done.returncode == 2
    assert (
        "Deployment/legacy: injection refused: the annotation mfa-gateway.io/inject is not read: opt in with the "
        'label mfa-gateway.io/inject: "true"' in done.stderr
    )
