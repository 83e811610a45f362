"""The chart's sidecar injector (injector.*), rendered offline by the real Helm SDK.

The injector's contract (what `mfa-gateway injector --config FILE` reads, the webhook registration, the RBAC it
needs) is pinned here from the chart's side: injector.yaml has exactly the contract's keys, the webhook configuration
exactly its fields, and the RBAC exactly the rules the default TLS mode needs, limited by resourceNames. The TLS
modes (the injector's own CA, cert-manager, a Secret of yours) differ in what they render, and none lets `helm
upgrade` overwrite what the injector or cert-manager write (the Secret's data, the caBundle). Every rendered object
is also validated against the Kubernetes 1.30 schemas by test_helm.py's scenario test (ci/injector*.yaml).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from mfa_gateway.k8s.injection import DOMAIN, GATEWAY_PORT, METRICS_PORT
from mfa_gateway.k8s.injector_config import InjectorConfig
from tests.deploy.test_helm import (
    NAMESPACE,
    RELEASE,
    UID,
    Rendered,
    helm_python,
    labels_select,
    merged,
    render,
    render_error,
    scenario,
)
from tests.helpers.deploy import CHART, REPO

INJECTOR = f"{RELEASE}-injector"
TLS_SECRET = f"{INJECTOR}-tls"
CONFIG_DIR = "/etc/mfa-gateway-injector"
OPT_IN = {f"{DOMAIN}inject": "true"}
DNS_NAMES = [INJECTOR, f"{INJECTOR}.{NAMESPACE}", f"{INJECTOR}.{NAMESPACE}.svc"]
RBAC_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
CA_BUNDLE = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
# The injector's contract: the keys of injector.yaml, and of its tls section per mode.
CONFIG_KEYS = {"listen", "image", "image_pull_policy", "native_sidecar", "resources", "tls"}


def injector_values(**injector: Any) -> dict[str, Any]:
    """The gateway's minimum plus injector.enabled and the given injector values."""
    return {"existingSecret": "keys", "injector": {"enabled": True, **injector}}


def injector_pod(rendered: Rendered) -> dict[str, Any]:
    template: dict[str, Any] = rendered.one("Deployment", INJECTOR)["spec"]["template"]
    return template


def injector_config(rendered: Rendered) -> dict[str, Any]:
    document = yaml.safe_load(rendered.one("ConfigMap", INJECTOR)["data"]["injector.yaml"])
    assert isinstance(document, dict)
    return document


def webhook(rendered: Rendered) -> dict[str, Any]:
    (hook,) = rendered.one("MutatingWebhookConfiguration", INJECTOR)["webhooks"]
    assert isinstance(hook, dict)
    return hook


def projected_files(pod: Mapping[str, Any]) -> dict[str, str]:
    """Path inside the injector's config folder -> the ConfigMap or Secret it comes from."""
    (config_volume,) = (v for v in pod["spec"]["volumes"] if v["name"] == "injector-config")
    files = {}
    for source in config_volume["projected"]["sources"]:
        if "configMap" in source:
            files["injector.yaml"] = f"configMap/{source['configMap']['name']}"
        else:
            for item in source["secret"]["items"]:
                files[item["path"]] = f"secret/{source['secret']['name']}"
    return files


# --- The contract ------------------------------------------------------------------------------------------------


def test_webhook_registration_is_the_contracts() -> None:
    """One webhook, inject.mfa-gateway.io: CREATE of v1 pods, only those labelled mfa-gateway.io/inject: "true", not
    in kube-system or kube-node-lease, failurePolicy Fail, no side effects, AdmissionReview v1, 10 s, no
    reinvocation, the injector's Service on 443 at /mutate; and no caBundle (the injector writes it)."""
    hook = webhook(render(scenario("injector")))
    assert hook == {
        "name": "inject.mfa-gateway.io",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 10,
        "reinvocationPolicy": "Never",
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        "objectSelector": {"matchLabels": OPT_IN},
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": ["kube-system", "kube-node-lease"],
                }
            ]
        },
        "clientConfig": {"service": {"name": INJECTOR, "namespace": NAMESPACE, "path": "/mutate", "port": 443}},
    }


