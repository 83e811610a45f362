"""``tls.generate``: the injector keeps its own CA and serving certificate in a Secret, and the CA in its webhooks.

Every replica runs the same round (:meth:`GeneratedCertificate.converge`), at start and then every
``RECHECK_INTERVAL`` seconds, so that replicas converge on one certificate, also after a rotation by another:

1. read the Secret. None: issue a CA and certificate and create it; if another replica created it first (409), read
   and use its copy. One that cannot be read, was made for other names, or is within 30 days of expiry
   (:func:`mfa_gateway.k8s.certificates.renewal_due`): issue a new pair (the bundle keeping the previous CA while it
   is valid) and replace the Secret with the ``resourceVersion`` it was read at; if another replica replaced it first
   (409), read again and use its copy;
2. serve the Secret's certificate to new connections, if it is not the one served already;
3. patch the Secret's CA bundle into every webhook of the MutatingWebhookConfiguration that does not carry it yet
   (also repairing it after, say, a ``helm upgrade`` rendered an empty one).

A round that fails (the API unreachable or refusing, the webhook configuration missing) logs a warning and is tried
again after ``RETRY_INTERVAL`` seconds; the certificate served, if any, stays. Time is injected (``clock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

from mfa_gateway.k8s.certificates import (
    ServingBundle,
    bundle_of,
    ca_bundle_patch,
    issue,
    new_secret,
    renewal_due,
    secret_data,
)
from mfa_gateway.k8s.injector_config import Generate
from mfa_gateway.ports import KubernetesApi, KubernetesConflict, KubernetesError
from mfa_gateway.runtime.tls import ServingCertificate

log = logging.getLogger("mfa_gateway.injector")

RECHECK_INTERVAL = 60.0
"""Seconds between two rounds: how long a replica may serve a certificate another replica has replaced."""
RETRY_INTERVAL = 5.0
"""Seconds before a failed round is tried again."""
RACE_ROUNDS = 3
"""Reads of the Secret one round makes while other replicas keep writing it first, before it gives up until later."""


class GeneratedCertificate:
    """Keeps ``certificate`` serving the Secret's pair, and the webhooks trusting its CA."""

    def __init__(
        self,
        api: KubernetesApi,
        generate: Generate,
        certificate: ServingCertificate,
        clock: Callable[[], float],
        *,
        interval: float = RECHECK_INTERVAL,
        retry: float = RETRY_INTERVAL,
    ) -> None:
        self.api, self.generate, self.certificate, self.clock = api, generate, certificate, clock
        self.interval, self.retry = interval, retry
        self._served: bytes | None = None

    async def converge(self) -> ServingBundle:
        """One round: the Secret read (created or renewed if need be), served and patched into the webhooks."""
        bundle, secret = await self._secret(), self.generate.secret
        if bundle.cert_pem != self._served:
            try:
                not_after = self.certificate.load_pem(bundle.cert_pem, bundle.key_pem)
            except (ssl.SSLError, ValueError) as exc:  # renewal_due checked it: only a bug or a broken OpenSSL
                raise KubernetesError(f"the certificate of Secret {secret} does not load: {exc}") from None
            self._served = bundle.cert_pem
            log.info("serving the certificate of Secret %s, valid until %s", secret, not_after.isoformat())
        await self._patch_webhooks(bundle.ca_pem)
        return bundle

    async def run(self, stop: asyncio.Event) -> None:
        """A round now and every ``interval`` seconds (``retry`` after a failed one) until ``stop`` is set."""
        try:
            while not stop.is_set():
                try:
                    await self.converge()
                    wait = self.interval
                except KubernetesError as exc:
                    log.warning("tls.generate: %s; trying again in %.0f s", exc.message, self.retry)
                    wait = self.retry
                except Exception:  # a keeper that died would never renew again: log it and go on
                    log.exception("tls.generate: unexpected error; trying again in %.0f s", self.retry)
                    wait = self.retry
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
        finally:
            await self.api.close()

    async def _secret(self) -> ServingBundle:
        name, service, namespace = self.generate.secret, self.generate.service, self.api.namespace
        for _ in range(RACE_ROUNDS):
            found = await self.api.read_secret(name)
            now = self.clock()
            if found is None:
                bundle = issue(service, namespace, now)
                try:
                    await self.api.create_secret(new_secret(name, bundle))
                except KubernetesConflict:
                    log.info("Secret %s was created by another replica first: using its certificate", name)
                    continue
                log.info("created Secret %s with a new CA and serving certificate", name)
                return bundle
            current = bundle_of(found)
            if current is None:
                why = "it holds no readable ca.crt, tls.crt and tls.key"
            else:
                why = renewal_due(current, service, namespace, now) or ""
                if not why:
                    return current
            bundle = issue(service, namespace, now, previous=current)
            try:
                await self.api.replace_secret({**found, "data": secret_data(bundle)})
            except KubernetesConflict:
                log.info("Secret %s was renewed by another replica first: using its certificate", name)
                continue
            log.info("renewed the certificate in Secret %s: %s", name, why)
            return bundle
        raise KubernetesError(f"Secret {name} kept changing while it was read {RACE_ROUNDS} times")

    async def _patch_webhooks(self, ca_pem: bytes) -> None:
        name = self.generate.webhook
        configuration = await self.api.read_webhook_configuration(name)
        if configuration is None:
            raise KubernetesError(
                f"the MutatingWebhookConfiguration {name} does not exist (yet): tls.generate.webhook names it"
            )
        try:
            patch = ca_bundle_patch(configuration, ca_pem)
        except ValueError as exc:
            raise KubernetesError(f"the MutatingWebhookConfiguration {name}: {exc}") from None
        if patch:
            await self.api.patch_webhook_configuration(name, patch)
            log.info("patched the CA bundle into %d webhook(s) of %s", len(patch) // 2, name)
