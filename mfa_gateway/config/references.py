"""Where the config meets the secret-reference grammar: which keys hold references, and the checks and path
resolution the config applies to them. The only module of the package that imports the grammar.

Each secret value is parsed once, when the config is loaded (``parse_settings``): ``parse_values`` checks it and
resolves a relative ``file:`` path, and the result, ``SecretValues``, stays on the settings
(``Settings.secret_values``) for the runtime to build its secret sources from without parsing again."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from mfa_gateway.config.messages import ConfigError
from mfa_gateway.core.secret import Secret
from mfa_gateway.secrets import refs as secret_refs
from mfa_gateway.secrets.refs import VALUE_SCHEMES, ParsedValue, SecretRef, TransitKeyRef

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


class Parsing:
    """The validation context ``parse_settings`` hands pydantic: the field validator of ``secrets.totp_cipher``
    parses the Transit key and leaves it here, so that loading does not parse it a second time."""

    def __init__(self) -> None:
        self.transit: TransitKeyRef | None = None


def check_transit(value: str, context: object = None) -> str:
    """``secrets.totp_cipher``: ``transit:<mount>/<key>``, read by the one grammar start-up uses (kept in
    ``context`` if it is a ``Parsing``)."""
    try:
        key = secret_refs.parse_transit(value)
    except secret_refs.SecretRefError as exc:
        raise ValueError(str(exc)) from None
    if isinstance(context, Parsing):
        context.transit = key
    return value


def secret_value(settings: Settings, dotted: str) -> str | None:
    """The config value of a secret key (``section.name`` from ``SECRET_KEYS``): a reference, or a demo literal."""
    section, name = dotted.split(".")
    value = getattr(getattr(settings, section), name)
    return value if value is None else str(value)


def secret_texts(settings: Settings) -> tuple[str | None, ...]:
    """The strings the secret values are parsed from: each of ``SECRET_KEYS``, then ``secrets.totp_cipher``."""
    return (*(secret_value(settings, key) for key in SECRET_KEYS), settings.secrets.totp_cipher)


@dataclass(frozen=True, slots=True)
class SecretValues:
    """The config's secret values, each parsed once (``parse_secret_values``), ``file:`` paths resolved: what the
    runtime's secret sources are built from (``Settings.secret_values``). Nothing in it is read yet."""

    refs: Mapping[str, SecretRef]
    """Config key -> reference."""
    fixed: Mapping[str, ParsedValue]
    """Config key -> a demo-mode literal or ``env:NAME`` as written (``fixed_secret`` reads the environment)."""
    transit: TransitKeyRef | None
    """``secrets.totp_cipher``: the Transit key that encrypts TOTP secrets, if any."""
    texts: tuple[str | None, ...] = field(repr=False)
    """``secret_texts`` of the settings holding these values: a copy whose strings differ is parsed anew."""

    def __reduce__(self) -> tuple[Callable[..., SecretValues], tuple[object, ...]]:
        # serve --workers hands the settings to each worker pickled: a mappingproxy cannot be, its contents can.
        return _frozen_values, (dict(self.refs), dict(self.fixed), self.transit, self.texts)


def _frozen_values(
    refs: dict[str, SecretRef],
    fixed: dict[str, ParsedValue],
    transit: TransitKeyRef | None,
    texts: tuple[str | None, ...],
) -> SecretValues:
    return SecretValues(MappingProxyType(refs), MappingProxyType(fixed), transit, texts)


def parse_secret_values(
    settings: Settings, *, base_dir: Path | None = None, transit: TransitKeyRef | None = None
) -> SecretValues:
    """The secret values of validated settings, each parsed once: relative ``file:`` paths resolved against
    ``base_dir`` (None: left as written), and ``transit``, if given, taken as ``secrets.totp_cipher`` already parsed
    by its field validator. ``ConfigError`` lists the values that are no reference or a literal outside demo."""
    pairs = [(key, value) for key in SECRET_KEYS if (value := secret_value(settings, key)) is not None]
    parsed, problems = parse_values(pairs, demo=settings.demo, base_dir=base_dir)
    if problems:
        raise ConfigError(problems)
    cipher = settings.secrets.totp_cipher
    if transit is None and cipher is not None:
        transit = secret_refs.parse_transit(cipher)  # settings not made by parse_settings: validated, not kept
    refs = {key: value.ref for key, value in parsed.items() if value.ref is not None}
    fixed = {key: value for key, value in parsed.items() if value.ref is None}
    return _frozen_values(refs, fixed, transit, secret_texts(settings))


def parse_values(
    values: Iterable[tuple[str, str]], *, demo: bool | None, base_dir: Path | None = None
) -> tuple[dict[str, ParsedValue], list[str]]:
    """The one place a secret value is parsed: each ``(key, value)`` parsed, a relative ``file:`` path resolved
    against ``base_dir``, and one problem line per value that is no reference, or a literal / ``env:`` outside mode:
    demo (``demo`` None: the mode itself is invalid, so that rule is left to the mode's own error)."""
    parsed: dict[str, ParsedValue] = {}
    problems = []
    for key, value in values:
        try:
            one = secret_refs.parse(value)
        except secret_refs.SecretRefError as exc:
            problems.append(f"{key}: {exc}")
            continue
        if one.ref is not None and base_dir is not None:
            one = replace(one, ref=secret_refs.resolve_file_paths(one.ref, base_dir))
        parsed[key] = one
        if one.ref is not None or demo is None:
            continue
        kind = f"the environment variable {one.env_name}" if one.env_name else "a literal value"
        if demo:
            log.warning("%s: %s is accepted only because mode is demo", key, kind)
        else:
            problems.append(
                f"{key}: {kind} is refused outside mode: demo; give a reference such as "
                f"file:/run/secrets/{key.split('.')[-1]}"
            )
    return parsed, problems


def fixed_secret(parsed: ParsedValue, environ: Mapping[str, str] = os.environ) -> Secret[str]:
    """A secret written into the config rather than referenced (mode: demo only, checked at load): the literal, or
    ``env:NAME`` read now. References are read by the secret cache, never here."""
    if parsed.env_name is not None:
        if parsed.env_name not in environ:
            raise secret_refs.SecretRefError(f"env:{parsed.env_name} is not set")
        return Secret(environ[parsed.env_name])
    assert parsed.literal is not None
    return parsed.literal
