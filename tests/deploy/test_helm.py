"""The Helm chart (helm/mfa-gateway), rendered offline by the real Helm SDK (helm-python-sdk embeds Helm).

Every scenario under ci/ is linted, rendered, and every rendered object validated against the Kubernetes 1.30 API
schemas (strict: unknown fields are errors). Only custom resources are exempt, by an explicit allow-list: the
ServiceMonitor, the Traefik Middlewares, and cert-manager's Issuer and Certificate. The gateway.yaml in each rendered
ConfigMap goes through the gateway's own config validation (every scenario but an injector-only release, which has
no gateway). Then each scenario's objects are checked for what it
promises, and the guards for their messages. Sidecar mode is rendered through helm/examples/sidecar-app, an
application chart that depends on this one. The sidecar injector (injector.*) is tested in test_helm_injector.py.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from mfa_gateway.config import Settings, parse_settings
from tests.helpers.deploy import ALL_INTERFACES, CHART, REPO, parse_dockerfile, require_module

if TYPE_CHECKING:
    import helm_python
    import kubernetes_validate  # type: ignore[import-untyped]  # the package ships no type information
else:
    helm_python = require_module("helm_python", "helm-python-sdk")
    kubernetes_validate = require_module("kubernetes_validate", "kubernetes-validate")

RELEASE, NAMESPACE = "mfa-gateway", "mfa"
KUBE_VERSION = "1.30"
# Custom resources have no schema in kubernetes-validate; everything else is validated.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("traefik.io/v1alpha1", "Middleware"),
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
}
SIDECAR_APP = REPO / "helm" / "examples" / "sidecar-app"
SCENARIOS = sorted(path.stem for path in (CHART / "ci").glob("*.yaml"))
UID = 10001


def _mode(name: str) -> str:
    values = yaml.safe_load((CHART / "ci" / f"{name}.yaml").read_text()) or {}
    return str(values.get("mode", "standalone"))


# The scenarios with a gateway Deployment of the chart's own, and those with a gateway.yaml (not mode: injector).
STANDALONE = [name for name in SCENARIOS if _mode(name) == "standalone"]
WITH_GATEWAY = [name for name in SCENARIOS if _mode(name) != "injector"]


def scenario(name: str) -> dict[str, Any]:
    """A ci/ values file, read by Helm's own YAML parser (as `helm -f` would)."""
    return helm_python.values_from_yaml((CHART / "ci" / f"{name}.yaml").read_text())


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


@dataclass
class Rendered:
    objects: list[dict[str, Any]]
    notes: str

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"{len(found)} {kind} objects named {name}: {[o['metadata']['name'] for o in found]}"
        return found[0]

    @property
    def kinds(self) -> list[str]:
        return sorted(o["kind"] for o in self.objects)

    def config(self, name: str = RELEASE) -> dict[str, Any]:
        """The gateway.yaml of the chart's ConfigMap, as YAML."""
        document = yaml.safe_load(self.one("ConfigMap", name)["data"]["gateway.yaml"])
        assert isinstance(document, dict)
        return document

    def settings(self, name: str = RELEASE) -> Settings:
        """The same file through the gateway's own validation (it checks every key and secret reference)."""
        return parse_settings(self.config(name), base_dir=Path("/etc/mfa-gateway"))


def render(values: Mapping[str, Any] | None = None, chart: Path = CHART) -> Rendered:
    with helm_python.Chart.load(chart) as loaded:
        manifests = loaded.render(dict(values or {}), name=RELEASE, namespace=NAMESPACE)
    objects = [
        document
        for template, text in sorted(manifests.items())
        if not template.endswith("NOTES.txt")
        for document in yaml.safe_load_all(text)
        if document
    ]
    notes = "".join(text for template, text in manifests.items() if template.endswith("NOTES.txt"))
    return Rendered(objects, notes)


