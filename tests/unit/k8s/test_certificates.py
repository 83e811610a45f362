"""The generated CA and serving certificate (``tls.generate``), as data: names, lifetimes, renewal, the CA bundle,
the Secret and the webhook patch. Time is an argument; nothing here talks to a server."""

from __future__ import annotations

import base64
import datetime
from typing import TYPE_CHECKING, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from mfa_gateway.k8s.certificates import (
    BACKDATE,
    RENEW_BEFORE,
    VALIDITY,
    ServingBundle,
    bundle_of,
    ca_bundle_patch,
    dns_names,
    issue,
    new_secret,
    renewal_due,
)
from tests.helpers.deploy import require_module

if TYPE_CHECKING:
    import jsonpatch  # type: ignore[import-untyped]  # the package ships no type information
else:
    jsonpatch = require_module("jsonpatch", "jsonpatch")

NOW = 1_800_000_000.0
DAY = 86400.0
SERVICE, NAMESPACE = "mfa-gateway-injector", "mfa"


@pytest.fixture(scope="module")
def bundle() -> ServingBundle:
    return issue(SERVICE, NAMESPACE, NOW)


def leaf_of(bundle: ServingBundle) -> x509.Certificate:
    return x509.load_pem_x509_certificate(bundle.cert_pem)


def cas_of(bundle: ServingBundle) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle.ca_pem)


def test_the_certificate_is_for_the_services_names_signed_by_a_p256_ca(bundle: ServingBundle) -> None:
    """The serving certificate names <svc>, <svc>.<ns> and <svc>.<ns>.svc, is EC P-256, for server authentication
    only, not a CA, and is signed by the bundle's CA, which may sign nothing below it (path length 0)."""
    leaf, (ca,) = leaf_of(bundle), cas_of(bundle)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert names == ["mfa-gateway-injector", "mfa-gateway-injector.mfa", "mfa-gateway-injector.mfa.svc"]
    assert names == list(dns_names(SERVICE, NAMESPACE))
    for certificate in (leaf, ca):
        key = certificate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 0)
    leaf.verify_directly_issued_by(ca)


def test_lifetimes_are_one_year_back_dated_by_an_hour(bundle: ServingBundle) -> None:
    """Issued at `now`: valid from an hour before (a lagging clock) to a year after, CA and certificate alike."""
    start = datetime.datetime.fromtimestamp(NOW, datetime.UTC)
    assert (VALIDITY.days, RENEW_BEFORE.days, BACKDATE.total_seconds()) == (365, 30, 3600)
    for certificate in (leaf_of(bundle), *cas_of(bundle)):
        assert certificate.not_valid_before_utc == start - BACKDATE
        assert certificate.not_valid_after_utc == start + VALIDITY


def test_renewal_is_due_thirty_days_before_expiry(bundle: ServingBundle) -> None:
    """Nothing is due while more than 30 days are left; at 30 days left (and after expiry) it is, saying when it
    expires; before its notBefore it is too."""
    assert renewal_due(bundle, SERVICE, NAMESPACE, NOW) is None
    assert renewal_due(bundle, SERVICE, NAMESPACE, NOW + 334 * DAY) is None
    assert (renewal_due(bundle, SERVICE, NAMESPACE, NOW + 335 * DAY) or "").startswith("it expires at ")
    assert (renewal_due(bundle, SERVICE, NAMESPACE, NOW + 400 * DAY) or "").startswith("it expires at ")
    assert renewal_due(bundle, SERVICE, NAMESPACE, NOW - 2 * 3600) == "it is not valid yet"


def test_a_pair_that_cannot_serve_the_service_is_due(bundle: ServingBundle) -> None:
    """Another Service's or namespace's names, a key that is not its certificate's, a certificate that does not
    chain to the bundle's newest CA, and bytes that are not PEM: each is due, with the reason."""
    other = issue(SERVICE, "elsewhere", NOW)
    assert renewal_due(bundle, SERVICE, "elsewhere", NOW) == "it was issued for other names than the Service's"
    assert renewal_due(bundle, "another", NAMESPACE, NOW) == "it was issued for other names than the Service's"
    wrong_key = ServingBundle(bundle.ca_pem, bundle.cert_pem, other.key_pem)
    assert renewal_due(wrong_key, SERVICE, NAMESPACE, NOW) == "its key does not match its certificate"
    wrong_ca = ServingBundle(other.ca_pem, bundle.cert_pem, bundle.key_pem)
    assert "does not chain to the bundle's CA" in (renewal_due(wrong_ca, SERVICE, NAMESPACE, NOW) or "")
    garbage = ServingBundle(b"x", b"y", b"z")
    assert renewal_due(garbage, SERVICE, NAMESPACE, NOW) == "its certificate or CA bundle does not parse"
    not_a_key = ServingBundle(
        bundle.ca_pem, bundle.cert_pem, b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"
    )
    assert "its key does not parse" in (renewal_due(not_a_key, SERVICE, NAMESPACE, NOW) or "")


