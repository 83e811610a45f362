"""Reading the request bodies the gateway itself interprets (API JSON, page forms, intercepted logins), strictly.

What the gateway cannot read, it refuses with a 4xx and a stable code, before any decision:

* a body that ends before its declared length (the client went away) is ``400 incomplete_body``;
* a ``Content-Encoding`` other than ``identity`` is ``415 unsupported_encoding``: the gateway never decompresses
  (the server runs with ``auto_decompress`` off, so proxied bodies pass byte for byte), and no browser or API
  client compresses the small bodies it reads;
* JSON is UTF-8 only, one object at the top, at most ``MAX_JSON_DEPTH`` levels deep, with no repeated key (parsers
  disagree on which copy wins), no lone surrogate, no ``NaN``/``Infinity`` and no number longer than
  ``MAX_NUMBER_LENGTH`` characters (or out of the float range);
* forms are ``application/x-www-form-urlencoded`` in UTF-8 (percent-decoded strictly), each field at most once.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from mfa_gateway.core.errors import BadRequest, MfaError

MAX_JSON_DEPTH = 16
"""Arrays and objects nested deeper than this are refused before parsing (the API's bodies are flat)."""
MAX_NUMBER_LENGTH = 64
"""Characters in one JSON number literal: no field is numeric, and Python's int parsing grows with the length."""
MAX_FORM_FIELDS = 64

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class IncompleteBody(BadRequest):
    code = "incomplete_body"
    default_message = "The request body ended before its declared length."


class InvalidJson(BadRequest):
    code = "invalid_json"
    default_message = "The body is not valid JSON."


class InvalidForm(BadRequest):
    code = "invalid_form"
    default_message = "The form could not be read."


class BodyTooLarge(MfaError):
    """413 (see ``web.errors``)."""

    code = "body_too_large"
    default_message = "The request body is too large."


class UnsupportedMediaType(MfaError):
    """415 (see ``web.errors``): a content type or ``Content-Encoding`` the route does not read."""

    code = "unsupported_media_type"
    default_message = "The body is not in a format this route reads."


class UnsupportedEncoding(UnsupportedMediaType):
    code = "unsupported_encoding"
    default_message = "Send the body without a Content-Encoding."


async def read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """``limit`` bytes of ``stream``, fewer only where it ends: ``StreamReader.read(n)`` returns only what has arrived
    so far, so a body that comes in pieces would be cut at the first (and a size limit never seen).

    A body cut short (the connection closed before its ``Content-Length`` or last chunk) is ``IncompleteBody``, never
    a shorter body: an intercepted login must not reach the application truncated."""
    try:
        return await stream.readexactly(limit)
    except asyncio.IncompleteReadError as short:
        return short.partial  # the body ended where its framing said it would
    except (ConnectionError, aiohttp.ClientPayloadError, aiohttp.http_exceptions.HttpProcessingError) as exc:
        raise IncompleteBody() from exc


def refuse_encoded(request: web.BaseRequest) -> None:
    """``UnsupportedEncoding`` unless every ``Content-Encoding`` of the request is ``identity`` (or empty)."""
    for value in request.headers.getall("Content-Encoding", ()):
        if any(coding.strip().lower() not in ("", "identity") for coding in value.split(",")):
            raise UnsupportedEncoding()


def parse_json_object(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """The one JSON object ``raw`` holds, read as described above, or ``InvalidJson`` (code ``invalid_json``,
    ``duplicate_key`` or ``json_too_deep``). ``max_depth`` is for documents deeper than the API's (a Pod in an
    admission review)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson("The body is not UTF-8.") from exc
    if _depth(text) > max_depth:
        raise InvalidJson(f"The body nests deeper than {max_depth} levels.", code="json_too_deep")
    try:
        body = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except ValueError as exc:  # JSONDecodeError; the hooks raise InvalidJson, which passes through unchanged
        raise InvalidJson() from exc
    if not isinstance(body, dict):
        raise InvalidJson("The body must be a JSON object.")
    if _has_surrogate(body):
        raise InvalidJson("The body holds a lone surrogate escape (not encodable as UTF-8).")
    return body


def _depth(text: str) -> int:
    """How deep ``text`` nests, counting brackets outside strings: at least the depth ``json.loads`` would reach
    (an unterminated string is not skipped, so its brackets count too), found without recursing."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub('""', text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _has_surrogate(value: object) -> bool:
    """Whether a string anywhere in ``value`` holds half a surrogate pair (only a ``\\ud800``-style escape makes
    one: strict UTF-8 decoding refuses them raw). Bounded by the depth limit and the body size."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogate(key) or _has_surrogate(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    return False


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(pairs)
    if len(body) != len(pairs):
        raise InvalidJson("A key appears twice in one object.", code="duplicate_key")
    return body


def _no_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not a JSON number.")


def _bounded_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_LENGTH:
        raise InvalidJson(f"Numbers are limited to {MAX_NUMBER_LENGTH} characters.")
    return int(literal)


def _finite_float(literal: str) -> float:
    value = float(literal) if len(literal) <= MAX_NUMBER_LENGTH else math.inf
    if not math.isfinite(value):
        raise InvalidJson(f"Numbers must be finite and at most {MAX_NUMBER_LENGTH} characters.")
    return value


def parse_form(raw: bytes, content_type: str, charset: str | None) -> dict[str, str]:
    """The fields of an urlencoded form, each named once, or ``InvalidForm`` (``invalid_form``, ``duplicate_field``);
    another content type or charset is ``415 form_required``."""
    if content_type != "application/x-www-form-urlencoded" or (charset or "utf-8").lower() != "utf-8":
        raise UnsupportedMediaType("Send the form as application/x-www-form-urlencoded (UTF-8).", code="form_required")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidForm() from exc
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise InvalidForm("A form field appears twice.", code="duplicate_field")
    return fields


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body of a request to one of the gateway's own routes: no ``Content-Encoding``, complete, at most
    ``limit`` bytes (``413 body_too_large`` before reading when the declared length is over)."""
    refuse_encoded(request)
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge()
    raw = await read_at_most(request.content, limit + 1)  # a body in pieces is read whole
    if len(raw) > limit:
        raise BodyTooLarge()
    return raw
