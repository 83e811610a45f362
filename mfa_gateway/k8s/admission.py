"""Admission reviews: the webhook's side of sidecar injection. Pure: a decoded AdmissionReview in, the answer out.

The API server POSTs an ``admission.k8s.io/v1`` ``AdmissionReview`` for each Pod CREATE the webhook's registration
selects (pods labelled ``mfa-gateway.io/inject: "true"``, see :mod:`mfa_gateway.k8s.injection`). :func:`review`
answers with a review echoing the request's ``uid``:

- a Pod that opts in: ``allowed: true`` and the gateway as a base64 RFC 6902 patch (``patchType: JSONPatch``);
  a Pod already injected gets no patch;
- a Pod that does not opt in, an object that is not a Pod, another operation, a subresource: ``allowed: true``, no
  patch. The registration sends none of these; answering them harmlessly means a registration written too broadly
  cannot block the cluster's other objects;
- a Pod the injector cannot protect: ``allowed: false`` with ``status: {code: 403, message}``, the message starting
  with ``mfa-gateway: injection refused:`` so that the operator reading ``kubectl``'s error knows who refused and why.

A review it cannot read (not an ``admission.k8s.io/v1`` ``AdmissionReview``, no ``uid``, a Pod that is not a map...)
raises :class:`MalformedReview` (code ``malformed_review``), which the server answers with 400: never "allowed", so
with ``failurePolicy: Fail`` the pod is not created without its gateway. Its messages never quote the review.

Pods made by a controller (a Deployment's ReplicaSet) have no ``metadata.name`` yet (only ``generateName``) and often no
``metadata.namespace``: the namespace is the request's. The patch never touches either.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mfa_gateway.core.errors import BadRequest
from mfa_gateway.k8s.injection import Injected, InjectorSettings, inject, json_patch

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
POD = {"group": "", "version": "v1", "kind": "Pod"}
REFUSED_PREFIX = "mfa-gateway: injection refused: "

Result = Literal["injected", "unchanged", "refused", "ignored"]
"""What a review came to, for the log: a patch, a pod passed as it was, a refusal, or not a Pod CREATE at all."""


class MalformedReview(BadRequest):
    """The body is not an AdmissionReview this webhook can answer; ``uid`` is the request's, when it had one."""

    code = "malformed_review"
    default_message = "The body is not an admission.k8s.io/v1 AdmissionReview."
    uid: str | None = None


@dataclass(frozen=True)
class Reviewed:
    """The answer (an AdmissionReview) and what the log line says about it: never the pod's spec."""

    answer: dict[str, Any]
    uid: str
    namespace: str
    kind: str
    name: str
    result: Result


def review(document: object, settings: InjectorSettings) -> Reviewed:
    """The answer to one AdmissionReview (decoded JSON), or ``MalformedReview``."""
    request = _request(document)
    uid = request["uid"]
    try:
        return _review(request, uid, settings)
    except MalformedReview as exc:
        exc.uid = uid
        raise


def _request(document: object) -> Mapping[str, Any]:
    if not isinstance(document, Mapping):
        raise MalformedReview("The body must be a JSON object: an AdmissionReview.")
    if document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
        raise MalformedReview(f"The body must be an {API_VERSION} {KIND} (apiVersion and kind).")
    request = document.get("request")
    if not isinstance(request, Mapping):
        raise MalformedReview("The review has no request.")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("The review's request has no uid.")
    return request


def _review(request: Mapping[str, Any], uid: str, settings: InjectorSettings) -> Reviewed:
    kind, operation = request.get("kind"), request.get("operation")
    namespace, sub_resource = request.get("namespace", ""), request.get("subResource", "")
    if not isinstance(kind, Mapping) or not isinstance(operation, str):
        raise MalformedReview("The review's request has no kind or operation.")
    if not isinstance(namespace, str) or not isinstance(sub_resource, str):
        raise MalformedReview("The review's request.namespace and request.subResource must be strings.")
    kind_name = str(kind.get("kind", ""))
    if {key: kind.get(key) for key in POD} != POD or operation != "CREATE" or sub_resource:
        return Reviewed(_answer(uid, allowed=True), uid, namespace, kind_name, _name(request, None), "ignored")
    pod = request.get("object")
    if not isinstance(pod, Mapping):
        raise MalformedReview("The review's request.object must be a Pod (a JSON object).")
    name = _name(request, pod)
    outcome = inject(pod, settings)
    if not isinstance(outcome, Injected):
        status = {"code": 403, "message": REFUSED_PREFIX + outcome.message}
        return Reviewed(_answer(uid, allowed=False, status=status), uid, namespace, kind_name, name, "refused")
    patch = json_patch(pod, outcome.result)
    if not patch:
        return Reviewed(_answer(uid, allowed=True), uid, namespace, kind_name, name, "unchanged")
    encoded = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode("utf-8")).decode("ascii")
    patched = _answer(uid, allowed=True, patchType="JSONPatch", patch=encoded)
    return Reviewed(patched, uid, namespace, kind_name, name, "injected")


def _answer(uid: str, **response: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "response": {"uid": uid, **response}}


def _name(request: Mapping[str, Any], pod: Mapping[str, Any] | None) -> str:
    """The pod's name for the log: its name, else its ``generateName`` followed by ``*`` (a controller's pod)."""
    metadata = pod.get("metadata") if pod is not None else None
    if isinstance(metadata, Mapping):
        if isinstance(metadata.get("name"), str) and metadata["name"]:
            return str(metadata["name"])
        if isinstance(metadata.get("generateName"), str) and metadata["generateName"]:
            return f"{metadata['generateName']}*"
    name = request.get("name")
    return name if isinstance(name, str) else ""
