"""Config problems in the product's words: each line names the key, what is wrong and the fix.

pydantic's error list is the raw material; its internals (validator names such as ``lax-or-strict[…]``, regexes,
Python class names) never reach the operator. A key that has moved says where it lives now (``MOVED_KEYS``).
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterator
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

EXAMPLE = "config/gateway.example.yaml"

# Keys that used to live elsewhere: the old dotted path, and where it is now. An old key is an unknown key (exit 2),
# with this hint, rather than silently ignored.
MOVED_KEYS = {
    "identity.trusted_proxies": "trusted_proxies",
}


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` are lines naming a key and the fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class Problems(ValueError):
    """Several problems found by one model validator, each a line starting with its key, reported together."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# pydantic error types whose own message speaks of Python rather than of the config file.
_WORDING = {
    "bool_parsing": "should be true or false",
    "bool_type": "should be true or false",
    "int_parsing": "should be a whole number",
    "int_from_float": "should be a whole number",
    "int_type": "should be a whole number",
    "float_parsing": "should be a number",
    "float_type": "should be a number",
    "string_type": "should be text (a string)",
    "path_type": "should be a file path",
    "tuple_type": "should be a list, e.g. [A, B] (one value still needs the brackets: [A])",
    "list_type": "should be a list, e.g. [A, B] (one value still needs the brackets: [A])",
    "model_type": "should be a section: a mapping of keys, one per line below it",
    "model_attributes_type": "should be a section: a mapping of keys, one per line below it",
    "dict_type": "should be a section: a mapping of keys, one per line below it",
    "ip_v4_network": "is no network; write a CIDR such as 10.0.0.0/8, 192.168.1.5/32 or fd00::/8",
    "ip_v6_network": "is no network; write a CIDR such as 10.0.0.0/8, 192.168.1.5/32 or fd00::/8",
    "string_pattern_mismatch": "has the wrong form",
}


def describe_all(errors: list[ErrorDetails], root: type[BaseModel], example: str = EXAMPLE) -> list[str]:
    """One line per problem, in file order, without the duplicates a union type produces (an address that is
    neither an IPv4 nor an IPv6 network is one problem). ``example`` is the example file an unknown key points to
    (the injector's config file has its own)."""
    return list(dict.fromkeys(line for error in errors for line in describe(error, root, example)))


def describe(error: ErrorDetails, root: type[BaseModel], example: str = EXAMPLE) -> Iterator[str]:
    loc = _key_path(error)
    location = ".".join(str(part) for part in loc)
    if error["type"] == "missing":
        yield f"{location}: required; {_hint(root, loc) or 'add it'}"
    elif error["type"] == "extra_forbidden":
        yield _unknown_key(root, loc, example)
    elif isinstance(problems := error.get("ctx", {}).get("error"), Problems):
        yield from (_at(location, problem) for problem in problems.problems)
    else:
        yield _at(location, _message(error), _hint(root, loc))


def _key_path(error: ErrorDetails) -> tuple[str | int, ...]:
    """The location as keys and list indexes: pydantic adds the names of the validators a union tried (they hold
    ``[``, e.g. ``lax-or-strict[…]``), which are no part of the file. An unknown key is kept as written."""
    if error["type"] == "extra_forbidden":
        return tuple(error["loc"])
    return tuple(part for part in error["loc"] if isinstance(part, int) or "[" not in part)


def _message(error: ErrorDetails) -> str:
    wording = _WORDING.get(error["type"])
    if wording is None:
        return str(error["msg"]).removeprefix("Value error, ")
    if error["type"].startswith("ip_v"):
        return f"{error['input']!r} {wording}"
    return wording


def _at(location: str, message: str, hint: str | None = None) -> str:
    if not location or message.startswith(location):
        return message
    return f"{location}: {message}" + (f"; expected {hint}" if hint else "")


def _unknown_key(root: type[BaseModel], loc: tuple[str | int, ...], example: str) -> str:
    location = ".".join(str(part) for part in loc)
    dotted = ".".join(str(part) for part in loc if not isinstance(part, int))
    if dotted in MOVED_KEYS:
        return f"{location}: this key has moved; write it as {MOVED_KEYS[dotted]} (see {example})"
    known = list(_fields(_model_at(root, loc[:-1])))
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    spelling = f"did you mean {close[0]}?" if close else f"see {example} for the keys of this section"
    return f"{location}: unknown key; remove it or check its spelling ({spelling})"


def _hint(root: type[BaseModel], loc: tuple[str | int, ...]) -> str | None:
    """The field's short hint: what a valid value looks like (``x-hint`` in its JSON Schema extra); an item of a
    list of values has its list's (an item of a list of sections, such as a policy rule, has none)."""
    item = bool(loc) and isinstance(loc[-1], int)
    while loc and isinstance(loc[-1], int):
        loc = loc[:-1]
    model = _model_at(root, loc[:-1]) if loc else None
    field = _fields(model).get(str(loc[-1])) if loc else None
    if field is None or not isinstance(field.json_schema_extra, dict):
        return None
    if item and _section_type(field.annotation) is not None:
        return None
    hint = field.json_schema_extra.get("x-hint")
    return hint if isinstance(hint, str) else None


def _model_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> Any:
    """The model (section) at a location: list indexes step into a list's items, optional sections into the
    section."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = _fields(model).get(part)
        if field is None:
            return None
        model = _section_type(field.annotation)
    return model


def _section_type(annotation: Any) -> Any:
    """``Vault | None`` and ``tuple[PolicyRule, ...]`` lead to the section inside."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType, tuple, list):
        sections = [arg for arg in get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
        return sections[0] if sections else None
    return annotation


def _fields(model: Any) -> dict[str, Any]:
    if isinstance(model, type) and issubclass(model, BaseModel) and get_origin(model) is not Literal:
        return dict(model.model_fields)
    return {}