def test_excluded_namespaces_add_to_the_system_ones() -> None:
    """injector.excludeNamespaces adds namespaces to kube-system and kube-node-lease, which stay excluded."""
    rendered = render(injector_values(excludeNamespaces=["legacy", "kube-system"]))
    (expression,) = webhook(rendered)["namespaceSelector"]["matchExpressions"]
    assert expression["values"] == ["kube-system", "kube-node-lease", "legacy"]


def test_service_reaches_the_webhook_port() -> None:
    """The Service maps 443 (name https) to the injector container's port https, 8443, on the injector's pods only."""
    rendered = render(scenario("injector"))
    service = rendered.one("Service", INJECTOR)
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    pod = injector_pod(rendered)
    (container,) = pod["spec"]["containers"]
    assert container["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]
    assert labels_select(service["spec"]["selector"], pod["metadata"]["labels"])


def test_injector_config_has_exactly_the_contracts_keys() -> None:
    """injector.yaml: listen 0.0.0.0:8443, the sidecar image (the chart's own by default), its pull policy,
    native_sidecar, the sidecar's resources, and tls.generate naming the Secret, the Service and the webhook
    configuration the chart renders and the RBAC allows; nothing else."""
    rendered = render(scenario("injector"))
    config = injector_config(rendered)
    assert set(config) == CONFIG_KEYS
    assert config["listen"] == {"host": "0.0.0.0", "port": 8443}  # noqa: S104  # every interface of the pod
    assert config["image"] == "registry.example/mfa-gateway:0.1.0"
    assert (config["image_pull_policy"], config["native_sidecar"]) == ("IfNotPresent", False)
    assert config["resources"] == {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"memory": "512Mi"}}
    assert config["tls"] == {"generate": {"secret": TLS_SECRET, "service": INJECTOR, "webhook": INJECTOR}}
    rendered.one("Service", config["tls"]["generate"]["service"])
    rendered.one("MutatingWebhookConfiguration", config["tls"]["generate"]["webhook"])
    (container,) = injector_pod(rendered)["spec"]["containers"]
    assert container["args"] == ["injector", "--config", f"{CONFIG_DIR}/injector.yaml"]
    assert projected_files(injector_pod(rendered)) == {"injector.yaml": f"configMap/{INJECTOR}"}


@pytest.mark.parametrize("name", ["injector", "injector-cert-manager", "injector-only"])
def test_injector_config_is_accepted_by_the_injector_itself(name: str) -> None:
    """The rendered injector.yaml passes the injector's own validation (the model `mfa-gateway injector --config`
    reads), so a chart change the injector would refuse at start fails here, not in the cluster."""
    config = InjectorConfig.model_validate(injector_config(render(scenario(name))))
    assert config.image == injector_config(render(scenario(name)))["image"]


def test_injector_config_in_cert_manager_mode_points_at_the_mounted_certificate() -> None:
    """With cert-manager, tls is cert_file + key_file, and both files are in the injector's config folder, from the
    Secret the serving Certificate writes; the sidecar image and native_sidecar come from the values."""
    rendered = render(scenario("injector-cert-manager"))
    config = injector_config(rendered)
    assert set(config) == CONFIG_KEYS
    assert config["tls"] == {"cert_file": f"{CONFIG_DIR}/tls/tls.crt", "key_file": f"{CONFIG_DIR}/tls/tls.key"}
    assert config["image"] == scenario("injector-cert-manager")["injector"]["sidecarImage"]
    assert config["native_sidecar"] is True
    files = projected_files(injector_pod(rendered))
    secret = rendered.one("Certificate", f"{INJECTOR}-tls")["spec"]["secretName"]
    for path in (config["tls"]["cert_file"], config["tls"]["key_file"]):
        assert files[path.removeprefix(f"{CONFIG_DIR}/")] == f"secret/{secret}"


