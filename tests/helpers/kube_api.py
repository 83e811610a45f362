"""A stand-in for the Kubernetes API server: the handful of endpoints the injector's ``tls.generate`` mode calls.

No kube-apiserver can run here (it needs etcd and a cluster), so this small aiohttp server answers, over TLS with a
CA of its own and only to bearer tokens it accepts, as the API server does for these calls:

* ``GET``/``PUT`` ``/api/v1/namespaces/{ns}/secrets/{name}`` and ``POST /api/v1/namespaces/{ns}/secrets``, with
  ``resourceVersion`` semantics: every write gets a new version, a create of an existing name is 409
  ``AlreadyExists``, a replace whose ``metadata.resourceVersion`` is not the current one is 409 ``Conflict``;
* ``GET``/``PATCH`` (``application/json-patch+json``, applied with the ``jsonpatch`` library; a failed ``test`` is
  422) ``/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}``;
* the contract's RBAC for the injector's service account: ``create`` on Secrets of its namespace, ``get``/``update``
  on its one Secret, ``get``/``patch`` on its one webhook configuration; anything else is 403, a missing or revoked
  token 401. Errors are ``Status`` objects.

``hold_reads(n)`` makes the next ``n`` reads of a Secret wait for each other, so that ``n`` injectors see the same
state and then race to write it: what happens when replicas start (or renew) at the same moment.
"""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.helpers.certificates import TestCA
from tests.helpers.deploy import require_module
from tests.helpers.servers import bound_port

if TYPE_CHECKING:
    import jsonpatch  # type: ignore[import-untyped]  # the package ships no type information
else:
    jsonpatch = require_module("jsonpatch", "jsonpatch")

WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


@dataclass
class Call:
    method: str
    path: str
    status: int
    body: Any = None


@dataclass
class Rbac:
    """What the service account may do: the contract's Role and ClusterRole."""

    namespace: str
    secret: str
    webhook: str

    def allows(self, method: str, namespace: str | None, kind: str, name: str | None) -> bool:
        if kind == "secrets":
            return namespace == self.namespace and (
                method == "POST" or (method in ("GET", "PUT") and name == self.secret)
            )
        return method in ("GET", "PATCH") and name == self.webhook


