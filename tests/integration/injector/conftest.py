"""A real injector webhook on a loopback port over HTTPS, and clients that verify its certificate.

The server is the product's (``create_injector_app`` behind ``start_site``, with the serving certificate's SSL
context); the certificates come from throwaway CAs (``tests.helpers.certificates``). Each request opens a new
connection, so each sees the certificate served at that moment. The file keeper is built with a poll interval of an
hour: a test that changes the files calls ``check()`` itself instead of waiting for the poll.
"""

from __future__ import annotations

import asyncio
import io
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mfa_gateway.k8s.injector_config import InjectorConfig
from mfa_gateway.runtime.injector import InjectorRuntime
from mfa_gateway.runtime.tls import CertificateFiles, ServingCertificate
from mfa_gateway.web.injector import create_injector_app
from mfa_gateway.web.server import start_site
from tests.helpers.certificates import TestCA
from tests.helpers.servers import bound_port

IMAGE = "registry.example/mfa-gateway:0.9.0"
REVIEWS = Path(__file__).resolve().parents[2] / "unit" / "k8s" / "reviews"
AN_HOUR = 3600.0


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Webhook:
    """The running webhook: its port, the CA that signed its first certificate, and its certificate files."""

    port: int
    ca: TestCA
    cert_file: Path
    key_file: Path
    files: CertificateFiles
    certificate: ServingCertificate

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        trusting: bytes | None = None,
    ) -> Answer:
        """One request on a new connection from a client that trusts only ``trusting`` (the first CA by default)."""
        context = ssl.create_default_context(cadata=(trusting or self.ca.pem).decode("ascii"))
        connector = aiohttp.TCPConnector(ssl=context, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            sent = {"Content-Type": "application/json", **(headers or {})}
            async with session.request(method, self.url + path, data=io.BytesIO(body), headers=sent) as response:
                text = await response.text()
                parsed = await response.json(content_type=None) if text else None
                return Answer(response.status, dict(response.headers), parsed)

    async def review(self, document: bytes, *, trusting: bytes | None = None) -> Answer:
        return await self.request("POST", "/mutate", document, trusting=trusting)


async def verifies(port: int, ca_pem: bytes, server_hostname: str | None = None) -> bool:
    """Whether a new TLS connection to the port completes and verifies against ``ca_pem`` and the name asked for
    (``server_hostname``, sent as SNI, as the API server asks for ``<service>.<namespace>.svc``; else 127.0.0.1)."""
    context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=server_hostname)
    except (ssl.SSLError, ConnectionError):
        return False
    writer.close()
    await writer.wait_closed()
    return True


def review_bytes(case: str) -> bytes:
    return (REVIEWS / f"{case}.review.json").read_bytes()


@pytest.fixture
async def webhook(tmp_path: Path) -> AsyncIterator[Webhook]:
    ca = TestCA("first CA")
    cert_file, key_file = ca.serving().write(tmp_path / "tls")
    config = InjectorConfig.model_validate(
        {"image": IMAGE, "tls": {"cert_file": str(cert_file), "key_file": str(key_file)}}
    )
    certificate = ServingCertificate()
    files = CertificateFiles(cert_file, key_file, certificate, AN_HOUR)
    assert files.check()
    runtime = InjectorRuntime(config, config.injection(), certificate, files.run)
    runner: web.AppRunner = await start_site(
        create_injector_app(runtime), "127.0.0.1", 0, ssl_context=certificate.context
    )
    try:
        yield Webhook(bound_port(runner), ca, cert_file, key_file, files, certificate)
    finally:
        await runner.cleanup()