def test_config_changes_roll_the_injector_pods() -> None:
    """checksum/config on the injector's pods follows injector.yaml: it changes with the sidecar image."""

    def checksum(values: Mapping[str, Any]) -> str:
        annotation: str = injector_pod(render(values))["metadata"]["annotations"]["checksum/config"]
        return annotation

    base = scenario("injector")
    assert checksum(base) == checksum(base)
    assert checksum(merged(base, {"injector": {"sidecarImage": "other/mfa-gateway:0.2.0"}})) != checksum(base)


# --- RBAC and the ServiceAccount token ---------------------------------------------------------------------------


def test_default_tls_mode_rbac_is_limited_to_its_secret_and_its_webhook() -> None:
    """The injector's own CA: a Role to create Secrets (create takes no resourceNames) and to get and update only
    its TLS Secret, a ClusterRole to get and patch only its own webhook configuration, both bound to its
    ServiceAccount, whose token the pod mounts."""
    rendered = render(scenario("injector"))
    assert rendered.one("Role", INJECTOR)["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [TLS_SECRET], "verbs": ["get", "update"]},
    ]
    assert rendered.one("ClusterRole", INJECTOR)["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": [INJECTOR],
            "verbs": ["get", "patch"],
        }
    ]
    subject = {"kind": "ServiceAccount", "name": INJECTOR, "namespace": NAMESPACE}
    for kind, role in (("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")):
        binding = rendered.one(kind, INJECTOR)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role, "name": INJECTOR}
        assert binding["subjects"] == [subject]
    assert rendered.one("ServiceAccount", INJECTOR)["automountServiceAccountToken"] is True
    spec = injector_pod(rendered)["spec"]
    assert spec["serviceAccountName"] == INJECTOR and spec["automountServiceAccountToken"] is True


@pytest.mark.parametrize(
    "values",
    [
        scenario("injector-cert-manager"),
        injector_values(tls={"existingSecret": "corp-injector-tls", "caBundle": CA_BUNDLE}),
    ],
    ids=["cert-manager", "existing-secret"],
)
def test_certificate_from_files_needs_no_rbac_no_token_and_no_egress(values: dict[str, Any]) -> None:
    """With the certificate from a Secret the injector never calls the API server: no Role, ClusterRole or binding,
    no token in the pod or on its ServiceAccount, and its NetworkPolicy allows no egress at all."""
    rendered = render(values)
    assert RBAC_KINDS.isdisjoint(rendered.kinds)
    assert rendered.one("ServiceAccount", INJECTOR)["automountServiceAccountToken"] is False
    assert injector_pod(rendered)["spec"]["automountServiceAccountToken"] is False
    policy = rendered.one("NetworkPolicy", INJECTOR)["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy.get("egress", []) == []


# --- The injector's pods -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["injector", "injector-cert-manager"])
def test_injector_pod_is_hardened_and_probed_over_https(name: str) -> None:
    """The gateway image and security contexts (non-root 10001, read-only root filesystem, no privilege escalation,
    no capability, RuntimeDefault seccomp), /tmp an emptyDir, no service links; liveness /healthz and readiness
    /readyz over HTTPS on 8443; resources set."""
    rendered = render(scenario(name))
    gateway = rendered.one("Deployment", RELEASE)["spec"]["template"]["spec"]
    spec = injector_pod(rendered)["spec"]
    (container,) = spec["containers"]
    (gateway_container,) = gateway["containers"]
    assert container["image"] == gateway_container["image"]
    assert spec["securityContext"] == gateway["securityContext"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == UID
    security = container["securityContext"]
    assert security == gateway_container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]} and security["privileged"] is False
    assert security["runAsUser"] == UID and security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/tmp"] == "injector-tmp"
    assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == "injector-tmp")
    assert {m["name"] for m in container["volumeMounts"]} == {v["name"] for v in spec["volumes"]}
    assert all(m["readOnly"] for m in container["volumeMounts"] if m["mountPath"] == CONFIG_DIR)
    assert spec["enableServiceLinks"] is False
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8443, "scheme": "HTTPS"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": 8443, "scheme": "HTTPS"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8443, "scheme": "HTTPS"}
    assert container["resources"]["limits"]["memory"]


