"""The injector's composition root: ``mfa-gateway injector`` builds what it serves here, and nowhere else.

A second root beside ``runtime/build.py`` (the gateway's) because the injector shares nothing with the gateway's
runtime (no store, state or secrets): it is the injection settings, the serving certificate and the keeper that
keeps the certificate current. In file mode that keeper watches ``tls.cert_file``/``key_file``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfa_gateway.config import ConfigError
from mfa_gateway.k8s.injection import InjectorSettings
from mfa_gateway.k8s.injector_config import InjectorConfig
from mfa_gateway.runtime.tls import CERT_POLL_INTERVAL, CertificateFiles, ServingCertificate

Keeper = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""Keeps the serving certificate current until the event is set."""


@dataclass(frozen=True)
class InjectorRuntime:
    config: InjectorConfig
    injection: InjectorSettings
    certificate: ServingCertificate
    keeper: Keeper


def build_injector(config: InjectorConfig, *, poll_interval: float = CERT_POLL_INTERVAL) -> InjectorRuntime:
    """The injector for ``config``; in file mode its certificate is loaded (or a warning logged) before it returns."""
    certificate = ServingCertificate()
    tls = config.tls
    if tls.cert_file is None or tls.key_file is None:
        raise ConfigError(["tls.generate: not available yet; give tls.cert_file and tls.key_file"])
    files = CertificateFiles(Path(tls.cert_file), Path(tls.key_file), certificate, poll_interval)
    files.check()
    return InjectorRuntime(config, config.injection(), certificate, files.run)
