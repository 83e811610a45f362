"""Typed application state."""

from __future__ import annotations

from aiohttp import web

from mfa_gateway.runtime import Runtime
from mfa_gateway.web.gate import Gate
from mfa_gateway.web.headers import UpstreamHeaders
from mfa_gateway.web.identity import Identifier
from mfa_gateway.web.refusals import Refusals
from mfa_gateway.web.upstream import Upstream

RUNTIME = web.AppKey("runtime", Runtime)
IDENTIFIER = web.AppKey("identifier", Identifier)
GATE = web.AppKey("gate", Gate)
REFUSALS = web.AppKey("refusals", Refusals)
HEADERS = web.AppKey("headers", UpstreamHeaders)
UPSTREAM = web.AppKey("upstream", Upstream)
