"""Bodyless answers whose header lines are encoded once, for the forward-auth endpoint's hot answer.

A proxy asks ``{prefix}/auth`` once per request of its own, and most answers are the same few header lines for the
same user. aiohttp's ``web.Response`` copies them into a new multidict on every answer, adds ``Content-Length``,
``Date``, ``Server`` and ``Connection`` through that multidict, and serialises the lot again, scanning every value for
CR and LF: about a third of the endpoint's work. ``EncodedAnswer`` writes the same answer from bytes built once per
header set (``encode_lines``, which refuses what aiohttp's serialiser would: a bad name, or a control character in
a value), with only the status line, ``Date``, ``Content-Length: 0`` (not for ``HEAD``) and ``Connection`` decided per
request, as aiohttp decides them; aiohttp's ``Server`` line, which names its version, is left out.

It skips the ``on_response_prepare`` signal, which could only add headers the bytes would not carry: the gateway's
applications register none (``tests/unit/web/test_encoded.py`` pins it), and this answer is for ``{prefix}/auth``
only.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Any, NewType

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import HttpVersion10, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy

from mfa_gateway.core import http_fields

_EMPTY_BODY = b"Content-Length: 0\r\n"
_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
"""Every encoded answer's ``headers``: empty and read-only (its lines are bytes), one object for all of them."""


EncodedLines = NewType("EncodedLines", bytes)
"""Header lines that ``encode_lines`` checked: the only bytes an ``EncodedAnswer`` writes as its headers."""


def encode_lines(headers: Iterable[tuple[str, str]]) -> EncodedLines:
    """A ``Name: value`` line (CRLF-ended) for each header, in order, as UTF-8; a name that is not a token, a value
    with a control character (``core.http_fields``) or text that has no UTF-8 form raises ``ValueError``, never
    quoting a value."""
    lines = []
    for name, value in headers:
        if not http_fields.is_name(name) or not http_fields.is_value(value):
            raise ValueError(f"header {name!r} cannot be sent as it is")
        lines.append(f"{name}: {value}\r\n")
    try:
        return EncodedLines("".join(lines).encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("a header value cannot be sent as it is: not UTF-8") from None


class EncodedAnswer(web.StreamResponse):
    """A bodyless 200: ``lines`` (from ``encode_lines``), then what depends on the request. Its status and headers
    are fixed and it takes no cookie: whatever is changed after encoding would never be sent, so it raises instead."""

    def __init__(self, lines: EncodedLines) -> None:
        super().__init__()
        self._headers = _NO_HEADERS  # type: ignore[assignment]
        self._lines = lines

    def set_status(self, status: int, reason: str | None = None) -> None:
        raise TypeError("an encoded answer is a 200: answer with web.Response")

    @property
    def cookies(self) -> SimpleCookie:
        raise TypeError("an encoded answer takes no cookie: answer with web.Response")

    def set_cookie(self, name: str, value: str, **options: Any) -> None:
        raise TypeError("an encoded answer takes no cookie: answer with web.Response")

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._eof_sent:
            return None
        if self._payload_writer is not None:
            return self._payload_writer
        keep_alive = request.keep_alive if self._keep_alive is None else self._keep_alive
        self._keep_alive = keep_alive
        version = request.version
        status = (
            b"HTTP/1.1 200 OK\r\n"
            if version == HttpVersion11
            else f"HTTP/{version[0]}.{version[1]} 200 OK\r\n".encode()
        )
        if keep_alive:  # as aiohttp's _prepare_headers decides it
            connection = b"Connection: keep-alive\r\n" if version == HttpVersion10 else b""
        else:
            connection = b"Connection: close\r\n" if version == HttpVersion11 else b""
        length = b"" if request.method == hdrs.METH_HEAD else _EMPTY_BODY  # a HEAD's length would be the GET's
        self._req = request
        writer = self._payload_writer = request.writer
        date = _date_line(rfc822_formatted_time())
        await writer.write(b"".join((status, self._lines, date, length, connection, b"\r\n")))
        return writer


@functools.lru_cache(maxsize=2)
def _date_line(now: str) -> bytes:
    """The ``Date`` line for aiohttp's formatted time, which changes once a second: encoded once."""
    return f"Date: {now}\r\n".encode("ascii")
