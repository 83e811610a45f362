"""The injector's composition root: ``mfa-gateway injector`` builds what it serves here, and nowhere else.

A second root beside ``runtime/build.py`` (the gateway's), because the injector shares nothing with the gateway's
runtime (no store, state or secrets): it is the injection settings, the serving certificate, and the keeper that keeps
that certificate current. In file mode the keeper watches ``tls.cert_file``/``key_file`` (``runtime.tls``); with
``tls.generate`` it is ``runtime.generated_tls`` over the in-cluster Kubernetes API adapter (``adapters.kube``), the
one adapter the injector uses and the reason this module may import it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfa_gateway.adapters.kube import SERVICE_ACCOUNT, InCluster, KubeApi
from mfa_gateway.config import ConfigError
from mfa_gateway.k8s.injection import InjectorSettings
from mfa_gateway.k8s.injector_config import InjectorConfig
from mfa_gateway.ports import KubernetesError
from mfa_gateway.runtime.generated_tls import RECHECK_INTERVAL, RETRY_INTERVAL, GeneratedCertificate
from mfa_gateway.runtime.tls import CERT_POLL_INTERVAL, CertificateFiles, ServingCertificate

Keeper = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""Keeps the serving certificate current until the event is set."""


@dataclass(frozen=True)
class InjectorRuntime:
    config: InjectorConfig
    injection: InjectorSettings
    certificate: ServingCertificate
    keeper: Keeper


def build_injector(
    config: InjectorConfig,
    *,
    environ: Mapping[str, str] = os.environ,
    service_account: Path = SERVICE_ACCOUNT,
    clock: Callable[[], float] = time.time,
    poll_interval: float = CERT_POLL_INTERVAL,
    recheck_interval: float = RECHECK_INTERVAL,
    retry_interval: float = RETRY_INTERVAL,
) -> InjectorRuntime:
    """The injector for ``config``. In file mode its certificate is loaded (or a warning logged) before it returns;
    with ``tls.generate`` the keeper's first round runs once the server starts. ``ConfigError`` if generate mode runs
    outside a cluster."""
    certificate = ServingCertificate()
    tls = config.tls
    keeper: Keeper
    if tls.generate is not None:
        try:
            where = InCluster.from_environment(environ, service_account)
        except KubernetesError as exc:
            raise ConfigError([exc.message]) from None
        generated = GeneratedCertificate(
            KubeApi(where), tls.generate, certificate, clock, interval=recheck_interval, retry=retry_interval
        )
        keeper = generated.run
    elif tls.cert_file is not None and tls.key_file is not None:
        files = CertificateFiles(Path(tls.cert_file), Path(tls.key_file), certificate, poll_interval)
        files.check()
        keeper = files.run
    else:  # the model allows neither
        raise ConfigError(["tls: give cert_file and key_file, or generate"])
    return InjectorRuntime(config, config.injection(), certificate, keeper)