def test_two_replicas_spread_and_protected_from_disruption() -> None:
    """Two replicas, rolled without losing a ready one; preferably on different nodes and zones (never blocking
    scheduling); a PodDisruptionBudget lets at most one go at a time."""
    rendered = render(scenario("injector"))
    deployment = rendered.one("Deployment", INJECTOR)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    (preferred,) = pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert labels_select(preferred["podAffinityTerm"]["labelSelector"]["matchLabels"], labels)
    (spread,) = pod["spec"]["topologySpreadConstraints"]
    assert (spread["topologyKey"], spread["whenUnsatisfiable"]) == ("topology.kubernetes.io/zone", "ScheduleAnyway")
    assert labels_select(spread["labelSelector"]["matchLabels"], labels)
    budget = rendered.one("PodDisruptionBudget", INJECTOR)["spec"]
    assert budget["maxUnavailable"] == 1 and labels_select(budget["selector"]["matchLabels"], labels)
    hard = injector_pod(render(merged(scenario("injector"), {"injector": {"podAntiAffinityPreset": "hard"}})))
    (required,) = hard["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required["topologyKey"] == "kubernetes.io/hostname"


def test_injector_pods_are_neither_the_gateways_nor_sent_to_the_webhook() -> None:
    """The gateway's Service, PodDisruptionBudget and NetworkPolicy select the gateway's pods only, never the
    injector's; and the webhook's objectSelector does not select the injector's own pods (so they start while no
    injector is up), nor the gateway's."""
    values = merged(
        scenario("injector"), {"podDisruptionBudget": {"enabled": True}, "networkPolicy": {"enabled": True}}
    )
    rendered = render(values)
    injector_labels = injector_pod(rendered)["metadata"]["labels"]
    gateway_labels = rendered.one("Deployment", RELEASE)["spec"]["template"]["metadata"]["labels"]
    selectors = [
        rendered.one("Service", RELEASE)["spec"]["selector"],
        rendered.one("PodDisruptionBudget", RELEASE)["spec"]["selector"]["matchLabels"],
        rendered.one("NetworkPolicy", RELEASE)["spec"]["podSelector"]["matchLabels"],
    ]
    assert all(labels_select(s, gateway_labels) and not labels_select(s, injector_labels) for s in selectors)
    opt_in = webhook(rendered)["objectSelector"]["matchLabels"]
    assert not labels_select(opt_in, injector_labels) and not labels_select(opt_in, gateway_labels)


def test_injector_network_policy_admits_only_the_webhook_port() -> None:
    """The injector's pods admit 8443 only (from any peer by default: the API server's address depends on the
    cluster); in the default TLS mode egress stays open (the API server), and listed egress rules add DNS."""
    rendered = render(scenario("injector"))
    policy = rendered.one("NetworkPolicy", INJECTOR)["spec"]
    assert labels_select(policy["podSelector"]["matchLabels"], injector_pod(rendered)["metadata"]["labels"])
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"ports": [{"port": 8443, "protocol": "TCP"}]}]
    api_server = {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [{"port": 6443, "protocol": "TCP"}]}
    peer = {"namespaceSelector": {}}
    values = merged(
        scenario("injector"), {"injector": {"networkPolicy": {"ingressFrom": [peer], "egress": [api_server]}}}
    )
    restricted = render(values).one("NetworkPolicy", INJECTOR)["spec"]
    assert restricted["policyTypes"] == ["Ingress", "Egress"]
    assert restricted["ingress"][0]["from"] == [peer]
    assert [p["port"] for p in restricted["egress"][0]["ports"]] == [53, 53] and restricted["egress"][1] == api_server


# --- TLS: the caBundle and the Secret belong to whoever writes them ----------------------------------------------


@pytest.mark.parametrize("name", ["injector", "injector-cert-manager"])
def test_helm_never_owns_what_the_injector_or_cert_manager_write(name: str) -> None:
    """No caBundle field at all (not even ""), and no Secret holding the certificate: a field or object the release
    never rendered is one that `helm upgrade` (three-way merge or server-side apply) leaves as the injector or
    cert-manager wrote it. No template reads the cluster with lookup, so a render is the same on install and upgrade."""
    rendered = render(scenario(name))
    assert "caBundle" not in webhook(rendered)["clientConfig"]
    assert [s["metadata"]["name"] for s in rendered.all("Secret")] == []
    assert all("lookup" not in path.read_text() for path in (CHART / "templates").iterdir())


