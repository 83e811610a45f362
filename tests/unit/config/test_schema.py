"""The configuration's one source: the models' descriptions and JSON Schema, and the annotated example they document."""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

from mfa_gateway.cli import main
from mfa_gateway.config import Settings, json_schema, load_settings
from mfa_gateway.runtime import build_store, open_sources
from tests.helpers.gateway import base_config, write_config
from tests.helpers.support import merge_overrides

CONFIG = Path(__file__).resolve().parents[3] / "config"
EXAMPLE = CONFIG / "gateway.example.yaml"


def _sections(annotation: Any) -> list[type[BaseModel]]:
    """The sections a field holds: itself, the section of ``X | None``, the items of ``tuple[X, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, types.UnionType, tuple):
        return [section for arg in get_args(annotation) for section in _sections(arg)]
    return []


def model_keys(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every key of the config file, dotted (list items of a section add no index: ``policy.rules.action``)."""
    for name, field in model.model_fields.items():
        yield prefix + name, field
        for section in _sections(field.annotation):
            yield from model_keys(section, f"{prefix}{name}.")


_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<dash>- )?(?P<key>[a-z_]+):(?P<rest>(?:\s.*)?)$")


def example_keys(text: str) -> Iterator[tuple[str, bool, str]]:
    """``(dotted key, commented, the line)`` for every key line of the example, written or commented out (``  # key:
    value`` nested by the indentation after the ``#``)."""
    stack: list[tuple[int, str]] = []
    for raw in text.splitlines():
        commented = raw.lstrip().startswith("#")
        line = re.sub(r"^( *)# ?", r"\1", raw) if commented else raw
        match = _KEY_LINE.match(line)
        if match is None:
            continue
        indent = len(match["indent"]) + (2 if match["dash"] else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([*(key for _, key in stack), match["key"]])
        stack.append((indent, match["key"]))
        yield dotted, commented, line
        value = yaml.safe_load(f"{match['key']}:{match['rest']}")[match["key"]]
        if isinstance(value, dict):  # a flow mapping: {role: NAME, token_file: …}
            yield from ((f"{dotted}.{key}", commented, line) for key in value)


def _default(field: FieldInfo) -> Any:
    return TypeAdapter(field.annotation).dump_python(field.get_default(call_default_factory=True), mode="json")


def test_every_model_key_is_in_the_example_and_every_example_key_in_the_models() -> None:
    """config/gateway.example.yaml documents every key (written, or commented out), and holds no key the models do
    not know: the annotated example cannot drift from the code."""
    model = {key for key, _ in model_keys()}
    example = {key for key, _, _ in example_keys(EXAMPLE.read_text())}
    assert sorted(model - example) == []
    assert sorted(example - model) == []


def test_every_written_example_key_holds_the_model_default() -> None:
    """Each key the example writes out (not commented) holds the model's default: the example says what a file that
    leaves the key out gets. Required keys (the secret references) have no default to compare."""
    fields = dict(model_keys())
    document = yaml.safe_load(EXAMPLE.read_text())
    for key, commented, _ in example_keys(EXAMPLE.read_text()):
        field = fields[key]
        if commented or field.is_required():
            continue
        value: Any = document
        for part in key.split("."):
            value = value[part]
        if isinstance(value, dict):
            continue  # a section: its keys are compared one by one
        assert value == _default(field), key


def test_every_key_is_described_and_every_form_has_a_hint() -> None:
    """Every field says what it means for an operator (the docs reference is rendered from it), and every field
    checked against a form has a short hint, so an error never ends at "has the wrong form"."""
    for key, field in model_keys():
        assert field.description, key
        if any(getattr(item, "pattern", None) for item in field.metadata):
            assert isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("x-hint"), key


def test_json_schema_is_a_2020_12_schema_of_the_config_file() -> None:
    """json_schema() (printed by `mfa-gateway config schema`) is a valid draft 2020-12 schema with an id, a title,
    descriptions and defaults, secret keys as reference strings."""
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"] == "mfa-gateway configuration"
    assert schema["properties"]["workers"] == {
        "default": 1,
        "description": Settings.model_fields["workers"].description,
        "maximum": 64,
        "minimum": 1,
        "title": "Workers",
        "type": "integer",
        "x-hint": "processes serving one port (SO_REUSEPORT); >1 needs Redis",
    }
    keyring = schema["$defs"]["Secrets"]["properties"]["keyring"]
    assert keyring["type"] == "string" and keyring["pattern"].startswith("^(file|vault|awssm)")


@pytest.mark.parametrize("name", ["gateway.example.yaml", "ha.example.yaml", "gateway.container.yaml"])
def test_every_shipped_config_file_validates_against_the_schema(name: str) -> None:
    """The example and deployment configs are valid by the JSON Schema editors and CI can check files with."""
    jsonschema.validate(yaml.safe_load((CONFIG / name).read_text()), json_schema())


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"listen": {"prot": 9090}}, "listen.prot: unknown key"),
        ({"identity": {"trusted_proxies": ["10.0.0.0/8"]}}, "identity.trusted_proxies: this key has moved"),
        ({"trusted_proxies": ["10.0.0.0/33"]}, "trusted_proxies.0: '10.0.0.0/33' is no network"),
        ({"policy": {"rules": [{"action": "mfa", "networks": ["10.0.0.1/8/8"]}]}}, "policy.rules.0.networks.0:"),
        ({"state": {"sentinels": ["sentinel:port"], "sentinel_master": "m"}}, "state.sentinels.0:"),
        ({"secrets": {"keyring": "hunter2"}}, "secrets.keyring: a literal value is refused"),
        ({"store": {"pool_size": 0}}, "store.pool_size:"),
        ({"store": {"pool_size": 101}}, "store.pool_size:"),
    ],
)
def test_the_schema_refuses_what_check_config_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, object], problem: str
) -> None:
    """A file the schema refuses (an unknown or moved key, a bad CIDR or sentinel, a literal secret) is refused by
    check-config too (exit 2), so an editor's verdict matches the gateway's."""
    config = merge_overrides(base_config(tmp_path), document)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, json_schema())
    assert main(["check-config", "--config", str(write_config(tmp_path, config))]) == 2
    assert problem in capsys.readouterr().err