def test_every_renewal_makes_a_new_ca_and_keeps_the_previous_one_while_valid(bundle: ServingBundle) -> None:
    """The CA's key is never kept, so a renewal is a new CA: the bundle lists it first and the previous newest CA
    after it while that is valid (replicas still serving the old certificate stay trusted); an expired one is
    dropped, and the bundle never grows past two."""
    renewed = issue(SERVICE, NAMESPACE, NOW + 340 * DAY, previous=bundle)
    first, second = cas_of(renewed)
    assert second == cas_of(bundle)[0] and first != second
    leaf_of(renewed).verify_directly_issued_by(first)
    again = issue(SERVICE, NAMESPACE, NOW + 700 * DAY, previous=renewed)
    assert cas_of(again)[1:] == [first]
    late = issue(SERVICE, NAMESPACE, NOW + 400 * DAY, previous=bundle)
    assert len(cas_of(late)) == 1


def test_the_secret_holds_the_three_pems_and_reads_back(bundle: ServingBundle) -> None:
    """A kubernetes.io/tls Secret with ca.crt, tls.crt and tls.key (base64), labelled as the injector's; a Secret
    without a readable pair (a key missing, not base64, no data) reads as none."""
    secret = new_secret("mfa-gateway-injector-tls", bundle)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {
        "name": "mfa-gateway-injector-tls",
        "labels": {"app.kubernetes.io/managed-by": "mfa-gateway-injector"},
    }
    assert base64.b64decode(secret["data"]["tls.key"]) == bundle.key_pem
    assert bundle_of(secret) == bundle
    data = secret["data"]
    for broken in (
        {k: v for k, v in data.items() if k != "ca.crt"},
        {**data, "tls.crt": "%%%"},
        None,
        {**data, "tls.key": 1},
    ):
        assert bundle_of({"data": broken}) is None


def configuration(*webhooks: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "mfa-gateway-injector"}, "webhooks": list(webhooks)}


def webhook(name: str, ca_bundle: str | None = None) -> dict[str, Any]:
    client: dict[str, Any] = {"service": {"name": "mfa-gateway-injector", "namespace": "mfa", "path": "/mutate"}}
    if ca_bundle is not None:
        client["caBundle"] = ca_bundle
    return {"name": name, "clientConfig": client, "failurePolicy": "Fail"}


def test_the_webhook_patch_sets_each_missing_or_stale_ca_bundle_and_nothing_else(bundle: ServingBundle) -> None:
    """Each webhook without the bundle gets it (`add`, guarded by a `test` of its name at its index); one that has
    it is left alone; applied, only caBundle values change; with every webhook current the patch is empty."""
    wanted = base64.b64encode(bundle.ca_pem).decode("ascii")
    before = configuration(webhook("a"), webhook("b", wanted), webhook("c", "b2xk"))
    patch = ca_bundle_patch(before, bundle.ca_pem)
    assert patch == [
        {"op": "test", "path": "/webhooks/0/name", "value": "a"},
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": wanted},
        {"op": "test", "path": "/webhooks/2/name", "value": "c"},
        {"op": "add", "path": "/webhooks/2/clientConfig/caBundle", "value": wanted},
    ]
    after = jsonpatch.apply_patch(before, patch)
    assert after == configuration(webhook("a", wanted), webhook("b", wanted), webhook("c", wanted))
    assert ca_bundle_patch(after, bundle.ca_pem) == []


def test_a_reordered_configuration_fails_the_patch_rather_than_patching_another_webhook(bundle: ServingBundle) -> None:
    """Computed on one order of the webhooks and applied to another (someone edited it meanwhile): the `test`
    fails, so the API server refuses the patch and the next round computes it again."""
    patch = ca_bundle_patch(configuration(webhook("a"), webhook("b")), bundle.ca_pem)
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(configuration(webhook("b"), webhook("a")), patch)


@pytest.mark.parametrize("broken", [{}, {"webhooks": []}, {"webhooks": "x"}, {"webhooks": ["x"]}])
def test_a_configuration_without_webhooks_is_an_error(bundle: ServingBundle, broken: dict[str, Any]) -> None:
    """Nothing to patch is a configuration the injector cannot have been meant for: an error, not a silent skip."""
    with pytest.raises(ValueError, match="it has no webhooks"):
        ca_bundle_patch(broken, bundle.ca_pem)