def test_cert_manager_chain_issues_the_serving_certificate_and_injects_its_ca() -> None:
    """Self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate for the Service's DNS names (the
    names the API server calls), into the Secret the injector mounts; the webhook configuration asks cainjector for
    the serving Certificate's CA."""
    rendered = render(scenario("injector-cert-manager"))
    self_signed = rendered.one("Issuer", f"{INJECTOR}-selfsigned")
    assert self_signed["spec"] == {"selfSigned": {}}
    ca = rendered.one("Certificate", f"{INJECTOR}-ca")["spec"]
    assert ca["isCA"] is True
    assert ca["issuerRef"] == {"name": self_signed["metadata"]["name"], "kind": "Issuer", "group": "cert-manager.io"}
    ca_issuer = rendered.one("Issuer", f"{INJECTOR}-ca")
    assert ca_issuer["spec"] == {"ca": {"secretName": ca["secretName"]}}
    serving = rendered.one("Certificate", f"{INJECTOR}-tls")
    spec = serving["spec"]
    assert spec["issuerRef"] == {"name": ca_issuer["metadata"]["name"], "kind": "Issuer", "group": "cert-manager.io"}
    assert spec["dnsNames"] == DNS_NAMES
    assert spec["usages"] == ["digital signature", "server auth"]
    assert (
        spec["secretName"] == TLS_SECRET and "secret/" + TLS_SECRET in projected_files(injector_pod(rendered)).values()
    )
    annotations = rendered.one("MutatingWebhookConfiguration", INJECTOR)["metadata"]["annotations"]
    assert annotations == {"cert-manager.io/inject-ca-from": f"{NAMESPACE}/{serving['metadata']['name']}"}


