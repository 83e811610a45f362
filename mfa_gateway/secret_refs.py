"""Config values that hold secrets: a reference (the normal case), or a literal / ``env:NAME`` in demo mode only.

A reference is a string in the config, never the value itself (the grammar is in ``mfa_gateway.core.references``)::

    file:/run/secrets/keyring.json             the whole file (rendered by Vault Agent, the CSI driver, ESO)
    file:/run/secrets/db.json#password         one field of a JSON file
    vault:secret/mfa/keyring#value             one field of a KV v2 secret on Vault or OpenBao (?version=N pins one)
    awssm:mfa/db#password                      AWS Secrets Manager (?stage=AWSPREVIOUS or ?version_id=… pins one)

``transit:<mount>/<key>`` names an encryption key, not a value: ``parse`` refuses it where a value is expected and
``parse_transit`` reads it. A value written literally in the YAML, or taken from the environment (``env:NAME``), is
refused outside demo mode (config decides; this module only tells the kinds apart).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from mfa_gateway.core.references import (
    VALUE_SCHEMES,
    SecretRef,
    SecretRefError,
    TransitKeyRef,
    parse_ref,
    parse_transit,
)
from mfa_gateway.core.secret import Secret

__all__ = [
    "ParsedValue",
    "SecretRef",
    "SecretRefError",
    "TransitKeyRef",
    "parse",
    "parse_transit",
    "resolve_file_paths",
]

_ENV = re.compile(r"env:(?P<name>[^#]+)(?:#[A-Za-z0-9_.-]+)?")


@dataclass(frozen=True, slots=True)
class ParsedValue:
    """A config value that is either a reference, or (demo mode only) a literal or environment secret."""

    ref: SecretRef | None = None
    literal: Secret[str] | None = None
    env_name: str | None = None


def parse(value: str) -> ParsedValue:
    """Tell a reference from a literal; a malformed reference raises ``SecretRefError`` rather than pass as literal."""
    env = _ENV.fullmatch(value)
    if env:
        return ParsedValue(env_name=env["name"])
    scheme, colon, _ = value.partition(":")
    if colon and scheme in VALUE_SCHEMES:
        return ParsedValue(ref=parse_ref(value))
    if colon and scheme == "transit":
        raise SecretRefError(
            f"{value}: a transit: reference names an encryption key, not a secret value; give a vault:, awssm: "
            "or file: reference here"
        )
    return ParsedValue(literal=Secret(value))


def resolve_file_paths(ref: SecretRef, base_dir: Path) -> SecretRef:
    """A ``file:`` reference relative to the config file's folder made absolute; other references unchanged."""
    path = Path(ref.location)
    if ref.scheme == "file" and not path.is_absolute():
        return replace(ref, location=str(base_dir / path))
    return ref
