"""The request id: logged with every access event and sent to the app, so one request can be followed through."""

from __future__ import annotations

import itertools
import secrets

from aiohttp import web

REQUEST_ID = web.RequestKey("request_id", str)
HEADER = "X-Request-Id"

_PROCESS_TAG = secrets.token_hex(4)
_SEQUENCE = itertools.count()


def _new_request_id() -> str:
    """A correlation id, not a secret: a random tag per process and a counter (no system call per request)."""
    return f"{_PROCESS_TAG}{next(_SEQUENCE) & 0xFFFFFFFF:08x}"


def request_id(request: web.Request, peer_trusted: bool) -> str:
    """The id to log and pass upstream: a trusted proxy's ``X-Request-Id`` (if sane), else a new one."""
    try:
        return request[REQUEST_ID]
    except KeyError:
        return assign_request_id(request, peer_trusted)


def assign_request_id(request: web.Request, peer_trusted: bool) -> str:
    """``request_id`` for a request known to have none yet (a handler's first step): no lookup first."""
    given = request.headers.get(HEADER, "") if peer_trusted else ""
    value = given if 0 < len(given) <= 128 and given.isprintable() and " " not in given else _new_request_id()
    request[REQUEST_ID] = value
    return value
