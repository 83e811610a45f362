"""A secret reference is parsed once: loading a config turns each secret value into a frozen value, path
resolved, that building the runtime's secret sources uses without parsing again."""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mfa_gateway import config
from mfa_gateway.adapters.secrets.file import FileProvider
from mfa_gateway.runtime import open_sources
from mfa_gateway.secrets import refs as secret_refs
from mfa_gateway.secrets.refs import SecretRef, TransitKeyRef
from tests.helpers.gateway import FAST_HASHING

VAULT = {"address": "https://vault.example:8200", "auth": "token_file", "token_file": "vault-token"}

# Every secret key of the config, each with a different kind of value.
SECRET_VALUES = {
    "secrets.keyring": "file:keys/keyring.json",
    "secrets.signing_keys": "vault:secret/mfa/jwt#value",
    "secrets.session_keyring": "awssm:mfa/cookies?stage=AWSCURRENT#keyring",
    "secrets.totp_cipher": "transit:transit/mfa-totp",
    "store.password": "env:DB_PASSWORD",
    "state.password": "file:/run/secrets/redis#password",
    "state.sentinel_password": "vault:secret/mfa/sentinel#password",
    "admin.token": "file:admin-token",
}


def _document() -> dict[str, Any]:
    """A demo-mode config (so that env: is allowed) with every secret key set to the value above."""
    sections: dict[str, Any] = {
        "mode": "demo",
        "identity": {"source": "builtin", "users_file": "users.yaml"},
        "store": {"url": "postgresql+asyncpg://mfa@db.example/mfa"},
        "state": {
            "backend": "redis",
            "url": "redis://cache.example:6379/0",
            "sentinels": ["10.0.0.1:26379", "10.0.0.2:26379"],
            "sentinel_master": "mfa",
        },
        "hashing": FAST_HASHING,
        "secrets": {"vault": VAULT},
        "admin": {},
    }
    for key, value in SECRET_VALUES.items():
        section, name = key.split(".")
        sections[section][name] = value
    return sections


@pytest.fixture
def parse_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Every call of the grammar's parse functions (values and Transit keys), counted by the text parsed."""
    calls: Counter[str] = Counter()

    def counted(parse: Callable[[str], Any]) -> Callable[[str], Any]:
        def wrapper(text: str) -> Any:
            calls[text] += 1
            return parse(text)

        return wrapper

    monkeypatch.setattr(secret_refs, "parse", counted(secret_refs.parse))
    monkeypatch.setattr(secret_refs, "parse_transit", counted(secret_refs.parse_transit))
    yield calls


def test_loading_a_config_and_opening_its_sources_parses_each_secret_value_once(
    tmp_path: Path, parse_calls: Counter[str]
) -> None:
    """parse_settings then open_sources (what serve and the CLI tools do) parse every secret value, file:, vault:,
    awssm:, env: and transit: alike, exactly once; the sources hold the parsed references, a relative file: path
    resolved against the config file's folder."""
    settings = config.parse_settings(_document(), base_dir=tmp_path)
    # Nothing is read here: one provider object stands for every backend the cache needs to register references.
    providers = dict.fromkeys(("file", "vault", "awssm"), FileProvider())
    sources = open_sources(settings, environ={"DB_PASSWORD": "hunter2"}, providers=providers)
    sources.close()

    assert dict(parse_calls) == dict.fromkeys(SECRET_VALUES.values(), 1)
    assert sources.refs["secrets.keyring"] == SecretRef("file", str(tmp_path / "keys/keyring.json"))
    assert sources.refs["admin.token"] == SecretRef("file", str(tmp_path / "admin-token"))
    assert sources.refs["state.password"] == SecretRef("file", "/run/secrets/redis", "password")
    assert sources.refs["secrets.signing_keys"] == SecretRef("vault", "secret/mfa/jwt", "value")
    assert sources.fixed["store.password"].reveal() == "hunter2"
    assert sources.transit == TransitKeyRef("transit", "mfa-totp")


def test_settings_validated_without_parse_settings_parse_their_secret_values_on_first_access(
    parse_calls: Counter[str],
) -> None:
    """Settings.model_validate (no config file, so no folder) parses the secret values on first access, paths as
    written, and keeps them; a literal outside demo mode is refused there as check-config refuses it."""
    settings = config.Settings.model_validate(_document())
    parse_calls.clear()  # the Transit key's field validator parsed it; it is not kept without parse_settings

    values = settings.secret_values
    assert settings.secret_values is values
    assert dict(parse_calls) == dict.fromkeys(SECRET_VALUES.values(), 1)
    assert values.refs["secrets.keyring"] == SecretRef("file", "keys/keyring.json")
    assert values.fixed["store.password"].env_name == "DB_PASSWORD"
    assert values.transit == TransitKeyRef("transit", "mfa-totp")

    production = config.Settings.model_validate({**_document(), "mode": "production"})
    with pytest.raises(config.ConfigError) as refused:
        _ = production.secret_values
    assert refused.value.problems == [
        "store.password: the environment variable DB_PASSWORD is refused outside mode: demo; give a reference such "
        "as file:/run/secrets/password"
    ]


def test_a_copy_of_the_settings_keeps_its_secret_values_unless_a_secret_key_changed(
    tmp_path: Path, parse_calls: Counter[str]
) -> None:
    """model_copy keeps the parsed values while the secret strings are the same, and parses anew (never serves the
    old reference) when the copy changed one."""
    settings = config.parse_settings(_document(), base_dir=tmp_path)
    parse_calls.clear()

    same = settings.model_copy(update={"log_level": "debug"})
    assert same.secret_values == settings.secret_values
    assert parse_calls == Counter()

    other = settings.model_copy(update={"admin": settings.admin.model_copy(update={"token": "file:/run/other"})})
    assert other.secret_values.refs["admin.token"] == SecretRef("file", "/run/other")
    assert other.secret_values.refs["secrets.keyring"] == SecretRef("file", str(tmp_path / "keys/keyring.json"))
    assert settings.secret_values.refs["admin.token"] == SecretRef("file", str(tmp_path / "admin-token"))
    assert settings.admin.token == f"file:{tmp_path / 'admin-token'}"  # the string field says what the value says


def test_settings_with_their_parsed_secret_values_survive_pickling(tmp_path: Path, parse_calls: Counter[str]) -> None:
    """`serve --workers N` hands the settings to each worker process pickled: the parsed secret values go along,
    unchanged and still read-only, and the worker parses nothing again."""
    settings = config.parse_settings(_document(), base_dir=tmp_path)
    values = settings.secret_values
    parsed = sum(parse_calls.values())
    copy = pickle.loads(pickle.dumps(settings))  # noqa: S301 (our own settings, round-tripped in the test)
    assert copy.secret_values == values
    assert sum(parse_calls.values()) == parsed
    with pytest.raises(TypeError):
        copy.secret_values.refs["admin.token"] = SecretRef("file", "/elsewhere")  # type: ignore[index]
