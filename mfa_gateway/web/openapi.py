"""The OpenAPI 3.1 document of the JSON API, read once from the package and served with the configured prefix."""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

import yaml


@functools.cache
def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(resources.files(__package__).joinpath("openapi.yaml").read_text())
    return loaded


@functools.cache
def openapi_document(prefix: str) -> dict[str, Any]:
    """The document whose `servers` entry is the gateway's prefix: its paths are relative to it."""
    document = copy.deepcopy(_document())
    document["servers"] = [{"url": prefix or "/", "description": "this gateway's routes"}]
    return document
