"""The grammar of secret references: *where* a secret lives, never the secret itself. Pure: no I/O.

::

    vault:<mount>/<path>[?version=N]#<field>          one field of a KV v2 secret (Vault or OpenBao)
    awssm:<name|ARN>[?stage=LABEL|?version_id=ID][#field]
                                                      AWS Secrets Manager; no field: the whole SecretString
    file:<path>[#field]                               a file; no field: the whole file, stripped
    transit:<mount>/<key>                             a Transit encryption key: not a value, its own type

A config value that holds a secret is a reference (the normal case), or, in demo mode only, a literal or
``env:NAME``: ``parse`` tells the kinds apart (config decides whether a literal is allowed). ``transit:`` names an
encryption key, not a value: ``parse`` refuses it where a value is expected and ``parse_transit`` reads it.

A config value is parsed once, when the config is loaded (``mfa_gateway.config.references``, which also reports a
bad reference by its key), into frozen values (``SecretRef``, ``TransitKeyRef``) kept on the settings
(``Settings.secret_values``) that everything downstream passes around: the cache keys its entries by them, the
providers and the Transit cipher read them.

This module is the one part of ``mfa_gateway.secrets`` that the secret provider port and its adapters may import
(they speak in ``SecretRef``), so it obeys the core's rule: standard library and ``mfa_gateway.core`` only, no I/O
(``tests/unit/test_architecture.py`` checks it). It lives here rather than in core because no domain code uses it: it is
the secrets room's vocabulary, and keeping it beside the cache and sources makes one place to read.

A Vault location names the mount and the path inside it without saying where one ends: ``mount``/``path`` split at
the first slash (``secret`` in ``vault:secret/mfa/keyring#value``), and the Vault adapter asks the server where a
mount whose own path has slashes ends. An AWS secret name never contains ``?`` or ``#`` (its alphabet is letters,
digits and ``/_+=.@-``), and an ARN's colons are part of the name, so both split cleanly on ``?`` and ``#``.
Errors name the reference and the fix; a reference is a location, not a value, so it is safe to repeat.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from mfa_gateway.core.secret import Secret

VALUE_SCHEMES = ("file", "vault", "awssm")
AWS_STAGES = ("AWSCURRENT", "AWSPREVIOUS", "AWSPENDING")

_FIELD = re.compile(r"[A-Za-z0-9_.-]+")
_VAULT_SEGMENT = re.compile(r"[A-Za-z0-9_.@+=-]+")
_AWS_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_AWS_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}")
_AWS_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_AWS_VERSION_ID = re.compile(r"[A-Za-z0-9-]{32,64}")
_ENV = re.compile(r"env:(?P<name>[^#]+)(?:#[A-Za-z0-9_.-]+)?")


class SecretRefError(ValueError):
    """An invalid reference or a secret that could not be read. Messages never include a secret value."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A secret value's location. ``str()`` gives the canonical reference, which parses back to an equal ref."""

    scheme: str
    location: str
    field: str | None = None
    version: int | None = None
    """vault: a KV v2 version pinned with ``?version=N`` (None: the newest)."""
    stage: str | None = None
    """awssm: a staging label pinned with ``?stage=`` (None: AWSCURRENT, and AWSPREVIOUS is kept as well)."""
    version_id: str | None = None
    """awssm: a version pinned with ``?version_id=``."""

    @property
    def mount(self) -> str:
        """vault: the mount if it is the first segment of the location (the adapter asks the server)."""
        return self.location.split("/", 1)[0]

    @property
    def path(self) -> str:
        """vault: the rest of the location, the path inside a mount that is its first segment."""
        return self.location.split("/", 1)[1] if "/" in self.location else ""

    @property
    def pinned(self) -> bool:
        """Whether the reference names one fixed version or label rather than "the current value"."""
        return self.version is not None or self.stage is not None or self.version_id is not None

    def __str__(self) -> str:
        query = ""
        if self.version is not None:
            query = f"?version={self.version}"
        elif self.stage is not None:
            query = f"?stage={self.stage}"
        elif self.version_id is not None:
            query = f"?version_id={self.version_id}"
        suffix = f"#{self.field}" if self.field else ""
        return f"{self.scheme}:{self.location}{query}{suffix}"


@dataclass(frozen=True, slots=True)
class TransitKeyRef:
    """A named key in a Transit secrets engine: it encrypts and decrypts, it is never read."""

    mount: str
    key: str

    def __str__(self) -> str:
        return f"transit:{self.mount}/{self.key}"


