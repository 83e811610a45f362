"""The Kubernetes API from inside the cluster: the handful of calls the injector's ``tls.generate`` mode makes.

A small client of its own, on aiohttp's, rather than a generated Kubernetes client: five REST calls on two kinds of
object, and the project already ships aiohttp. It reaches the API server as every in-cluster client does:

* the address from ``KUBERNETES_SERVICE_HOST`` and ``KUBERNETES_SERVICE_PORT``;
* the service account's files under ``/var/run/secrets/kubernetes.io/serviceaccount``: ``namespace`` (read once),
  ``ca.crt`` (the cluster CA the API server's certificate must chain to; read once) and ``token``, **read again for
  every request**: a projected token is rotated by the kubelet while the pod runs, and the old one expires.

Errors are ``KubernetesError`` (``KubernetesConflict`` for a 409), whose messages name the object and, for a refusal
(401/403), the permission the injector's RBAC must grant; never the token.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from mfa_gateway import logs
from mfa_gateway.ports import KubernetesApi, KubernetesConflict, KubernetesError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
REQUEST_TIMEOUT = 10.0
"""Seconds one call may take (connecting included); the keeper retries a failed round later."""


@dataclass(frozen=True)
class InCluster:
    """Where the API server is and how to prove who we are."""

    base_url: str
    token_file: Path
    ca_file: Path
    namespace: str

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], root: Path = SERVICE_ACCOUNT) -> InCluster:
        """From the variables and files every pod gets; ``KubernetesError`` naming what is missing."""
        host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise KubernetesError(
                "tls.generate needs the Kubernetes API, but KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not "
                "set: run the injector in the cluster, or give tls.cert_file and tls.key_file instead"
            )
        try:
            namespace = (root / "namespace").read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise KubernetesError(
                f"tls.generate needs the service account's files in {root} ({exc.strerror}): mount its token "
                "(automountServiceAccountToken: true)"
            ) from None
        address = f"[{host}]" if ":" in host else host
        return cls(f"https://{address}:{port}", root / "token", root / "ca.crt", namespace)


class KubeApi(KubernetesApi):
    """``KubernetesApi`` over HTTPS to the API server, as the pod's service account."""

    def __init__(self, where: InCluster, timeout: float = REQUEST_TIMEOUT) -> None:
        self._where = where
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def namespace(self) -> str:
        return self._where.namespace

    def _secrets(self, name: str = "") -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets" + (f"/{name}" if name else "")

    async def read_secret(self, name: str) -> dict[str, Any] | None:
        return await self._read(self._secrets(name), f"get the Secret {name}")

    async def create_secret(self, secret: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", self._secrets(), f"create the Secret {_name_of(secret)}", body=secret)

    async def replace_secret(self, secret: Mapping[str, Any]) -> dict[str, Any]:
        name = _name_of(secret)
        return await self._call("PUT", self._secrets(name), f"update the Secret {name}", body=secret)

    async def read_webhook_configuration(self, name: str) -> dict[str, Any] | None:
        return await self._read(f"{WEBHOOKS}/{name}", f"get the MutatingWebhookConfiguration {name}")

    async def patch_webhook_configuration(self, name: str, patch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        what = f"patch the MutatingWebhookConfiguration {name}"
        return await self._call(
            "PATCH", f"{WEBHOOKS}/{name}", what, body=list(patch), content_type="application/json-patch+json"
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            try:
                context = ssl.create_default_context(cafile=str(self._where.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise KubernetesError(f"cannot read the cluster CA {self._where.ca_file}: {exc}") from None
            connector = aiohttp.TCPConnector(ssl=context, limit=4)
            self._session = aiohttp.ClientSession(self._where.base_url, connector=connector, timeout=self._timeout)
        return self._session

    def _token(self) -> str:
        try:
            token = self._where.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            where = self._where.token_file
            raise KubernetesError(f"cannot read the service account token {where}: {exc.strerror}") from None
        logs.register_secret(token)  # a log line that quoted it would be redacted
        return token

    async def _read(self, path: str, what: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", path, what)
        except KubernetesError as exc:
            if exc.status == 404:
                return None
            raise

    async def _call(
        self, method: str, path: str, what: str, *, body: object = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        session = self._open()
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode("utf-8")
        try:
            async with session.request(method, path, data=data, headers=headers) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
            raise KubernetesError(f"cannot {what}: the Kubernetes API did not answer ({type(exc).__name__})") from None
        if status >= 400:
            raise _refusal(status, what, text)
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise KubernetesError(f"cannot {what}: the Kubernetes API answered something that is not an object")
        return answer


def _name_of(secret: Mapping[str, Any]) -> str:
    metadata = secret.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""


def _refusal(status: int, what: str, text: str) -> KubernetesError:
    try:
        reason = json.loads(text).get("message", "")
    except (ValueError, AttributeError):
        reason = ""
    detail = f": {reason}" if isinstance(reason, str) and reason else ""
    if status == 409:
        return KubernetesConflict(f"cannot {what}: conflict{detail}", status=status)
    if status in (401, 403):
        return KubernetesError(
            f"cannot {what}: the Kubernetes API refused it ({status}){detail}; the injector's service account needs "
            "the RBAC of docs/security/kubernetes.md (T-K7)",
            status=status,
        )
    return KubernetesError(f"cannot {what}: the Kubernetes API answered {status}{detail}", status=status)
