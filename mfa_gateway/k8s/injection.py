"""Sidecar injection: a Pod (or a pod template) that opts in gets the gateway beside the app. Pure: dicts in, dicts out.

One function, :func:`inject`, serves both front doors: ``mfa-gateway inject -f`` (offline) and the mutating admission
webhook (``mfa-gateway injector``, through :mod:`mfa_gateway.k8s.admission`). It is handed anything with ``metadata``
and ``spec`` (a Pod, or the ``template`` of a Deployment, StatefulSet, DaemonSet, Job or CronJob) and answers
:class:`Injected` (the new object, possibly unchanged) or :class:`Refused` (a message saying why the injector cannot
protect the pod).

A pod opts in with the **label** ``mfa-gateway.io/inject: "true"`` in ``metadata.labels`` (absent or ``"false"``: the
pod passes unchanged; any other value is refused). A label, not an annotation, because the webhook's registration
selects pods by label (``objectSelector``): the API server then sends it only the pods that opt in, and its
``failurePolicy: Fail`` blocks only those while the injector is down. An annotation ``mfa-gateway.io/inject`` (how
pods opted in before) is refused with a hint to use the label, rather than silently left without a gateway.

What an opted-in pod says, in ``metadata.annotations`` under ``mfa-gateway.io/``:

- ``port``: the application's container port, a name (``http``) or a number (``8080``); required;
- ``config``: the ConfigMap holding ``gateway.yaml``; required;
- ``secret``: the Secret holding the key files, mounted at ``/run/secrets/mfa-gateway``; optional (keys may come from
  Vault or AWS Secrets Manager instead);
- ``cpu`` / ``memory``: the gateway container's requests (``memory`` is also its limit); optional.

Every other key under the domain is refused: the image, command, arguments, environment and privileges come only
from the injector (:class:`InjectorSettings`), never from the pod, so a pod cannot weaken its own gateway. The injector
writes ``status: injected`` itself; a pod that claims it without carrying the gateway is refused.

What injection does (matching the chart's sidecar template, ``mfa-gateway.sidecar.container``):

- adds the container ``mfa-gateway`` (or, with ``native_sidecar``, an init container with ``restartPolicy: Always``,
  appended after the pod's own init containers so that those run first), listening on 9090 (HTTP) and 9464
  (metrics), with startup and liveness probes on ``/_mfa/healthz``, readiness on ``/_mfa/readyz``, a complete
  hardened security context (non-root 10001, read-only root filesystem, no privilege escalation, all capabilities
  dropped, seccomp RuntimeDefault) and the volumes ``mfa-gateway-{config,secrets,data,tmp}``. The Secret is mounted
  with mode 0444 (visible only inside the gateway container, the only one that mounts it) rather than the chart's
  0440 + ``fsGroup: 10001``: the injector never changes the pod-level security context, which is the app's too;
- a **named** port is taken over: the app's port ``http`` becomes ``http-app`` (its probes that name the port follow
  it) and the gateway's 9090 takes the name ``http``, so a Service with ``targetPort: http`` now reaches the gateway;
- a **numbered** port cannot be taken over (the app binds the number; a Service that targets it reaches the app
  directly): the gateway's port is named ``mfa-http`` and the Service must target ``mfa-http`` (or 9090). Give the
  port a name in the pod and annotate the name to keep the Service as it is;
- marks the pod ``mfa-gateway.io/status: injected``; a second pass changes nothing.

The gateway's upstream is the app on ``http://127.0.0.1:<port>`` (:attr:`Injected.upstream`). ``mfa-gateway serve``
reads its upstream only from its config file, so the ConfigMap's ``gateway.yaml`` must say ``upstream.url`` (and keep
``listen.port: 9090``, ``admin.port: 9464`` and ``prefix: /_mfa``, the defaults); the injector cannot read the
ConfigMap and verifies none of it. The app's own port stays reachable by pod IP: admit only the gateway port with a
NetworkPolicy, or make the app listen on 127.0.0.1 (its own HTTP/TCP probes, which the kubelet sends to the pod IP,
then fail: make them ``exec`` probes).

Refused: ``hostNetwork: true`` (the app's loopback port would be the node's), a missing port annotation or a named
port no container (or more than one) declares, the app port or any container port on 9090/9464, a name the
injection needs already taken, malformed annotation values, and every unknown annotation under the domain.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DOMAIN = "mfa-gateway.io/"
CONTAINER_NAME = "mfa-gateway"
GATEWAY_PORT, METRICS_PORT = 9090, 9464
UID = 10001
CONFIG_PATH, SECRETS_PATH, DATA_PATH = "/etc/mfa-gateway", "/run/secrets/mfa-gateway", "/var/lib/mfa-gateway"
TMP_PATH = "/tmp"  # noqa: S108  # an emptyDir of the gateway's own: the root filesystem is read-only
VOLUMES = ("mfa-gateway-config", "mfa-gateway-secrets", "mfa-gateway-data", "mfa-gateway-tmp")
INJECTED = "injected"
PREFIX = "/_mfa"

KNOWN_KEYS = frozenset({"port", "config", "secret", "cpu", "memory", "status"})
"""The annotations under the domain a pod may carry (``inject`` is a label: see the module's docstring)."""
OPT_IN = DOMAIN + "inject"
"""The label that opts a pod in (``"true"``); as an annotation it is refused."""
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")  # IANA_SVC_NAME, as Kubernetes checks it
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def _default_resources() -> dict[str, Any]:
    return {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"memory": "512Mi"}}