def parse_ref(text: str) -> SecretRef:
    """A ``vault:``, ``awssm:`` or ``file:`` reference, or ``SecretRefError`` naming what to fix."""
    scheme, _, rest = text.partition(":")
    if scheme not in VALUE_SCHEMES:
        raise SecretRefError(f"{text!r} is not a secret reference: start it with one of {', '.join(VALUE_SCHEMES)}:")
    body, hash_sign, field = rest.partition("#")
    if hash_sign and not _FIELD.fullmatch(field):
        raise SecretRefError(f"{text}: the field after # must be letters, digits, '_', '.' or '-'")
    if scheme == "file":
        if not body:
            raise SecretRefError(f"{text}: give a path, e.g. file:/run/secrets/keyring.json")
        return SecretRef("file", body, field or None)
    location, question, query = body.partition("?")
    options = _query(text, query) if question else {}
    if scheme == "vault":
        return _vault(text, location, field or None, options)
    return _awssm(text, location, field or None, options)


def parse_transit(text: str) -> TransitKeyRef:
    """A ``transit:<mount>/<key>`` reference, or ``SecretRefError`` naming what to fix."""
    scheme, _, rest = text.partition(":")
    mount, slash, key = rest.partition("/")
    if (
        scheme != "transit"
        or not slash
        or not _VAULT_SEGMENT.fullmatch(mount)
        or not _VAULT_SEGMENT.fullmatch(key)
        or "." in (mount, key)
        or ".." in (mount, key)
    ):
        raise SecretRefError(f"{text}: a Transit key reference is transit:<mount>/<key>, e.g. transit:transit/mfa-totp")
    return TransitKeyRef(mount, key)


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


def select_field(document: str, field: str | None, ref: object) -> str:
    """The whole document (stripped) or one field of it read as a JSON object; non-string fields as JSON."""
    if field is None:
        return document.strip()
    try:
        data = json.loads(document)
    except ValueError:
        raise SecretRefError(f"{ref}: the secret is not a JSON object, so it has no field {field!r}") from None
    if not isinstance(data, dict):
        raise SecretRefError(f"{ref}: the secret is not a JSON object, so it has no field {field!r}")
    return field_value(data, field, ref)


def field_value(data: Mapping[str, object], field: str, ref: object) -> str:
    """One field of a decoded secret; non-string values (a keyring object, say) as compact JSON text."""
    if field not in data:
        names = ", ".join(sorted(data)) or "none"
        raise SecretRefError(f"{ref}: the secret has no field {field!r} (its fields: {names})")
    value = data[field]
    return value if isinstance(value, str) else json.dumps(value)


def _query(text: str, query: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if not equals or not name or not value:
            raise SecretRefError(f"{text}: write options as ?name=value, e.g. ?version=3 or ?stage=AWSPREVIOUS")
        if name in options:
            raise SecretRefError(f"{text}: the option {name!r} is given twice")
        options[name] = value
    return options


def _vault(text: str, location: str, field: str | None, options: dict[str, str]) -> SecretRef:
    segments = location.split("/")
    if len(segments) < 2 or any(not _VAULT_SEGMENT.fullmatch(s) or s in (".", "..") for s in segments):
        raise SecretRefError(
            f"{text}: a Vault reference is vault:<mount>/<path>#<field>, e.g. vault:secret/mfa/keyring#value "
            "(path segments of letters, digits and _ . @ + = -)"
        )
    unknown = set(options) - {"version"}
    if unknown:
        raise SecretRefError(f"{text}: unknown option {sorted(unknown)[0]!r}; a Vault reference takes ?version=N")
    version = None
    if "version" in options:
        if not options["version"].isdigit() or int(options["version"]) < 1:
            raise SecretRefError(f"{text}: version must be a KV v2 version number (1, 2, …)")
        version = int(options["version"])
    if field is None:
        raise SecretRefError(
            f"{text}: a Vault reference needs #<field> naming the key inside the secret, e.g. {text}#value"
        )
    return SecretRef("vault", location, field, version=version)


def _awssm(text: str, location: str, field: str | None, options: dict[str, str]) -> SecretRef:
    if location.startswith("arn:"):
        if not _AWS_ARN.fullmatch(location):
            raise SecretRefError(
                f"{text}: the ARN must look like arn:aws:secretsmanager:<region>:<account>:secret:<name>"
            )
    elif not _AWS_NAME.fullmatch(location):
        raise SecretRefError(
            f"{text}: give the secret's name or ARN, e.g. awssm:mfa/keyring (letters, digits and / _ + = . @ -)"
        )
    unknown = set(options) - {"stage", "version_id"}
    if unknown:
        raise SecretRefError(
            f"{text}: unknown option {sorted(unknown)[0]!r}; an AWS reference takes ?stage=LABEL or ?version_id=ID"
        )
    if len(options) > 1:
        raise SecretRefError(f"{text}: give ?stage= or ?version_id=, not both (they would have to name one version)")
    stage, version_id = options.get("stage"), options.get("version_id")
    if stage is not None and not _AWS_LABEL.fullmatch(stage):
        raise SecretRefError(f"{text}: stage must be a staging label such as {', '.join(AWS_STAGES)}")
    if version_id is not None and not _AWS_VERSION_ID.fullmatch(version_id):
        raise SecretRefError(f"{text}: version_id must be a Secrets Manager version id (a UUID)")
    return SecretRef("awssm", location, field, stage=stage, version_id=version_id)
