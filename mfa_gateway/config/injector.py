"""Reading the injector's config file: YAML to a validated, frozen ``InjectorConfig``, every problem at once.

The model is :mod:`mfa_gateway.k8s.injector_config` (pure, beside the injection it configures); reading the file and
wording the problems is the gateway's own way (``loading.read_mapping``, ``messages.describe_all``), so both files
answer a mistake alike: one line per problem naming the key and the fix, exit code 2.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from mfa_gateway.config.loading import read_mapping
from mfa_gateway.config.messages import ConfigError, describe_all
from mfa_gateway.k8s.injector_config import InjectorConfig

INJECTOR_EXAMPLE = "config/injector.yaml"


def load_injector_config(path: Path) -> InjectorConfig:
    """The injector's settings from ``path``, with relative ``tls`` file paths resolved against its folder; or
    ``ConfigError`` with one line per problem."""
    raw = read_mapping(path, INJECTOR_EXAMPLE)
    try:
        config = InjectorConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_all(exc.errors(), InjectorConfig, INJECTOR_EXAMPLE)) from None
    base = path.resolve().parent
    files = {
        key: str(base / value)
        for key, value in (("cert_file", config.tls.cert_file), ("key_file", config.tls.key_file))
        if value is not None
    }
    return config.model_copy(update={"tls": config.tls.model_copy(update=files)}) if files else config
