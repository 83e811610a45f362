"""CSRF protection for the HTML forms: a double-submit token and an Origin check.

Every page that shows a form sets a random token in a ``SameSite=Strict`` cookie (``__Host-`` when secure) and
puts the same token in a hidden field. A state-changing POST must carry both, equal (constant-time compare), and,
when the browser sends ``Origin``, an origin that is the gateway's own. A cross-site page can neither read the
cookie nor set a ``__Host-`` cookie, so it cannot forge the pair.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from aiohttp import web

from mfa_gateway.config import Settings
from mfa_gateway.core.errors import Forbidden
from mfa_gateway.web.cookie_header import request_cookie

FIELD = "csrf"


def cookie_name(settings: Settings) -> str:
    return ("__Host-" if settings.session.secure else "") + "mfa_csrf"


def token_for(request: web.Request, settings: Settings) -> str:
    """The request's token, or a new one (``remember`` sets it on the response)."""
    existing = request_cookie(request, cookie_name(settings))
    return existing if existing and len(existing) == 43 else secrets.token_urlsafe(32)


def remember(response: web.StreamResponse, settings: Settings, token: str) -> None:
    response.set_cookie(
        cookie_name(settings), token, path="/", httponly=True, secure=settings.session.secure, samesite="Strict"
    )


def check(request: web.Request, settings: Settings, submitted: str | None) -> None:
    expected = request_cookie(request, cookie_name(settings))
    if not expected or not submitted or not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise Forbidden("The form has expired; reload the page and try again.", code="csrf_failed")
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null" and not _same_origin(origin, request, settings):
        raise Forbidden("Cross-site form submissions are refused.", code="csrf_failed")


def _same_origin(origin: str, request: web.Request, settings: Settings) -> bool:
    parts = urlsplit(origin)
    allowed = {request.host.lower()}
    if settings.public_url:
        allowed.add(urlsplit(settings.public_url).netloc.lower())
    return parts.netloc.lower() in allowed