def render_error(values: Mapping[str, Any]) -> str:
    with pytest.raises(helm_python.HelmError) as caught:
        render(values)
    return str(caught.value)


def pod_spec(rendered: Rendered) -> dict[str, Any]:
    """The gateway's pod (the injector, when enabled, is a second Deployment)."""
    spec: dict[str, Any] = rendered.one("Deployment", RELEASE)["spec"]["template"]["spec"]
    return spec


def gateway_container(spec: Mapping[str, Any], name: str = "mfa-gateway") -> dict[str, Any]:
    (container,) = (c for c in spec["containers"] if c["name"] == name)
    assert isinstance(container, dict)
    return container


def volume(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    (found,) = (v for v in spec["volumes"] if v["name"] == name)
    assert isinstance(found, dict)
    return found


def mounts(container: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container["volumeMounts"]}


def labels_select(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


# --- Every scenario -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, *SCENARIOS])
def test_chart_lints_clean(name: str | None) -> None:
    """`helm lint --strict` (Kubernetes 1.30) reports no warning or error, on the defaults and on every scenario."""
    report = helm_python.lint(CHART, scenario(name) if name else None, strict=True, kube_version=f"v{KUBE_VERSION}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_renders_valid_kubernetes_objects(name: str) -> None:
    """Every rendered object validates strictly against the Kubernetes 1.30 schemas, custom resources excepted."""
    rendered = render(scenario(name))
    assert "ConfigMap" in rendered.kinds
    for obj in rendered.objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_crd_allow_list_is_exactly_the_custom_resources_rendered() -> None:
    """The validation exemption lists only custom resources some scenario renders; core kinds never hide there."""
    rendered = {(o["apiVersion"], o["kind"]) for name in SCENARIOS for o in render(scenario(name)).objects}
    assert rendered >= CRD_KINDS
    groups = {api.split("/")[0] for api, _ in CRD_KINDS}
    assert all("." in group and not group.endswith("k8s.io") for group in groups), groups


def test_strict_validation_catches_an_unknown_field() -> None:
    """The validator the scenario test trusts refuses a misspelt field (it is not a no-op)."""
    deployment = copy.deepcopy(render(scenario("standalone-default")).one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("name", WITH_GATEWAY)
def test_scenario_config_passes_the_gateways_validation(name: str) -> None:
    """The rendered gateway.yaml passes mfa_gateway.config.parse_settings; its keys are file: references."""
    rendered = render(scenario(name))
    settings = rendered.settings()
    assert settings.secrets.keyring.startswith("file:/")
    assert settings.secrets.signing_keys.startswith("file:/")


@pytest.mark.parametrize("name", STANDALONE)
def test_gateway_pod_is_hardened(name: str) -> None:
    """Non-root UID 10001, read-only root filesystem, no privilege escalation, every capability dropped, the
    RuntimeDefault seccomp profile, /tmp an emptyDir, no service links, token not mounted unless asked for."""
    values = scenario(name)
    spec = pod_spec(render(values))
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] == UID
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert_hardened_container(gateway_container(spec))
    assert volume(spec, "mfa-gateway-tmp")["emptyDir"]["sizeLimit"] == "64Mi"
    assert spec["enableServiceLinks"] is False
    assert spec["automountServiceAccountToken"] is values.get("serviceAccount", {}).get("automountToken", False)


def assert_hardened_container(container: Mapping[str, Any]) -> None:
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == UID and security["runAsGroup"] == UID
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert mounts(container)["/tmp"]["name"] == "mfa-gateway-tmp"


@pytest.mark.parametrize("name", STANDALONE)
def test_pod_carries_checksum_annotations(name: str) -> None:
    """Both checksum annotations are on the pod template of every standalone scenario."""
    annotations = render(scenario(name)).one("Deployment", RELEASE)["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/secret"])


# --- What the chart promises ------------------------------------------------------------------------------------


def test_chart_matches_the_image() -> None:
    """The chart runs the image as the Dockerfile built it: its USER, CMD (config path), ports and data VOLUME."""
    runtime = parse_dockerfile().final
    container = gateway_container(pod_spec(render(scenario("standalone-default"))))
    user = runtime.last("USER").arguments.split(":")
    assert [container["securityContext"]["runAsUser"], container["securityContext"]["runAsGroup"]] == [
        int(u) for u in user
    ]
    assert container["args"] == runtime.last("CMD").exec_form()
    exposed = [int(p) for p in runtime.last("EXPOSE").arguments.split()]
    assert [p["containerPort"] for p in container["ports"]] == exposed
    assert runtime.last("VOLUME").exec_form()[0] in mounts(container)
    assert mounts(container)["/etc/mfa-gateway"]["readOnly"] is True


def test_probes_ask_healthz_and_readyz_under_the_configured_prefix_and_port() -> None:
    """Liveness and startup ask {prefix}/healthz (never a dependency), readiness {prefix}/readyz, on listen.port;
    config.prefix and config.listen.port move them, the container port and the rendered config together."""
    for prefix, port in (("/_mfa", 9090), ("/gw", 8080)):
        values = merged(scenario("standalone-default"), {"config": {"prefix": prefix, "listen": {"port": port}}})
        rendered = render(values)
        container = gateway_container(pod_spec(rendered))
        assert container["livenessProbe"]["httpGet"] == {"path": f"{prefix}/healthz", "port": port}
        assert container["startupProbe"]["httpGet"] == {"path": f"{prefix}/healthz", "port": port}
        assert container["readinessProbe"]["httpGet"] == {"path": f"{prefix}/readyz", "port": port}
        assert container["ports"][0] == {"name": "http", "containerPort": port, "protocol": "TCP"}
        assert rendered.settings().prefix == prefix and rendered.settings().listen.port == port


def test_checksums_change_with_config_and_secret_only() -> None:
    """checksum/config changes when config changes and only then; checksum/secret when the chart's Secret does."""

    def checksums(values: Mapping[str, Any]) -> tuple[str, str]:
        annotations = render(values).one("Deployment")["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/config"], annotations["checksum/secret"]

    base = scenario("secrets-create-dev")
    config, secret = checksums(base)
    assert checksums(base) == (config, secret)
    new_config, same_secret = checksums(merged(base, {"config": {"totp": {"issuer": "Example Corp"}}}))
    assert new_config != config and same_secret == secret
    same_config, new_secret = checksums(merged(base, {"secrets": {"files": {"keyring.json": "rotated"}}}))
    assert same_config == config and new_secret != secret


def test_workers_and_false_overrides_reach_the_config() -> None:
    """config.workers is rendered as given, and `false` over a chart default stays false (Helm coalesces values;
    the chart fills in only keys that are absent), taking the metrics port off the Service."""
    values = merged(scenario("ha-redis-postgres"), {"serviceMonitor": {"enabled": False}})
    rendered = render(merged(values, {"config": {"admin": {"enabled": False}}}))
    settings = rendered.settings()
    assert settings.workers == 2
    assert settings.admin.enabled is False
    assert [p["name"] for p in rendered.one("Service")["spec"]["ports"]] == ["http"]
    assert [p["name"] for p in gateway_container(pod_spec(rendered))["ports"]] == ["http"]


# --- Scenarios -------------------------------------------------------------------------------------------------


def test_standalone_default() -> None:
    """One pod: Service ports http 9090 and metrics 9464, SQLite on a kept PersistentVolumeClaim (Recreate, one
    writer), the ConfigMap at /etc/mfa-gateway, keys from the Secret at /run/secrets/mfa-gateway."""
    rendered = render(scenario("standalone-default"))
    assert rendered.kinds == ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Service", "ServiceAccount"]
    ports = [(p["name"], p["port"], p["targetPort"]) for p in rendered.one("Service")["spec"]["ports"]]
    assert ports == [("http", 9090, "http"), ("metrics", 9464, "metrics")]
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = pod_spec(rendered)
    claim = rendered.one("PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert volume(spec, "mfa-gateway-data")["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert volume(spec, "mfa-gateway-config")["configMap"]["name"] == rendered.one("ConfigMap")["metadata"]["name"]
    assert volume(spec, "mfa-gateway-secrets")["secret"] == {"secretName": "mfa-gateway-keys", "defaultMode": 0o440}
    settings = rendered.settings()
    assert (settings.listen.host, settings.admin.host) == (ALL_INTERFACES, ALL_INTERFACES)
    assert settings.secrets.keyring == "file:/run/secrets/mfa-gateway/keyring.json"
    assert settings.secrets.signing_keys == "file:/run/secrets/mfa-gateway/signing-keys.json"
    assert settings.identity.users_file == Path("/run/secrets/mfa-gateway/users.yaml")
    assert settings.store.url == "sqlite+aiosqlite:////var/lib/mfa-gateway/mfa-gateway.db"
    assert (settings.state.backend, settings.workers, settings.upstream.url) == ("memory", 1, None)


def test_ha_redis_postgres() -> None:
    """Autoscaled replicas (no fixed count, rolling without losing a ready pod), a PDB, a NetworkPolicy opening only
    the gateway and metrics ports (DNS added to the egress rules), a ServiceMonitor on the metrics port; no claim."""
    rendered = render(scenario("ha-redis-postgres"))
    deployment = rendered.one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = rendered.one("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": RELEASE}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert labels_select(rendered.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels)
    policy = rendered.one("NetworkPolicy")["spec"]
    assert labels_select(policy["podSelector"]["matchLabels"], pod_labels)
    assert [[p["port"] for p in rule["ports"]] for rule in policy["ingress"]] == [[9090], [9464]]
    assert all(rule["from"] for rule in policy["ingress"])
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"][0]["ports"][0]["port"] == 53
    service = rendered.one("Service")
    monitor = rendered.one("ServiceMonitor")["spec"]
    assert labels_select(monitor["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert "PersistentVolumeClaim" not in rendered.kinds
    assert "emptyDir" in volume(pod_spec(rendered), "mfa-gateway-data")
    settings = rendered.settings()
    assert (settings.workers, settings.state.backend) == (2, "redis")
    assert settings.secrets.session_keyring == "file:/run/secrets/mfa-gateway/session-keyring.json"
    assert settings.secrets.keyring == "file:/run/secrets/mfa-gateway/keyring.json"


def test_existing_secret_with_vault_agent_csi_and_irsa() -> None:
    """The Secret named by existingSecret is mounted; Vault Agent annotations reach the pod untouched (their Go
    template too); the CSI volume is mounted where the config reads it; the ServiceAccount carries the IRSA role
    and, for Vault's Kubernetes auth, mounts its token."""
    rendered = render(scenario("existing-secret-vault"))
    assert "Secret" not in rendered.kinds
    account = rendered.one("ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/mfa-gateway"
    }
    assert account["automountServiceAccountToken"] is True
    spec = pod_spec(rendered)
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    annotations = rendered.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["vault.hashicorp.com/agent-inject"] == "true"
    assert (
        '{{- with secret "secret/data/mfa-gateway/db" -}}'
        in annotations["vault.hashicorp.com/agent-inject-template-db.json"]
    )
    assert volume(spec, "mfa-gateway-secrets")["secret"]["secretName"] == "mfa-gateway-keys"
    assert volume(spec, "aws-secrets")["csi"]["driver"] == "secrets-store.csi.k8s.io"
    container_mounts = mounts(gateway_container(spec))
    assert container_mounts["/run/secrets/aws"]["name"] == "aws-secrets"
    settings = rendered.settings()
    assert settings.state.password == "file:/run/secrets/aws/redis-password"
    assert settings.store.password == "file:/vault/secrets/db.json#password"


def test_external_secrets_come_from_a_csi_volume_only() -> None:
    """secrets.external: no Secret and no Secret volume; the CSI volume sits at secretsMountPath, where the
    chart's default references point."""
    rendered = render(scenario("external-secrets-csi"))
    spec = pod_spec(rendered)
    assert "Secret" not in rendered.kinds
    assert "mfa-gateway-secrets" not in {v["name"] for v in spec["volumes"]}
    assert mounts(gateway_container(spec))["/run/secrets/mfa-gateway"]["name"] == "vault-keys"
    assert rendered.settings().secrets.keyring == "file:/run/secrets/mfa-gateway/keyring.json"


def test_secrets_create_is_flagged_as_development_only() -> None:
    """secrets.create renders the Secret from values (base64), mounts it, and NOTES warns it is for development."""
    values = scenario("secrets-create-dev")
    rendered = render(values)
    secret = rendered.one("Secret")
    assert set(secret["data"]) == {"keyring.json", "signing-keys.json"}
    assert volume(pod_spec(rendered), "mfa-gateway-secrets")["secret"]["secretName"] == secret["metadata"]["name"]
    assert "development only" in rendered.notes
    assert "emptyDir" in volume(pod_spec(rendered), "mfa-gateway-data") and "enrollments are lost" in rendered.notes


def _example(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_ingress_nginx_scenario_matches_the_config_example() -> None:
    """The protected application's Ingress carries exactly the annotations of config/ingress-nginx.yaml (auth-url
    on this release's Service, auth-signin, every identity header, the cookie pass-through), in the app's
    namespace; the gateway's own Ingress serves {prefix} on the same host."""
    example_app, example_gateway = _example(REPO / "config" / "ingress-nginx.yaml")
    rendered = render(scenario("ingress-nginx"))
    protected = rendered.one("Ingress", f"{RELEASE}-protected")
    assert protected["metadata"]["annotations"] == example_app["metadata"]["annotations"]
    assert protected["metadata"]["namespace"] == example_app["metadata"]["namespace"]
    assert protected["spec"]["rules"] == example_app["spec"]["rules"]
    assert protected["spec"]["tls"] == example_app["spec"]["tls"]
    gateway = rendered.one("Ingress", RELEASE)
    (path,) = gateway["spec"]["rules"][0]["http"]["paths"]
    (example_path,) = example_gateway["spec"]["rules"][0]["http"]["paths"]
    assert (path["path"], path["pathType"]) == (example_path["path"], example_path["pathType"])
    assert path["backend"]["service"] == {"name": RELEASE, "port": {"name": "http"}}
    assert rendered.settings().forward_auth.dialect == "nginx"


def test_traefik_scenario_matches_the_config_example() -> None:
    """The forwardAuth Middleware equals config/traefik.yml's (the address aside: this release's Service), and the
    second Middleware deletes the same underscore headers."""
    middlewares = yaml.safe_load((REPO / "config" / "traefik.yml").read_text())["http"]["middlewares"]
    rendered = render(scenario("traefik"))
    forward_auth = rendered.one("Middleware", RELEASE)["spec"]["forwardAuth"]
    expected = dict(middlewares["mfa-gateway"]["forwardAuth"])
    assert forward_auth.pop("address") == f"http://{RELEASE}.{NAMESPACE}.svc.cluster.local:9090/_mfa/auth"
    assert expected.pop("address").endswith(":9090/_mfa/auth")
    assert forward_auth == expected
    strip = rendered.one("Middleware", f"{RELEASE}-strip-identity")["spec"]
    assert strip == middlewares["mfa-strip-identity"]
    assert rendered.settings().forward_auth.dialect == "traefik"


def test_ingress_default_path_follows_the_mode() -> None:
    """An ingress host without paths gets / in reverse-proxy mode (upstream.url set), {prefix} in forward-auth."""
    reverse = render(scenario("reverse-proxy"))
    assert [p["path"] for p in reverse.one("Ingress")["spec"]["rules"][0]["http"]["paths"]] == ["/"]
    assert reverse.settings().upstream.url == "http://legacy-app.apps.svc.cluster.local:8080"
    forward = render(scenario("ingress-nginx"))
    assert [p["path"] for p in forward.one("Ingress", RELEASE)["spec"]["rules"][0]["http"]["paths"]] == ["/_mfa"]


def test_sidecar_mode_alone_renders_no_workload() -> None:
    """mode: sidecar renders only the ConfigMap and the ServiceAccount (no Deployment, Service or claim); the
    upstream is the application on 127.0.0.1:<sidecar.appPort>."""
    rendered = render(scenario("sidecar"))
    assert rendered.kinds == ["ConfigMap", "ServiceAccount"]
    assert rendered.settings().upstream.url == "http://127.0.0.1:8081"


@pytest.fixture
def app_chart(tmp_path: Path) -> Path:
    """helm/examples/sidecar-app (the README's sidecar recipe) after `helm dependency build`, which packs this chart
    into its charts/ from the file:// reference, as a user would."""
    helm = tmp_path / "helm"
    shutil.copytree(CHART, helm / "mfa-gateway")
    shutil.copytree(SIDECAR_APP, helm / "examples" / "sidecar-app", ignore=shutil.ignore_patterns("charts", "*.lock"))
    chart = helm / "examples" / "sidecar-app"
    helm_python.dependency_build(chart, skip_refresh=True)
    assert [d["status"] for d in helm_python.dependency_list(chart)] == ["ok"]
    return chart


def test_sidecar_templates_put_the_gateway_beside_the_app(app_chart: Path) -> None:
    """Included from an application chart, the sidecar templates add a hardened gateway container (ports mfa-http and
    mfa-metrics, probes) and every volume it mounts to the application's pod, with checksum annotations; the
    gateway's ConfigMap sends traffic to the app on 127.0.0.1:8081, where the app listens, and the app's Service
    targets the gateway's port."""
    rendered = render(chart=app_chart)
    assert rendered.kinds == ["ConfigMap", "Deployment", "Service", "ServiceAccount"]
    deployment = rendered.one("Deployment")
    for obj in (deployment, rendered.one("Service")):
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    spec = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app", "mfa-gateway"]
    gateway = gateway_container(spec)
    assert_hardened_container(gateway)
    assert [p["name"] for p in gateway["ports"]] == ["mfa-http", "mfa-metrics"]
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/_mfa/readyz", "port": 9090}
    volumes = {v["name"] for v in spec["volumes"]}
    assert {m["name"] for m in gateway["volumeMounts"]} == volumes
    assert volume(spec, "mfa-gateway-config")["configMap"]["name"] == rendered.one("ConfigMap")["metadata"]["name"]
    assert spec["serviceAccountName"] == rendered.one("ServiceAccount")["metadata"]["name"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert set(annotations) == {"checksum/mfa-gateway-config", "checksum/mfa-gateway-secret"}
    assert rendered.settings().upstream.url == "http://127.0.0.1:8081"
    assert "127.0.0.1:8081" in spec["containers"][0]["args"]
    assert rendered.one("Service")["spec"]["ports"][0]["targetPort"] == "mfa-http"
    assert spec["securityContext"]["fsGroup"] == UID


def test_sidecar_example_chart_lints_clean(app_chart: Path) -> None:
    """helm/examples/sidecar-app, with this chart as its subchart, passes `helm lint --strict`."""
    report = helm_python.lint(app_chart, strict=True, with_subcharts=True, kube_version=f"v{KUBE_VERSION}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# --- Guards and schema -----------------------------------------------------------------------------------------

REDIS_POSTGRES = {
    "existingSecret": "keys",
    "config": {
        "state": {"backend": "redis", "url": "redis://redis:6379/0"},
        "store": {"url": "postgresql+asyncpg://mfa@postgres:5432/mfa"},
    },
}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "no key material configured. Set existingSecret"),
        ({"existingSecret": "keys", "secrets": {"create": True}}, "are alternatives; set exactly one"),
        ({"secrets": {"create": True}}, "secrets.create needs secrets.files.keyring.json"),
        ({"existingSecret": "keys", "replicaCount": 2}, "need config.state.backend: redis"),
        ({"existingSecret": "keys", "autoscaling": {"enabled": True}}, "need config.state.backend: redis"),
        (
            merged(REDIS_POSTGRES, {"replicaCount": 2, "config": {"store": {"url": "sqlite+aiosqlite:///x.db"}}}),
            "need a PostgreSQL store",
        ),
        (merged(REDIS_POSTGRES, {"replicaCount": 3, "autoscaling": {"enabled": True}}), "the HPA owns the replica"),
        (
            merged(REDIS_POSTGRES, {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}),
            "minReplicas is larger than autoscaling.maxReplicas",
        ),
        ({"existingSecret": "keys", "config": {"workers": 2}}, "config.workers > 1 needs config.state.backend"),
        (
            merged(REDIS_POSTGRES, {"mode": "sidecar", "ingress": {"enabled": True, "hosts": [{"host": "a"}]}}),
            "mode sidecar renders no Deployment, Service or Ingress of its own; turn off ingress.enabled",
        ),
        ({"mode": "sidecar", "existingSecret": "keys"}, "mode sidecar needs a PostgreSQL store"),
        (
            {"existingSecret": "keys", "protectedIngress": {"enabled": True, "host": "a", "service": {"name": "b"}}},
            "need config.trusted_proxies",
        ),
        ({"existingSecret": "keys", "traefikMiddleware": {"enabled": True}}, "need config.trusted_proxies"),
        (
            {
                "existingSecret": "keys",
                "config": {"trusted_proxies": ["10.0.0.0/8"]},
                "protectedIngress": {"enabled": True},
            },
            "needs protectedIngress.host and protectedIngress.service.name",
        ),
        ({"existingSecret": "keys", "ingress": {"enabled": True}}, "needs at least one entry in ingress.hosts"),
        (
            {"existingSecret": "keys", "serviceMonitor": {"enabled": True}, "config": {"admin": {"enabled": False}}},
            "serviceMonitor.enabled needs config.admin.enabled: true",
        ),
        (
            {"existingSecret": "keys", "podDisruptionBudget": {"enabled": True, "minAvailable": 1}},
            "minAvailable or maxUnavailable, not both",
        ),
    ],
)
def test_invalid_combinations_fail_with_a_message_naming_the_keys(values: dict[str, Any], message: str) -> None:
    """Each invalid value combination stops the render with a message that names the keys and the fix."""
    error = render_error(values)
    assert "mfa-gateway: " in error
    assert message in error


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "bogus"}, "at '/mode': value must be one of 'standalone', 'sidecar', 'injector'"),
        ({"replicaCount": "2"}, "at '/replicaCount': got string, want integer"),
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"config": {"prefix": "mfa"}}, "/config/prefix"),
        ({"config": {"workers": 0}}, "/config/workers"),
        ({"ingress": {"hosts": [{"host": "a", "paths": [{"path": "nope"}]}]}}, "/ingress/hosts/0/paths/0/path"),
    ],
)
def test_schema_refuses_unknown_and_mistyped_values(values: dict[str, Any], message: str) -> None:
    """values.schema.json refuses misspelt keys, wrong types and out-of-range values before anything renders."""
    error = render_error(merged({"existingSecret": "keys"}, values))
    assert "values don't meet the specifications of the schema" in error
    assert message in error