def test_cert_manager_with_your_issuer_renders_only_the_serving_certificate() -> None:
    """injector.tls.certManager.issuerRef names an Issuer or ClusterIssuer of yours: no CA chain of the chart's,
    the serving Certificate from yours."""
    issuer = {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    rendered = render(
        merged(scenario("injector-cert-manager"), {"injector": {"tls": {"certManager": {"issuerRef": issuer}}}})
    )
    assert [o["kind"] for o in rendered.objects if o["apiVersion"] == "cert-manager.io/v1"] == ["Certificate"]
    assert rendered.one("Certificate")["spec"]["issuerRef"] == issuer


def test_existing_secret_mounts_yours_and_renders_its_ca_bundle() -> None:
    """injector.tls.existingSecret: that Secret's tls.crt and tls.key are the injector's certificate, the caBundle
    is injector.tls.caBundle, and nothing of cert-manager's is rendered."""
    rendered = render(injector_values(tls={"existingSecret": "corp-injector-tls", "caBundle": CA_BUNDLE}))
    assert webhook(rendered)["clientConfig"]["caBundle"] == CA_BUNDLE
    assert "annotations" not in rendered.one("MutatingWebhookConfiguration")["metadata"]
    files = projected_files(injector_pod(rendered))
    assert files["tls/tls.crt"] == files["tls/tls.key"] == "secret/corp-injector-tls"
    assert not [o for o in rendered.objects if o["apiVersion"].startswith("cert-manager.io/")]


# --- The injected applications' NetworkPolicy --------------------------------------------------------------------


def test_app_network_policy_matches_the_config_example_and_the_injection() -> None:
    """Each namespace of injector.appNetworkPolicy.namespaces gets config/injected-app-networkpolicy.yaml's policy:
    pods with the opt-in label admit the injected gateway's port, and its metrics port from Prometheus only; both
    ports are the ones the injection gives the gateway."""
    (example,) = [d for d in yaml.safe_load_all((REPO / "config" / "injected-app-networkpolicy.yaml").read_text()) if d]
    rendered = render(scenario("injector"))
    (policy,) = [p for p in rendered.all("NetworkPolicy") if p["metadata"].get("namespace") == "apps"]
    assert policy["spec"] == example["spec"]
    assert policy["metadata"]["name"] == example["metadata"]["name"]
    assert policy["spec"]["podSelector"]["matchLabels"] == OPT_IN == webhook(rendered)["objectSelector"]["matchLabels"]
    assert [[p["port"] for p in rule["ports"]] for rule in policy["spec"]["ingress"]] == [
        [GATEWAY_PORT],
        [METRICS_PORT],
    ]


def test_app_network_policy_without_metrics_source_admits_the_gateway_port_only() -> None:
    """One policy per listed namespace; with no metricsFrom the metrics port is not admitted at all, and
    ingressFrom narrows the gateway port."""
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    rendered = render(injector_values(appNetworkPolicy={"namespaces": ["a", "b"], "ingressFrom": [peer]}))
    policies = [p for p in rendered.all("NetworkPolicy") if "namespace" in p["metadata"]]
    assert [p["metadata"]["namespace"] for p in policies] == ["a", "b"]
    for policy in policies:
        assert policy["spec"]["ingress"] == [{"ports": [{"port": GATEWAY_PORT, "protocol": "TCP"}], "from": [peer]}]


def test_no_injector_objects_unless_enabled() -> None:
    """With injector.enabled false (the default) nothing of the injector is rendered, cluster-wide or not."""
    rendered = render(scenario("standalone-default"))
    assert not [o for o in rendered.objects if "injector" in o["metadata"]["name"]]
    assert "MutatingWebhookConfiguration" not in rendered.kinds


# --- An injector-only release (mode: injector) -------------------------------------------------------------------


def test_injector_only_release_renders_the_injector_and_nothing_of_the_gateway() -> None:
    """mode: injector renders the injector's objects (and the applications' NetworkPolicy), exactly as
    injector.enabled renders them beside a gateway, and nothing of the gateway: no Deployment, Service, ConfigMap,
    ServiceAccount, Secret or claim of its own, and no key source is asked for."""
    only = scenario("injector-only")
    rendered = render(only)
    assert "existingSecret" not in only and "secrets" not in only
    assert all(o["metadata"]["labels"]["app.kubernetes.io/component"] == "injector" for o in rendered.objects)
    assert rendered.kinds == [
        "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "MutatingWebhookConfiguration",
        "NetworkPolicy", "NetworkPolicy", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount",
    ]  # fmt: skip
    beside = merged({k: v for k, v in only.items() if k != "mode"}, injector_values())
    injector_objects = [
        o for o in render(beside).objects if o["metadata"]["labels"]["app.kubernetes.io/component"] == "injector"
    ]
    assert rendered.objects == injector_objects
    assert "injector mode" in rendered.notes and "Keys are read at start" not in rendered.notes


def test_injector_only_release_refuses_the_gateways_values() -> None:
    """A value that would render a gateway object (or a key source for a gateway that does not exist) is refused in
    mode: injector, naming every such key, instead of being silently ignored."""
    values = merged(
        scenario("injector-only"),
        {"existingSecret": "keys", "ingress": {"enabled": True}, "networkPolicy": {"enabled": True}},
    )
    error = render_error(values)
    assert "mfa-gateway: mode injector renders only the sidecar injector, no gateway of its own; remove " in error
    assert "ingress.enabled, networkPolicy.enabled, existingSecret." in error
    for key, value in (
        ("secrets", {"create": True}),
        ("secrets", {"external": True}),
        ("serviceMonitor", {"enabled": True}),
    ):
        assert "mode injector renders only the sidecar injector" in render_error(
            merged(scenario("injector-only"), {key: value})
        )


# --- Guards and schema -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            merged(injector_values(), {"mode": "sidecar", "config": {"store": {"url": "postgresql+asyncpg://a@b/c"}}}),
            "injector.enabled needs mode: standalone",
        ),
        (injector_values(sidecarImage="registry.example/mfa-gateway"), "needs a tag or a digest"),
        (injector_values(sidecarImage="registry.example:5000/mfa-gateway"), "needs a tag or a digest"),
        (injector_values(sidecarImage="registry.example/mfa-gateway:latest"), "needs a tag or a digest"),
        (merged(injector_values(), {"image": {"tag": "latest"}}), 'injector.sidecarImage "mfa-gateway:latest"'),
        (injector_values(podLabels=OPT_IN), f"must not set {DOMAIN}inject"),
        (merged(injector_values(), {"commonLabels": OPT_IN}), f"must not set {DOMAIN}inject"),
        (
            injector_values(tls={"certManager": {"enabled": True}, "existingSecret": "x", "caBundle": CA_BUNDLE}),
            "injector.tls.certManager.enabled and injector.tls.existingSecret are alternatives",
        ),
        (injector_values(tls={"existingSecret": "x"}), "injector.tls.existingSecret needs injector.tls.caBundle"),
        (injector_values(tls={"caBundle": CA_BUNDLE}), "injector.tls.caBundle goes with injector.tls.existingSecret"),
        (
            injector_values(tls={"certManager": {"issuerRef": {"name": "corp-ca"}}}),
            "injector.tls.certManager.issuerRef needs injector.tls.certManager.enabled: true",
        ),
        (
            injector_values(podDisruptionBudget={"minAvailable": 1}),
            "injector.podDisruptionBudget takes minAvailable or maxUnavailable, not both",
        ),
        (
            {"existingSecret": "keys", "injector": {"appNetworkPolicy": {"namespaces": ["apps"]}}},
            "injector.appNetworkPolicy.namespaces needs the injector (mode: injector, or injector.enabled)",
        ),
        (
            {"mode": "injector", "image": {"tag": "latest"}},
            'injector.sidecarImage "mfa-gateway:latest"',
        ),
        (
            {"mode": "injector", "image": {"tag": "0.1.0"}, "injector": {"podLabels": OPT_IN}},
            f"must not set {DOMAIN}inject",
        ),
    ],
)
def test_invalid_injector_combinations_fail_with_a_message_naming_the_keys(
    values: dict[str, Any], message: str
) -> None:
    """Each invalid injector combination stops the render with a message that names the keys and the fix."""
    error = render_error(values)
    assert "mfa-gateway: " in error
    assert message in error


