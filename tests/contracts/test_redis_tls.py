"""Redis over TLS (``rediss://``): the master, and the sentinels with ``state.sentinel_tls``, against real
redis-server processes serving TLS only, with certificates made here for 127.0.0.1."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mfa_gateway.adapters.state.redis import RedisSharedState
from tests.helpers.servers import on_a_free_port, require_binary, start_listening
from tests.helpers.support import serves, unavailable

pytestmark = pytest.mark.redis  # every test here starts redis-server (and sentinels)

T0 = 1_800_000_000.0
SENTINEL_PASSWORD = "tls-sentinel-password-0123"
# The servers judge certificates by the wall clock: a window wide enough that no clock is needed here.
VALID_FROM = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
VALID_UNTIL = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the servers' certificate
    other_ca: Path  # a CA that signed nothing here
    cert: Path
    key: Path
    misnamed_cert: Path  # signed by ``ca`` too, but for another host name


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_ca(path: Path, common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(VALID_FROM)
        .not_valid_after(VALID_UNTIL)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated second CA."""
    root = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _write_ca(root / "ca.pem", "mfa-gateway test CA")
    _write_ca(root / "other-ca.pem", "someone else's CA")
    key = ec.generate_private_key(ec.SECP256R1())
    (root / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    names: list[tuple[str, x509.GeneralName]] = [
        ("server.pem", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
        ("misnamed.pem", x509.DNSName("elsewhere.example")),
    ]
    for file_name, subject_name in names:
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(str(subject_name.value)))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(VALID_FROM)
            .not_valid_after(VALID_UNTIL)
            .add_extension(x509.SubjectAlternativeName([subject_name]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        (root / file_name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Pki(root / "ca.pem", root / "other-ca.pem", root / "server.pem", root / "server.key", root / "misnamed.pem")


@contextlib.contextmanager
def tls_redis(workdir: Path, pki: Pki, name: str, extra: list[str], *, cert: Path | None = None) -> Iterator[int]:
    """A redis-server (or sentinel, by ``name``) listening with TLS only on a free loopback port."""
    binary = require_binary("redis-server", "redis-server")

    def start(port: int) -> tuple[int, Popen[bytes]]:
        conf, log = workdir / f"{name}-{port}.conf", workdir / f"{name}-{port}.log"
        lines = [
            "port 0",
            f"tls-port {port}",
            "bind 127.0.0.1",
            f"dir {workdir}",
            'save ""',
            f"tls-cert-file {cert or pki.cert}",
            f"tls-key-file {pki.key}",
            f"tls-ca-cert-file {pki.ca}",
            "tls-auth-clients no",
            "tls-replication yes",
            *extra,
        ]
        conf.write_text("\n".join(lines) + "\n")
        sentinel = ["--sentinel"] if name == "sentinel" else []
        return port, start_listening([binary, str(conf), *sentinel], [port], log)

    port, process = on_a_free_port(start)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _url(port: int, ca: Path) -> str:
    return f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"


async def test_the_master_over_tls_works_and_checks_the_certificate(pki: Pki, tmp_path: Path) -> None:
    """``rediss://`` with the CA that signed the server works (claims, challenges); with another CA the server is
    not trusted: Redis counts as unavailable (503), nothing is sent in clear."""
    with tls_redis(tmp_path, pki, "master", []) as port:
        state = RedisSharedState(_url(port, pki.ca), prefix="tls:")
        try:
            await serves(state, T0)
        finally:
            await state.close()
        await unavailable(RedisSharedState(_url(port, pki.other_ca), prefix="tls:"))


async def test_a_certificate_for_another_host_is_refused(pki: Pki, tmp_path: Path) -> None:
    """A certificate signed by the trusted CA but naming another host does not pass: host names are checked."""
    with tls_redis(tmp_path, pki, "master", [], cert=pki.misnamed_cert) as port:
        await unavailable(RedisSharedState(_url(port, pki.ca), prefix="tls:"))


@pytest.mark.parametrize("password", [None, SENTINEL_PASSWORD], ids=["sentinel over TLS", "and with a password"])
async def test_sentinels_over_tls_find_the_master(pki: Pki, tmp_path: Path, password: str | None) -> None:
    """With ``sentinel_tls`` the sentinels are reached over TLS with the URL's CA (and their own password when they
    require one); the master they name is reached over TLS too. Without ``sentinel_tls`` a TLS-only sentinel
    cannot be asked: unavailable, not a connection in clear."""
    with tls_redis(tmp_path, pki, "master", []) as master_port:
        sentinel_conf = [
            f"sentinel monitor mymaster 127.0.0.1 {master_port} 1",
            *([f"requirepass {password}"] if password else []),
        ]
        with tls_redis(tmp_path, pki, "sentinel", sentinel_conf) as sentinel_port:

            def through_sentinel(*, sentinel_tls: bool) -> RedisSharedState:
                return RedisSharedState(
                    _url(1, pki.ca),
                    prefix="tls:",
                    sentinels=[("127.0.0.1", sentinel_port)],
                    sentinel_master="mymaster",
                    sentinel_password=password,
                    sentinel_tls=sentinel_tls,
                )

            state = through_sentinel(sentinel_tls=True)
            try:
                await state.ping()
                assert await state.claim_once("via-sentinel", T0, 60.0)
            finally:
                await state.close()
            direct = RedisSharedState(_url(master_port, pki.ca), prefix="tls:")
            try:
                assert not await direct.claim_once("via-sentinel", T0 + 1, 60.0)  # it is on that master
            finally:
                await direct.close()
            await unavailable(through_sentinel(sentinel_tls=False))
