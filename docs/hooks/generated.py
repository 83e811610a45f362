"""MkDocs hook: pages that hold a `<!-- generated: NAME -->` line get that part written from its one source.

* `configuration`: every config key, its type, default and description, from the config models' JSON Schema
  (the schema `mfa-gateway config schema` prints), so the reference cannot drift from the code.
* `http-api`: the operations of the JSON API from the OpenAPI document the gateway serves.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mfa_gateway.config import Settings
from mfa_gateway.web.openapi import openapi_document

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.M)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return MARKER.sub(lambda match: GENERATORS[match[1]](), markdown)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _type_of(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[1]]
        return _type_of(target, defs) if "enum" in target else "section"
    if "enum" in schema:
        return " \\| ".join(f"`{value}`" for value in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if "anyOf" in schema:
        return " or ".join(dict.fromkeys(_type_of(option, defs) for option in schema["anyOf"]))
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type_of(schema.get('items', {}), defs)}"
    if kind == "null":
        return "null"
    bounds = [f"{name} {schema[key]}" for key, name in (("minimum", "≥"), ("maximum", "≤")) if key in schema]
    return f"{kind}" + (f" ({', '.join(bounds)})" if bounds else "")


def _default(schema: dict[str, Any]) -> str:
    if "default" not in schema:
        return "required"
    value = schema["default"]
    if isinstance(value, dict):
        return ""
    return f"`{json.dumps(value)}`"


def _rows(properties: dict[str, Any], defs: dict[str, Any], prefix: str, sections: list[tuple[str, Any]]) -> list[str]:
    rows = []
    for name, schema in properties.items():
        key = f"{prefix}{name}"
        description = _cell(schema.get("description", ""))
        target = schema
        for option in [schema, *schema.get("anyOf", [])]:
            if "$ref" in option and "properties" in defs[option["$ref"].rsplit("/", 1)[1]]:
                target = defs[option["$ref"].rsplit("/", 1)[1]]
        if target is not schema:
            sections.append((key, target))
            rows.append(f"| [`{key}`](#{key.replace('.', '')}) | section | | {description} |")
            continue
        rows.append(f"| `{key}` | {_type_of(schema, defs)} | {_default(schema)} | {description} |")
    return rows


def configuration() -> str:
    schema = Settings.model_json_schema()
    defs = schema.get("$defs", {})
    header = ["| key | type | default | description |", "|---|---|---|---|"]
    sections: list[tuple[str, Any]] = []
    out = ["## Top level", "", *header, *_rows(schema["properties"], defs, "", sections), ""]
    while sections:
        key, section = sections.pop(0)
        out += [f"## `{key}` {{#{key.replace('.', '')}}}", ""]
        if section.get("description"):
            out += [section["description"], ""]
        nested: list[tuple[str, Any]] = []
        out += [*header, *_rows(section["properties"], defs, f"{key}.", nested), ""]
        sections[:0] = nested
    return "\n".join(out)


def http_api() -> str:
    document = openapi_document("{prefix}")
    out = ["| route | summary | answers |", "|---|---|---|"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:  # path-level keys: parameters, summary, servers
                continue
            statuses = ", ".join(f"`{status}`" for status in operation["responses"])
            out.append(f"| `{method.upper()} {{prefix}}{path}` | {_cell(operation['summary'])} | {statuses} |")
    return "\n".join(out)


HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
GENERATORS = {"configuration": configuration, "http-api": http_api}
