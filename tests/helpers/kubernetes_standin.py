"""A stand-in for the Kubernetes TokenReview API: the one fake in the secrets tests.

OpenBao's kubernetes auth method checks a service-account token by POSTing a TokenReview to the API server. No API
server can run here, so this answers that one endpoint: tokens it issued (ES256 JWTs carrying the service-account
claims OpenBao reads) are authenticated until revoked. OpenBao, its auth method and role bindings, and the gateway's
login code are all real. OpenBao insists on a CA certificate when it is told not to use a pod's own, so ``ca_pem``
is a throwaway self-signed one (unused: the stand-in speaks plain HTTP on loopback).
"""

from __future__ import annotations

import datetime
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


class TokenReviewStandIn:
    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._accounts: dict[str, tuple[str, str, str]] = {}  # token -> (namespace, name, uid)
        self.reviews = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def issue(self, namespace: str, name: str) -> str:
        """A service-account token like the one kubelet mounts into a pod."""
        uid = str(uuid.uuid4())
        claims = {
            "iss": "kubernetes/serviceaccount",
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": uid,
        }
        token = jwt.encode(claims, self._key, algorithm="ES256")
        self._accounts[token] = (namespace, name, uid)
        return token

    def revoke(self, token: str) -> None:
        self._accounts.pop(token, None)

    def ca_pem(self) -> str:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in CA")])
        now = datetime.datetime.now(datetime.UTC)  # noqa: TID251 - a certificate's validity is real time
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self._key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                if self.path != REVIEW_PATH:
                    self.send_error(404)
                    return
                standin.reviews += 1
                account = standin._accounts.get(str(body.get("spec", {}).get("token", "")))
                status: dict[str, object] = {"authenticated": False, "error": "token not valid"}
                if account is not None:
                    namespace, name, uid = account
                    user = {"username": f"system:serviceaccount:{namespace}:{name}", "uid": uid, "groups": []}
                    status = {"authenticated": True, "user": user}
                data = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
