"""The pages' first-party script, ``{prefix}/static/webauthn.js`` (``web/static/``): security keys and passkeys.

Read from the package once, at import. Pages name it with a digest of its bytes in the query (``?v=``) and with
Subresource Integrity (``integrity``), so a browser may keep it for a year under that URL (``immutable``): a new
release is a new URL, never a stale script. Asked for without the current ``v``, it must be revalidated
(``no-cache``) against its strong ``ETag``. ``text/javascript`` (RFC 9239), and ``nosniff`` as every gateway answer.
"""

from __future__ import annotations

import base64
import hashlib
from importlib.resources import files

from aiohttp import web

routes = web.RouteTableDef()

SCRIPT = files("mfa_gateway.web").joinpath("static/webauthn.js").read_bytes()
_DIGEST = hashlib.sha256(SCRIPT).hexdigest()
VERSION = _DIGEST[:16]
_TAG = _DIGEST[:32]
ETAG = f'"{_TAG}"'
INTEGRITY = "sha384-" + base64.b64encode(hashlib.sha384(SCRIPT).digest()).decode("ascii")
"""The ``integrity`` attribute of the pages' ``<script>``: a script altered on its way is not run."""
FOR_A_YEAR = "public, max-age=31536000, immutable"


def script_url(prefix: str) -> str:
    return f"{prefix}/static/webauthn.js?v={VERSION}"


@routes.get("/static/webauthn.js")
async def webauthn_script(request: web.Request) -> web.Response:
    headers = {"ETag": ETAG, "Cache-Control": FOR_A_YEAR if request.query.get("v") == VERSION else "no-cache"}
    if any(tag.value in (_TAG, "*") for tag in request.if_none_match or ()):  # If-None-Match compares weakly
        return web.Response(status=304, headers=headers)
    return web.Response(body=SCRIPT, content_type="text/javascript", charset="utf-8", headers=headers)
