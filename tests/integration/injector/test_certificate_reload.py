"""The webhook's certificate files, reloaded while it serves: new connections get the new certificate, a pair that
does not load keeps the previous one.

The files are rewritten as a mounted Secret or cert-manager would; the test then calls the keeper's ``check()``
rather than waiting for its poll (its interval is an hour), except in the one test that lets the keeper notice on its
own with a short interval. Each check over TLS is a new connection from a client that trusts one CA only.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from mfa_gateway.runtime.tls import CertificateFiles, ServingCertificate
from tests.helpers.certificates import ServingPair, TestCA
from tests.helpers.support import eventually
from tests.integration.injector.conftest import Webhook, review_bytes, verifies


def replace_atomically(path: Path, data: bytes) -> None:
    """As a mounted Secret changes: the new content appears whole, under a new inode."""
    fresh = path.with_suffix(path.suffix + ".new")
    fresh.write_bytes(data)
    fresh.replace(path)


def install(webhook: Webhook, pair: ServingPair) -> None:
    replace_atomically(webhook.cert_file, pair.cert_pem)
    replace_atomically(webhook.key_file, pair.key_pem)


async def test_a_certificate_from_a_new_ca_is_served_to_new_connections(webhook: Webhook) -> None:
    """After the files change to a certificate from another CA, a new connection verifies with the new CA only,
    and reviews are answered over it; the old CA no longer verifies."""
    second = TestCA("second CA")
    install(webhook, second.serving())
    assert webhook.files.check()
    assert await verifies(webhook.port, second.pem)
    assert not await verifies(webhook.port, webhook.ca.pem)
    answer = await webhook.review(review_bytes("plain-pod"), trusting=second.pem)
    assert answer.status == 200 and answer.body["response"]["allowed"] is True


def _encrypted_key(pair: ServingPair) -> bytes:
    key = serialization.load_pem_private_key(pair.key_pem, None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"a passphrase"),
    )


@pytest.mark.parametrize("broken", ["new-cert-old-key", "half-written-cert", "garbage-key", "no-key", "encrypted-key"])
async def test_a_pair_that_does_not_load_keeps_the_previous_certificate(
    webhook: Webhook, broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A certificate whose key is not written yet (or does not match), a half-written certificate, a key that is
    not PEM, a missing key or an encrypted key: the check fails, a warning names the files and says the previous
    certificate is kept, the first CA still verifies, and readiness stays 200. Once the pair is whole, it loads."""
    second = TestCA("second CA")
    pair = second.serving()
    if broken == "new-cert-old-key":
        replace_atomically(webhook.cert_file, pair.cert_pem)
    elif broken == "half-written-cert":
        replace_atomically(webhook.cert_file, pair.cert_pem[: len(pair.cert_pem) // 2])
        replace_atomically(webhook.key_file, pair.key_pem)
    elif broken == "garbage-key":
        replace_atomically(webhook.cert_file, pair.cert_pem)
        replace_atomically(webhook.key_file, b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    elif broken == "no-key":
        webhook.key_file.unlink()
    else:
        replace_atomically(webhook.cert_file, pair.cert_pem)
        replace_atomically(webhook.key_file, _encrypted_key(pair))
    with caplog.at_level(logging.WARNING, logger="mfa_gateway"):
        assert not webhook.files.check()
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(webhook.cert_file) in warning.getMessage()
    assert warning.getMessage().endswith("keeping the previous certificate")
    assert await verifies(webhook.port, webhook.ca.pem)
    assert not await verifies(webhook.port, second.pem)
    assert (await webhook.request("GET", "/readyz")).status == 200
    install(webhook, pair)
    assert webhook.files.check()
    assert await verifies(webhook.port, second.pem)


async def test_a_failed_pair_is_warned_about_once_and_an_unchanged_pair_is_not_reloaded(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    """Files that did not change are not read again: an unchanged pair is not reloaded, and a broken pair that
    stays broken gives one warning, not one per poll."""
    assert not webhook.files.check()
    replace_atomically(webhook.cert_file, TestCA("second CA").serving().cert_pem)
    with caplog.at_level(logging.WARNING, logger="mfa_gateway"):
        for _ in range(3):
            assert not webhook.files.check()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


async def test_without_a_pair_at_start_it_is_not_ready_until_the_files_appear(tmp_path: Path) -> None:
    """Files missing at start (cert-manager has not issued yet): nothing is served and the check says so; once the
    files appear, the next check serves them."""
    certificate = ServingCertificate()
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    files = CertificateFiles(cert_file, key_file, certificate, 3600)
    assert not files.check()
    assert not certificate.loaded
    ca = TestCA()
    ca.serving().write(tmp_path)
    assert files.check()
    assert certificate.loaded


async def test_the_keeper_notices_new_files_by_itself(webhook: Webhook) -> None:
    """Run as the server runs it (a task looking every ``interval`` seconds, here 20 ms), the keeper picks up a
    rotated pair without being asked, and stops when told."""
    keeper = CertificateFiles(webhook.cert_file, webhook.key_file, webhook.certificate, 0.02)
    assert keeper.check() is True  # its own first look; the served pair stays the same
    stop = asyncio.Event()
    task = asyncio.create_task(keeper.run(stop))
    second = TestCA("second CA")
    install(webhook, second.serving())
    await eventually(lambda: verifies(webhook.port, second.pem), "the rotated certificate served", within=10)
    stop.set()
    await asyncio.wait_for(task, 5)
