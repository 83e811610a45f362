"""The one place where errors become HTTP responses.

Domain errors carry a stable ``code``; this table gives each family its status. Anything unexpected becomes a 500
with code ``internal_error`` and no detail: the traceback goes to the server log, never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from mfa_gateway.config import Settings
from mfa_gateway.core import errors
from mfa_gateway.web import html
from mfa_gateway.web.bodies import BodyTooLarge, UnsupportedMediaType
from mfa_gateway.web.html import SECURITY_HEADERS

log = logging.getLogger("mfa_gateway.web")
SETTINGS = web.AppKey("settings", Settings)
"""The settings, for error pages (here rather than in ``keys``, which imports the gate, which imports this module)."""

_STATUS: tuple[tuple[type[errors.MfaError], int], ...] = (
    (BodyTooLarge, 413),
    (UnsupportedMediaType, 415),
    (errors.BadRequest, 400),
    (errors.Unauthenticated, 401),
    (errors.InvalidCode, 401),
    (errors.Forbidden, 403),
    (errors.NotEnrolled, 409),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.LockedOut, 429),
    (errors.DependencyUnavailable, 503),
)
_HTTP_CODES = {
    400: ("malformed_request", "The request could not be read."),
    404: ("not_found", "No such endpoint."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("body_too_large", "The request body is too large."),
    415: ("json_required", "Send the body as application/json."),
    417: ("expectation_failed", "Only 'Expect: 100-continue' is understood."),
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_of(error: errors.MfaError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 400


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"success": False, "error": message, "code": code}
    return web.json_response(body, status=status, headers=headers)


def retry_headers(error: errors.MfaError) -> dict[str, str]:
    """``Retry-After`` for a lockout (its remaining seconds) or an unavailable dependency; JSON and pages alike."""
    if isinstance(error, errors.LockedOut):
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, errors.DependencyUnavailable):
        return {"Retry-After": "5"}
    return {}


def log_unavailable(error: errors.MfaError) -> None:
    """One log line for an answer refused because a dependency is down (JSON and pages alike)."""
    if isinstance(error, errors.DependencyUnavailable):
        log.warning("dependency unavailable: %s", error.dependency)


def error_response(error: errors.MfaError) -> web.Response:
    return json_error(status_of(error), error.code, error.message, retry_headers(error))


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.MfaError as error:
        log_unavailable(error)
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return framework_refusal(request, exc.status, exc.headers.get("Allow"))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.rel_url.path)
        return json_error(500, "internal_error", "Internal error.")


def framework_refusal(request: web.BaseRequest, status: int, allow: str | None = None) -> web.Response:
    """An error the framework decided (no such route, wrong method, unknown ``Expect``, an unreadable request): a
    page for a browser outside ``{prefix}/api``, the JSON error otherwise. It never quotes the request."""
    code, message = _HTTP_CODES.get(status, ("http_error", HTTPStatus(status).phrase))
    headers = {"Allow": allow} if allow else {}
    settings = _settings_of(request) if html.wants_html(request) else None
    if settings is not None and not request.path.startswith(settings.prefix + "/api/"):
        response = html.message_page(
            settings.prefix, settings.redirects.allowed_hosts, status, HTTPStatus(status).phrase, message
        )
        response.headers.update(headers)
        return response
    response = json_error(status, code, message, headers)
    response.headers.update({**SECURITY_HEADERS, "Content-Security-Policy": API_CSP})
    return response


def _settings_of(request: web.BaseRequest) -> Settings | None:
    """The gateway's settings, when ``request`` was routed in a gateway application (a request aiohttp could not
    parse never was: it has no application)."""
    try:
        return request.app.get(SETTINGS) if isinstance(request, web.Request) else None
    except AttributeError:  # no route was resolved: ``request.app`` has nothing to read
        return None


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Content-Security-Policy", API_CSP)
    return response