@dataclass(frozen=True)
class InjectorSettings:
    """The injector's own choices: the image (its only source), default resources, and the sidecar's kind."""

    image: str
    resources: Mapping[str, Any] = field(default_factory=_default_resources)
    native_sidecar: bool = False
    image_pull_policy: str = "IfNotPresent"


@dataclass(frozen=True)
class Injected:
    """The object after injection (``changed`` False: it passed as it was) and the gateway's upstream, if injected."""

    result: dict[str, Any]
    changed: bool
    upstream: str | None = None


@dataclass(frozen=True)
class Refused:
    """The injector cannot protect this pod; ``message`` says why and what to change."""

    message: str


class _Refusal(Exception):
    pass


def inject(holder: Mapping[str, Any], settings: InjectorSettings) -> Injected | Refused:
    """The pod (or pod template) ``holder`` with the gateway injected, unchanged if it does not opt in, or refused."""
    try:
        return _inject(holder, settings)
    except _Refusal as exc:
        return Refused(str(exc))
    except (AttributeError, TypeError, KeyError, ValueError):
        # A field of the wrong shape (containers not a list, a port not a map...): what it cannot read, it refuses.
        return Refused("the pod spec is malformed: a field has the wrong type for a Kubernetes pod")


def _inject(holder: Mapping[str, Any], settings: InjectorSettings) -> Injected:
    annotations = _string_map(holder, "annotations")
    if OPT_IN in annotations:
        raise _Refusal(
            f'the annotation {OPT_IN} is not read: opt in with the label {OPT_IN}: "true" (metadata.labels, which '
            "the webhook selects pods by) and remove the annotation"
        )
    wanted = _string_map(holder, "labels").get(OPT_IN)
    if wanted is None or wanted == "false":
        return Injected(copy.deepcopy(dict(holder)), changed=False)
    if wanted != "true":
        raise _Refusal(f'the label {OPT_IN} must be "true" or "false", not {wanted!r}')
    _refuse_unknown_keys(annotations)
    spec = holder.get("spec")
    if not isinstance(spec, Mapping):
        raise _Refusal("the pod has no spec")
    if annotations.get(DOMAIN + "status") == INJECTED:
        if CONTAINER_NAME not in _container_names(spec):
            raise _Refusal(f"{DOMAIN}status says injected but there is no {CONTAINER_NAME} container; remove it")
        return Injected(copy.deepcopy(dict(holder)), changed=False, upstream=None)
    if DOMAIN + "status" in annotations:
        raise _Refusal(f"{DOMAIN}status is written by the injector only")
    if spec.get("hostNetwork") is True:
        raise _Refusal("hostNetwork: true: the app's loopback port would be the node's; the gateway cannot guard it")
    result = copy.deepcopy(dict(holder))
    upstream = _add_gateway(result, annotations, settings)
    return Injected(result, changed=True, upstream=upstream)