def test_store_pool_size_sizes_the_postgresql_pool(tmp_path: Path) -> None:
    """``store.pool_size`` is the number of PostgreSQL connections the store's pool keeps (no connection is made)."""
    document = merge_overrides(
        base_config(tmp_path), {"store": {"url": "postgresql+asyncpg://mfa@127.0.0.1:5432/mfa", "pool_size": 12}}
    )
    settings = load_settings(write_config(tmp_path, document))
    store = build_store(settings, open_sources(settings))
    assert store.engine.sync_engine.pool.size() == 12  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["X User", "X-User:", "X-Üser", "", "X-User\r\nSet-Cookie"])
def test_an_identity_header_name_that_is_no_token_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A header name a header line cannot carry is refused at load (exit 2, naming the key and the form), rather than
    failing every allowed answer once the gateway runs."""
    path = write_config(tmp_path, merge_overrides(base_config(tmp_path), {"identity_headers": {"user": [name]}}))
    assert main(["check-config", "--config", str(path)]) == 2
    expected = "identity_headers.user.0: has the wrong form; expected a list of header names, each an HTTP token"
    assert expected in capsys.readouterr().err


def test_an_item_of_a_list_of_sections_gets_no_hint_of_the_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy rule that is not a section is told so, without the rules list's own hint tacked on (an item of a
    list of values, such as a header name, does get its list's hint)."""
    path = write_config(tmp_path, merge_overrides(base_config(tmp_path), {"policy": {"rules": ["admin"]}}))
    assert main(["check-config", "--config", str(path)]) == 2
    line = next(line for line in capsys.readouterr().err.splitlines() if "policy.rules.0" in line)
    assert "should be a section" in line and "expected" not in line
