"""References to secret values, and loading the ``file:`` kind.

A reference is a string in the config, never the value itself::

    file:/run/secrets/keyring.json           the whole file (rendered by Vault Agent, the CSI driver, External Secrets)
    file:/run/secrets/db.json#password       one field of a JSON file

A value written literally in the YAML, or taken from the environment (``env:NAME``), is refused outside demo mode.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from mfa_gateway.core.secret import Secret

_REF = re.compile(r"(?P<scheme>[a-z][a-z0-9]*):(?P<body>[^#]+)(?:#(?P<field>[A-Za-z0-9_.-]+))?")
SCHEMES = ("file",)


class SecretRefError(ValueError):
    """An invalid reference or a secret that could not be read. Messages never include a secret value."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    scheme: str
    location: str
    field: str | None = None

    def __str__(self) -> str:
        suffix = f"#{self.field}" if self.field else ""
        return f"{self.scheme}:{self.location}{suffix}"


@dataclass(frozen=True, slots=True)
class ParsedValue:
    """A config value that is either a reference, or (demo mode only) a literal or environment secret."""

    ref: SecretRef | None = None
    literal: Secret[str] | None = None
    env_name: str | None = None


def parse(value: str) -> ParsedValue:
    match = _REF.fullmatch(value)
    if match and match["scheme"] == "env":
        return ParsedValue(env_name=match["body"])
    if match and match["scheme"] in SCHEMES:
        return ParsedValue(ref=SecretRef(match["scheme"], match["body"], match["field"]))
    if match and match["scheme"] in ("vault", "awssm", "transit"):
        raise SecretRefError(
            f"{match['scheme']}: references are not supported by this version; use file: (for example a file "
            "rendered by Vault Agent or the Secrets Store CSI driver)"
        )
    return ParsedValue(literal=Secret(value))


def resolve_file_paths(ref: SecretRef, base_dir: Path) -> SecretRef:
    path = Path(ref.location)
    if ref.scheme == "file" and not path.is_absolute():
        return SecretRef(ref.scheme, str(base_dir / path), ref.field)
    return ref


def load(ref: SecretRef) -> Secret[str]:
    """Read a secret now. Raises ``SecretRefError`` naming the reference, never the value."""
    try:
        text = Path(ref.location).read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretRefError(f"cannot read {ref}: {exc.strerror}") from exc
    if ref.field is None:
        return Secret(text.strip())
    try:
        value = json.loads(text)[ref.field]
    except (ValueError, KeyError, TypeError) as exc:
        raise SecretRefError(f"{ref}: the file is not a JSON object with the field {ref.field!r}") from exc
    return Secret(value if isinstance(value, str) else json.dumps(value))