@dataclass
class KubeApiStandIn:
    rbac: Rbac
    tokens: set[str] = field(default_factory=set)
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    ca: TestCA = field(default_factory=lambda: TestCA("stand-in cluster CA"))
    port: int = 0
    _version: int = 1000
    _held: asyncio.Barrier | None = None
    _holding: int = 0

    def hold_reads(self, count: int) -> None:
        """The next ``count`` Secret reads each wait until all ``count`` have arrived."""
        self._held, self._holding = asyncio.Barrier(count), count

    def writes(self, method: str | None = None) -> Iterator[Call]:
        return (c for c in self.calls if c.method != "GET" and (method is None or c.method == method))

    def add_webhook_configuration(self, name: str, webhooks: tuple[str, ...] = ("inject.mfa-gateway.io",)) -> None:
        self.webhooks[name] = self._stamped(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": name},
                "webhooks": [
                    {
                        "name": webhook,
                        "clientConfig": {"service": {"name": "mfa-gateway-injector", "namespace": self.rbac.namespace,
                                                     "path": "/mutate", "port": 443}},
                        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                   "resources": ["pods"]}],
                        "objectSelector": {"matchLabels": {"mfa-gateway.io/inject": "true"}},
                        "failurePolicy": "Fail",
                        "sideEffects": "None",
                        "admissionReviewVersions": ["v1"],
                    }
                    for webhook in webhooks
                ],
            }
        )  # fmt: skip

    def _stamped(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._version)
        return obj

    # -- serving ---------------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record, self._authorise])
        app.router.add_route("GET", "/api/v1/namespaces/{ns}/secrets/{name}", self._read_secret)
        app.router.add_route("PUT", "/api/v1/namespaces/{ns}/secrets/{name}", self._replace_secret)
        app.router.add_route("POST", "/api/v1/namespaces/{ns}/secrets", self._create_secret)
        app.router.add_route("GET", WEBHOOKS + "/{name}", self._read_webhook)
        app.router.add_route("PATCH", WEBHOOKS + "/{name}", self._patch_webhook)
        return app

    @asynccontextmanager
    async def running(self, folder: Path) -> Any:
        """Serve over TLS on a loopback port; ``folder`` gets the service account's files (token, ca.crt,
        namespace) as a pod has them, with one token this server accepts."""
        cert, key = self.ca.serving().write(folder / "apiserver")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
        self.port = bound_port(runner)
        account = folder / "serviceaccount"
        account.mkdir(parents=True, exist_ok=True)
        self.ca.write(account / "ca.crt")
        (account / "namespace").write_text(self.rbac.namespace)
        self.tokens.add("token-1")
        (account / "token").write_text("token-1\n")
        try:
            yield account
        finally:
            await runner.cleanup()

    @property
    def environ(self) -> dict[str, str]:
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.port)}

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        response = await handler(request)
        self.calls.append(Call(request.method, request.path, response.status, body))
        return response

    @web.middleware
    async def _authorise(self, request: web.Request, handler: Any) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return _status(401, "Unauthorized", "Unauthorized")
        kind = "secrets" if "/secrets" in request.path else "mutatingwebhookconfigurations"
        namespace, name = request.match_info.get("ns"), request.match_info.get("name")
        if not self.rbac.allows(request.method, namespace, kind, name):
            return _status(
                403,
                "Forbidden",
                f'{kind} "{name or ""}" is forbidden: User "system:serviceaccount:{self.rbac.namespace}:'
                f'mfa-gateway-injector" cannot {request.method.lower()} resource "{kind}"',
            )
        return await handler(request)

    async def _read_secret(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        if self._held is not None and self._holding > 0:
            self._holding -= 1
            barrier = self._held
            await barrier.wait()
        if key not in self.secrets:
            return _status(404, "NotFound", f'secrets "{key[1]}" not found')
        return web.json_response(self.secrets[key])

    async def _create_secret(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = (request.match_info["ns"], body["metadata"]["name"])
        if key in self.secrets:
            return _status(409, "AlreadyExists", f'secrets "{key[1]}" already exists')
        body["metadata"]["namespace"] = key[0]
        self.secrets[key] = self._stamped(copy.deepcopy(body))
        return web.json_response(self.secrets[key], status=201)

    async def _replace_secret(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = (request.match_info["ns"], request.match_info["name"])
        if key not in self.secrets:
            return _status(404, "NotFound", f'secrets "{key[1]}" not found')
        sent = body.get("metadata", {}).get("resourceVersion")
        if sent is not None and sent != self.secrets[key]["metadata"]["resourceVersion"]:
            return _status(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on secrets "{key[1]}": the object has been modified; please apply '
                "your changes to the latest version and try again",
            )
        self.secrets[key] = self._stamped(copy.deepcopy(body))
        return web.json_response(self.secrets[key])

    async def _read_webhook(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.webhooks:
            return _status(404, "NotFound", f'mutatingwebhookconfigurations.admissionregistration.k8s.io "{name}" '
                                            "not found")  # fmt: skip
        return web.json_response(self.webhooks[name])

    async def _patch_webhook(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if request.content_type != "application/json-patch+json":
            return _status(415, "UnsupportedMediaType", f"the media type {request.content_type!r} is not supported")
        if name not in self.webhooks:
            return _status(404, "NotFound", f'"{name}" not found')
        try:
            patched = jsonpatch.apply_patch(self.webhooks[name], await request.json())
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            return _status(422, "Invalid", f"the server rejected our request due to an error in our request: {exc}")
        self.webhooks[name] = self._stamped(patched)
        return web.json_response(self.webhooks[name])


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
            "code": code}  # fmt: skip
    return web.Response(text=json.dumps(body), status=code, content_type="application/json")
