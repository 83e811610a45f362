"""The injector's own CA and serving certificate (``tls.generate``), as Vault's agent injector makes them. Pure: the
clock is an argument, the Kubernetes objects are dicts.

:func:`issue` makes a CA and, signed by it, the serving certificate for the injector's Service (DNS names
``<service>``, ``<service>.<namespace>`` and ``<service>.<namespace>.svc``, the last being what the API server asks
for). Both are EC P-256. The CA signs that one certificate and its private key is then thrown away: it is never
stored, so whoever reads the Secret can impersonate the webhook until the certificate expires but can mint nothing
else. A renewal is therefore a new CA too, and the CA bundle (``ca.crt``, what goes into every webhook's ``caBundle``)
holds the new CA first and the previous one while it is still valid, so that replicas still serving the previous
certificate are trusted until they load the new one.

Lifetimes: the certificate and its CA are valid :data:`VALIDITY` (one year) from issue, back-dated by :data:`BACKDATE`
for clocks that lag; a pair is renewed once it is within :data:`RENEW_BEFORE` (30 days) of expiry, or when it cannot be
read, was issued for other names, does not match its key or does not chain to the bundle's newest CA
(:func:`renewal_due`).

The Secret keeps the three PEM values under ``ca.crt``, ``tls.crt`` and ``tls.key`` (type ``kubernetes.io/tls``).
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
"""How long a serving certificate (and the CA made for it) is valid."""
RENEW_BEFORE = datetime.timedelta(days=30)
"""A certificate this close to its expiry is renewed (every replica checks once a minute)."""
BACKDATE = datetime.timedelta(hours=1)
"""``notBefore`` lies this far in the past, so that an API server whose clock lags still accepts a new certificate."""
SECRET_KEYS = ("ca.crt", "tls.crt", "tls.key")
MANAGED_BY = {"app.kubernetes.io/managed-by": "mfa-gateway-injector"}


@dataclass(frozen=True)
class ServingBundle:
    """The CA bundle (newest CA first), the serving certificate and its private key, each PEM."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def dns_names(service: str, namespace: str) -> tuple[str, ...]:
    return (service, f"{service}.{namespace}", f"{service}.{namespace}.svc")


def _time(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, datetime.UTC)


def issue(service: str, namespace: str, now: float, previous: ServingBundle | None = None) -> ServingBundle:
    """A new CA and serving certificate for the Service at time ``now``; the bundle keeps ``previous``'s newest CA
    while that is still valid."""
    start, names = _time(now), dns_names(service, namespace)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"{names[-1]} CA {start:%Y%m%dT%H%M%SZ}")]  # new per renewal
    )
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key(), start)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        _builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[-1])]), ca_name, key.public_key(), start)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # ca_key goes out of scope here: never stored
    bundle = [ca]
    kept = _certificates(previous.ca_pem)[:1] if previous is not None else []
    bundle += [old for old in kept if old.not_valid_after_utc > start]
    return ServingBundle(
        b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in bundle),
        leaf.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, start: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(start + VALIDITY)
    )


def _key_usage(*, certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificates,
        crl_sign=certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        return []


def renewal_due(bundle: ServingBundle, service: str, namespace: str, now: float) -> str | None:
    """Why ``bundle`` must be replaced at ``now`` (a phrase for the log), or None while it serves as it is."""
    leaves, cas = _certificates(bundle.cert_pem), _certificates(bundle.ca_pem)
    if not leaves or not cas:
        return "its certificate or CA bundle does not parse"
    leaf, moment = leaves[0], _time(now)
    try:
        key = serialization.load_pem_private_key(bundle.key_pem, password=None)
        leaf.verify_directly_issued_by(cas[0])
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return "its key does not parse or its certificate does not chain to the bundle's CA"
    if _public(key.public_key()) != _public(leaf.public_key()):
        return "its key does not match its certificate"
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    except x509.ExtensionNotFound:
        names = []
    if sorted(names) != sorted(dns_names(service, namespace)):
        return "it was issued for other names than the Service's"
    if moment < leaf.not_valid_before_utc:
        return "it is not valid yet"
    if moment >= leaf.not_valid_after_utc - RENEW_BEFORE:
        return f"it expires at {leaf.not_valid_after_utc.isoformat()}"
    return None


def _public(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def secret_data(bundle: ServingBundle) -> dict[str, str]:
    values = (bundle.ca_pem, bundle.cert_pem, bundle.key_pem)
    return {key: base64.b64encode(value).decode("ascii") for key, value in zip(SECRET_KEYS, values, strict=True)}


def new_secret(name: str, bundle: ServingBundle) -> dict[str, Any]:
    """The Secret to create when there is none."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": dict(MANAGED_BY)},
        "type": "kubernetes.io/tls",
        "data": secret_data(bundle),
    }


def bundle_of(secret: Mapping[str, Any]) -> ServingBundle | None:
    """The bundle a Secret holds, or None if it holds no readable one (a key missing, not base64)."""
    data = secret.get("data")
    if not isinstance(data, Mapping) or not all(isinstance(data.get(key), str) for key in SECRET_KEYS):
        return None
    try:
        ca, cert, key = (base64.b64decode(data[key], validate=True) for key in SECRET_KEYS)
    except (binascii.Error, ValueError):
        return None
    return ServingBundle(ca, cert, key)


def ca_bundle_patch(configuration: Mapping[str, Any], ca_pem: bytes) -> list[dict[str, Any]]:
    """The JSON Patch that sets ``caBundle`` on every webhook of a MutatingWebhookConfiguration (empty when each
    has it already). Each change is guarded by a ``test`` of that webhook's name, so a list reordered meanwhile
    fails the patch instead of patching the wrong entry. Only ``clientConfig.caBundle`` is ever written.
    ``ValueError`` if the configuration has no webhooks."""
    webhooks = configuration.get("webhooks")
    if not isinstance(webhooks, Sequence) or not webhooks or not all(isinstance(w, Mapping) for w in webhooks):
        raise ValueError("it has no webhooks")
    wanted = base64.b64encode(ca_pem).decode("ascii")
    patch: list[dict[str, Any]] = []
    for index, webhook in enumerate(webhooks):
        client = webhook.get("clientConfig")
        if isinstance(client, Mapping) and client.get("caBundle") == wanted:
            continue
        patch.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook.get("name")})
        patch.append({"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": wanted})
    return patch