def _string_map(holder: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``metadata.<key>`` (labels or annotations), empty when absent; refused when it is not a map."""
    metadata = holder.get("metadata") or {}
    found = (metadata.get(key) or {}) if isinstance(metadata, Mapping) else {}
    if not isinstance(found, Mapping):
        raise _Refusal(f"metadata.{key} is not a map")
    return {str(name): value for name, value in found.items()}


def _refuse_unknown_keys(annotations: Mapping[str, Any]) -> None:
    for key, value in annotations.items():
        if not key.startswith(DOMAIN):
            continue
        name = key.removeprefix(DOMAIN)
        if name not in KNOWN_KEYS:
            raise _Refusal(
                f"{key} is not allowed: the gateway's image, command, arguments, environment and privileges come "
                f"only from the injector's settings (allowed: {', '.join(sorted(KNOWN_KEYS - {'status'}))})"
            )
        if not isinstance(value, str):
            raise _Refusal(f"{key} must be a string")


def _container_names(spec: Mapping[str, Any]) -> set[str]:
    return {str(c.get("name")) for kind in ("containers", "initContainers") for c in spec.get(kind) or []}


def _add_gateway(holder: dict[str, Any], annotations: Mapping[str, str], settings: InjectorSettings) -> str:
    spec: dict[str, Any] = holder["spec"]
    _refuse_clashes(spec)
    config = _required_name(annotations, "config", "the ConfigMap holding gateway.yaml")
    secret = annotations.get(DOMAIN + "secret")
    if secret is not None:
        secret = _required_name(annotations, "secret", "the Secret holding the gateway's keys")
    port_name, port_number = _take_over_port(spec, annotations.get(DOMAIN + "port"))
    container = _gateway_container(settings, port_name, _resources(settings, annotations), mounts_secret=bool(secret))
    if settings.native_sidecar:
        spec.setdefault("initContainers", []).append({**container, "restartPolicy": "Always"})
    else:
        spec.setdefault("containers", []).append(container)
    spec.setdefault("volumes", []).extend(_volumes(config, secret))
    holder.setdefault("metadata", {}).setdefault("annotations", {})[DOMAIN + "status"] = INJECTED
    return f"http://127.0.0.1:{port_number}"


def _refuse_clashes(spec: Mapping[str, Any]) -> None:
    if CONTAINER_NAME in _container_names(spec):
        raise _Refusal(f"the pod already has a container named {CONTAINER_NAME}")
    taken = {v.get("name") for v in spec.get("volumes") or []} & set(VOLUMES)
    if taken:
        raise _Refusal(f"the pod already has a volume named {sorted(taken)[0]}")
    for container in _all_containers(spec):
        for port in container.get("ports") or []:
            if port.get("containerPort") in (GATEWAY_PORT, METRICS_PORT):
                raise _Refusal(
                    f"container {container.get('name')} declares port {port.get('containerPort')}, "
                    f"which the gateway listens on ({GATEWAY_PORT} and {METRICS_PORT})"
                )


def _all_containers(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _required_name(annotations: Mapping[str, str], key: str, what: str) -> str:
    value = annotations.get(DOMAIN + key)
    if value is None:
        raise _Refusal(f"{DOMAIN}{key} is missing: name {what}")
    if len(value) > 253 or not DNS_SUBDOMAIN.match(value):
        raise _Refusal(f"{DOMAIN}{key} is not a valid Kubernetes object name: {value!r}")
    return value


def _take_over_port(spec: dict[str, Any], annotated: str | None) -> tuple[str, int]:
    """The gateway port's name and the app's port number; a named app port is renamed ``<name>-app``."""
    if annotated is None:
        raise _Refusal(f"{DOMAIN}port is missing: name the app's container port (a name or a number)")
    if annotated.isdigit():
        number = int(annotated)
        if not 1 <= number <= 65535:
            raise _Refusal(f"{DOMAIN}port {annotated} is not a port number")
        if number in (GATEWAY_PORT, METRICS_PORT):
            raise _Refusal(f"{DOMAIN}port {number} is the gateway's own port; move the app to another one")
        if len(_matching_ports(spec, "containerPort", number)) > 1:
            raise _Refusal(f"{DOMAIN}port {number} is ambiguous: more than one container declares it")
        return "mfa-http", number
    if not _PORT_NAME.match(annotated) or len(annotated) > 15:
        raise _Refusal(f"{DOMAIN}port {annotated!r} is neither a port number nor a port name")
    matches = _matching_ports(spec, "name", annotated)
    if not matches:
        raise _Refusal(f"{DOMAIN}port {annotated!r}: no container declares a port with that name")
    if len(matches) > 1:
        raise _Refusal(f"{DOMAIN}port {annotated!r} is ambiguous: more than one container declares it")
    container, port = matches[0]
    renamed = f"{annotated}-app"
    if len(renamed) > 15:
        raise _Refusal(f"port name {annotated!r} is too long to rename to {renamed!r} (15 characters at most)")
    if _matching_ports(spec, "name", renamed):
        raise _Refusal(f"port name {renamed!r}, the app port's new name, is already taken")
    declared = port.get("containerPort")
    if not isinstance(declared, int):
        raise _Refusal(f"port {annotated!r} has no containerPort number")
    port["name"] = renamed
    _rename_probe_ports(container, annotated, renamed)
    return annotated, declared


def _matching_ports(spec: Mapping[str, Any], key: str, value: object) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(c, p) for c in _all_containers(spec) for p in c.get("ports") or [] if p.get(key) == value]


def _rename_probe_ports(container: dict[str, Any], old: str, new: str) -> None:
    """The app's probes that name its port keep probing the app, not the gateway (names resolve per container)."""
    for probe_key in _PROBES:
        probe = container.get(probe_key) or {}
        for handler in ("httpGet", "tcpSocket"):
            action = probe.get(handler)
            if isinstance(action, dict) and action.get("port") == old:
                action["port"] = new


def _resources(settings: InjectorSettings, annotations: Mapping[str, str]) -> dict[str, Any]:
    resources = copy.deepcopy(dict(settings.resources))
    for key in ("cpu", "memory"):
        value = annotations.get(DOMAIN + key)
        if value is None:
            continue
        if not QUANTITY.match(value):
            raise _Refusal(f"{DOMAIN}{key} is not a Kubernetes quantity: {value!r}")
        resources.setdefault("requests", {})[key] = value
        if key == "memory":
            resources.setdefault("limits", {})[key] = value
    return resources


def _gateway_container(
    settings: InjectorSettings, port_name: str, resources: dict[str, Any], *, mounts_secret: bool
) -> dict[str, Any]:
    mounts = [{"name": "mfa-gateway-config", "mountPath": CONFIG_PATH, "readOnly": True}]
    if mounts_secret:
        mounts.append({"name": "mfa-gateway-secrets", "mountPath": SECRETS_PATH, "readOnly": True})
    mounts += [{"name": "mfa-gateway-data", "mountPath": DATA_PATH}, {"name": "mfa-gateway-tmp", "mountPath": TMP_PATH}]
    return {
        "name": CONTAINER_NAME,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": ["serve", "--config", f"{CONFIG_PATH}/gateway.yaml"],
        "ports": [
            {"name": port_name, "containerPort": GATEWAY_PORT, "protocol": "TCP"},
            {"name": "mfa-metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "startupProbe": _probe("healthz", periodSeconds=2, timeoutSeconds=2, failureThreshold=60),
        "livenessProbe": _probe("healthz", periodSeconds=10, timeoutSeconds=3, failureThreshold=3),
        "readinessProbe": _probe("readyz", periodSeconds=5, timeoutSeconds=5, failureThreshold=2),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": resources,
        "volumeMounts": mounts,
    }


def _probe(path: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": f"{PREFIX}/{path}", "port": GATEWAY_PORT}, **timing}


def _volumes(config: str, secret: str | None) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [{"name": "mfa-gateway-config", "configMap": {"name": config}}]
    if secret:
        volumes.append({"name": "mfa-gateway-secrets", "secret": {"secretName": secret, "defaultMode": 0o444}})
    volumes += [
        {"name": "mfa-gateway-data", "emptyDir": {}},
        {"name": "mfa-gateway-tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    return volumes


def json_patch(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """The RFC 6902 operations that turn ``before`` into ``after``: maps key by key, lists item by item while they
    line up (appended items are added), anything else replaced whole."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        ops: list[dict[str, Any]] = []
        for key in before:
            if key not in after:
                ops.append({"op": "remove", "path": f"{path}/{_escape(key)}"})
        for key, value in after.items():
            if key not in before:
                ops.append({"op": "add", "path": f"{path}/{_escape(key)}", "value": copy.deepcopy(value)})
            else:
                ops += json_patch(before[key], value, f"{path}/{_escape(key)}")
        return ops
    if isinstance(before, list) and isinstance(after, list) and len(before) <= len(after):
        ops = []
        for index, value in enumerate(before):
            ops += json_patch(value, after[index], f"{path}/{index}")
        ops += [{"op": "add", "path": f"{path}/-", "value": copy.deepcopy(v)} for v in after[len(before) :]]
        return ops
    if before == after and type(before) is type(after):
        return []
    return [{"op": "replace", "path": path, "value": copy.deepcopy(after)}]


def _escape(key: str) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")
