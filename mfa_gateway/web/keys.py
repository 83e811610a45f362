"""Typed application state."""

from __future__ import annotations

from aiohttp import web

from mfa_gateway.runtime import Runtime
from mfa_gateway.web.identity import Identifier

RUNTIME = web.AppKey("runtime", Runtime)
IDENTIFIER = web.AppKey("identifier", Identifier)
