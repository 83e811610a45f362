"""Reading a config file: YAML to validated, frozen ``Settings``, with relative paths made absolute and every
problem of the file reported at once (``ConfigError``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, cast

import yaml
from pydantic import TypeAdapter, ValidationError

from mfa_gateway.config.checks import Unchecked, cross_problems
from mfa_gateway.config.messages import EXAMPLE, ConfigError, describe_all
from mfa_gateway.config.references import SECRET_KEYS, Parsing, parse_secret_values, parse_values, secret_value
from mfa_gateway.config.schema import Settings


def load_settings(path: Path, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read and validate a config file (top-level keys in ``overrides`` win, e.g. from command-line flags).

    Raises ``ConfigError`` with one line per problem.
    """
    return parse_settings({**read_mapping(path), **(overrides or {})}, base_dir=path.resolve().parent)


def read_mapping(path: Path, example: str = EXAMPLE) -> dict[str, Any]:
    """The YAML mapping a config file holds (empty for an empty file), or ``ConfigError`` naming the file and the
    fix: unreadable, not YAML, or not a mapping (``example`` shows what it should hold)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror}; pass an existing file with --config"]) from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError([f"{path} is not valid YAML{line}; fix the syntax"]) from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path} must hold a mapping of keys (see {example})"])
    return raw


def parse_settings(raw: Mapping[str, Any], *, base_dir: Path) -> Settings:
    """Validate a config document; ``base_dir`` is the folder relative paths resolve against. Each secret value is
    parsed once, here, and kept on the settings (``Settings.secret_values``)."""
    parsing = Parsing()
    try:
        settings = Settings.model_validate(raw, context=parsing)
    except ValidationError as exc:
        problems = describe_all(exc.errors(), Settings)
        partial = _Partial(raw)
        problems += [p for p in cross_problems(cast(Settings, partial)) if p not in problems]
        problems += _secret_problems(partial)
        raise ConfigError(problems) from None
    settings = _resolve_paths(settings, base_dir)
    return settings.with_secret_values(parse_secret_values(settings, base_dir=base_dir, transit=parsing.transit))


class _Partial:
    """The sections of an invalid file that are valid on their own, read like ``Settings``: reading an invalid
    section raises ``Unchecked``, so checks across keys still run on the rest and report together with the
    invalid keys."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._valid: dict[str, Any] = {}
        for name, field in Settings.model_fields.items():
            if name not in raw:
                if not field.is_required():
                    self._valid[name] = field.get_default(call_default_factory=True)
                continue
            adapter: TypeAdapter[Any] = TypeAdapter(Annotated[field.annotation, field])  # type: ignore[arg-type]
            try:
                self._valid[name] = adapter.validate_python(raw[name])
            except ValidationError:
                continue

    def __getattr__(self, name: str) -> Any:
        try:
            return self._valid[name]
        except KeyError:
            raise Unchecked(name) from None

    @property
    def demo(self) -> bool:
        return bool(self.mode == "demo")


def _secret_problems(settings: _Partial) -> list[str]:
    """The secret values' problems in a file with other invalid keys, reported with them."""
    values = []
    for key in SECRET_KEYS:
        try:
            value = secret_value(cast(Settings, settings), key)
        except Unchecked:
            continue
        if value is not None:
            values.append((key, value))
    try:
        demo: bool | None = settings.demo
    except Unchecked:
        demo = None
    return parse_values(values, demo=demo)[1]


def _resolve_paths(settings: Settings, base_dir: Path) -> Settings:
    """Relative paths in the config are relative to the config file's folder (``file:`` references are resolved
    where they are parsed, by ``parse_secret_values``)."""

    def absolute(path: Path) -> Path:
        return path if path.is_absolute() else base_dir / path

    identity = settings.identity
    if identity.users_file is not None:
        identity = identity.model_copy(update={"users_file": absolute(identity.users_file)})
    store = settings.store
    prefix = "sqlite+aiosqlite:///"
    if store.url.startswith(prefix) and not store.url.startswith(prefix + "/") and ":memory:" not in store.url:
        store = store.model_copy(update={"url": prefix + str(absolute(Path(store.url.removeprefix(prefix))))})
    audit = settings.audit
    if audit.path != "-":
        audit = audit.model_copy(update={"path": str(absolute(Path(audit.path)))})
    return settings.model_copy(update={"identity": identity, "store": store, "audit": audit})
