"""Where the config meets the secret-reference grammar: which keys hold references, and the checks and path
resolution the config applies to them. The only module of the package that imports the grammar."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mfa_gateway.core.secret import Secret
from mfa_gateway.secrets import refs as secret_refs
from mfa_gateway.secrets.refs import VALUE_SCHEMES

if TYPE_CHECKING:
    from mfa_gateway.config.schema import Settings

log = logging.getLogger("mfa_gateway.config")

SECRET_KEYS = (
    "secrets.keyring",
    "secrets.signing_keys",
    "secrets.session_keyring",
    "store.password",
    "state.password",
    "state.sentinel_password",
    "admin.token",
)

# What a secret reference looks like, for the JSON Schema (which describes a production file: a literal or
# env:NAME, accepted in mode: demo only, does not match).
REFERENCE_PATTERN = rf"^({'|'.join(VALUE_SCHEMES)}):.+"


def check_transit(value: str) -> str:
    """``secrets.totp_cipher``: ``transit:<mount>/<key>``, read by the one grammar start-up uses."""
    try:
        secret_refs.parse_transit(value)
    except secret_refs.SecretRefError as exc:
        raise ValueError(str(exc)) from None
    return value


def secret_value(settings: Settings, dotted: str) -> str | None:
    """The config value of a secret key (``section.name`` from ``SECRET_KEYS``): a reference, or a demo literal."""
    section, name = dotted.split(".")
    value = getattr(getattr(settings, section), name)
    return value if value is None else str(value)


def absolute_ref(value: str, base_dir: Path) -> str:
    """A ``file:`` reference relative to the config file's folder made absolute; other values unchanged."""
    try:
        parsed = secret_refs.parse(value)
    except secret_refs.SecretRefError:
        return value  # reported with the key's name by secret_value_problems
    return str(secret_refs.resolve_file_paths(parsed.ref, base_dir)) if parsed.ref else value


def secret_value_problems(values: Iterable[tuple[str, str]], *, demo: bool | None) -> list[str]:
    """One line per ``(key, value)`` that is no reference, or a literal / ``env:`` outside mode: demo (``demo``
    None: the mode itself is invalid, so that rule is left to the mode's own error)."""
    problems = []
    for key, value in values:
        try:
            parsed = secret_refs.parse(value)
        except secret_refs.SecretRefError as exc:
            problems.append(f"{key}: {exc}")
            continue
        if parsed.ref is not None or demo is None:
            continue
        kind = f"the environment variable {parsed.env_name}" if parsed.env_name else "a literal value"
        if demo:
            log.warning("%s: %s is accepted only because mode is demo", key, kind)
        else:
            problems.append(
                f"{key}: {kind} is refused outside mode: demo; give a reference such as "
                f"file:/run/secrets/{key.split('.')[-1]}"
            )
    return problems


def fixed_secret(parsed: secret_refs.ParsedValue, environ: Mapping[str, str] = os.environ) -> Secret[str]:
    """A secret written into the config rather than referenced (mode: demo only, checked at load): the literal, or
    ``env:NAME`` read now. References are read by the secret cache, never here."""
    if parsed.env_name is not None:
        if parsed.env_name not in environ:
            raise secret_refs.SecretRefError(f"env:{parsed.env_name} is not set")
        return Secret(environ[parsed.env_name])
    assert parsed.literal is not None
    return parsed.literal