def test_native_sidecar_needs_kubernetes_1_29(capfd: pytest.CaptureFixture[str]) -> None:
    """injector.nativeSidecar on a cluster older than 1.29 (which would drop restartPolicy and run the gateway as a
    never-ending init container) hits the guard; 1.29 does not. Only `helm lint` takes a Kubernetes version offline,
    and in lint mode Helm reports a `fail` on its standard error instead of stopping, so that is where it is read."""
    values = scenario("injector-cert-manager")
    message = "mfa-gateway: injector.nativeSidecar needs Kubernetes 1.29 or later"
    helm_python.lint(CHART, values, strict=True, kube_version="v1.28.9")
    assert message in capfd.readouterr().err
    assert helm_python.lint(CHART, values, strict=True, kube_version="v1.29.0")["errors"] == []
    assert message not in capfd.readouterr().err
    render(values)  # the SDK's own Kubernetes version is newer: the scenario renders


@pytest.mark.parametrize(
    ("injector", "message"),
    [
        ({"replicas": 0}, "/injector/replicas"),
        ({"replica": 2}, "additional properties 'replica' not allowed"),
        ({"tls": {"certManager": {"issuerRef": {"kind": "Vault"}}}}, "/injector/tls/certManager/issuerRef/kind"),
        ({"tls": {"certManager": {"duration": "90 days"}}}, "/injector/tls/certManager/duration"),
        ({"tls": {"caBundle": "-----BEGIN CERTIFICATE-----"}}, "/injector/tls/caBundle"),
        ({"excludeNamespaces": ["Kube_System"]}, "/injector/excludeNamespaces/0"),
        ({"podAntiAffinityPreset": "always"}, "/injector/podAntiAffinityPreset"),
    ],
)
def test_schema_refuses_mistyped_injector_values(injector: dict[str, Any], message: str) -> None:
    """values.schema.json refuses misspelt injector keys, wrong types and out-of-range values."""
    error = render_error(injector_values(**injector))
    assert "values don't meet the specifications of the schema" in error
    assert message in error
