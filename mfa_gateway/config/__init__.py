"""The gateway's configuration: one YAML file, validated once into frozen settings.

* ``schema``: the sections and ``Settings``; each field's description is the configuration reference.
* ``urls``: database, Redis and Vault URL checks (no passwords), Sentinel addresses, loopback, CIDRs.
* ``references``: the keys that hold secret references, their checks, and their values parsed once
  (``SecretValues``, kept as ``Settings.secret_values``).
* ``checks``: rules across keys.
* ``loading``: YAML to ``Settings``, relative paths, every problem at once.
* ``messages``: problems in the product's words, moved keys.

Errors name the key and the fix; the CLI exits with code 2 on any of them.
"""

from mfa_gateway.config.loading import load_settings, parse_settings
from mfa_gateway.config.messages import MOVED_KEYS, ConfigError
from mfa_gateway.config.references import SECRET_KEYS, SecretValues, fixed_secret, secret_value
from mfa_gateway.config.schema import (
    Admin,
    Audit,
    Aws,
    BackupCodes,
    Enrollment,
    ForwardAuth,
    Hashing,
    Identity,
    IdentityHeaders,
    IpLimit,
    Limit,
    Limits,
    Listen,
    PolicyConfig,
    PolicyRule,
    Redirects,
    SecretCacheSettings,
    Secrets,
    Session,
    Settings,
    State,
    Store,
    Totp,
    Upstream,
    UpstreamLogin,
    Vault,
    VaultAppRole,
    VaultKubernetes,
    json_schema,
)
from mfa_gateway.config.urls import SentinelAddress

__all__ = [
    "MOVED_KEYS",
    "SECRET_KEYS",
    "Admin",
    "Audit",
    "Aws",
    "BackupCodes",
    "ConfigError",
    "Enrollment",
    "ForwardAuth",
    "Hashing",
    "Identity",
    "IdentityHeaders",
    "IpLimit",
    "Limit",
    "Limits",
    "Listen",
    "PolicyConfig",
    "PolicyRule",
    "Redirects",
    "SecretCacheSettings",
    "SecretValues",
    "Secrets",
    "SentinelAddress",
    "Session",
    "Settings",
    "State",
    "Store",
    "Totp",
    "Upstream",
    "UpstreamLogin",
    "Vault",
    "VaultAppRole",
    "VaultKubernetes",
    "fixed_secret",
    "json_schema",
    "load_settings",
    "parse_settings",
    "secret_value",
]
