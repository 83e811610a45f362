"""Reading the request's Cookie header once, the same way for the gateway's decision and for the app.

Cookie parsers disagree (``SimpleCookie`` stops at a stray quote, most frameworks carry on; some split on commas;
duplicates resolve first-wins in one and last-wins in another). A gateway that checks one cookie while the app
reads another can be made to bind a step-up session to the wrong app session. So:

* a request with more than one ``Cookie`` header is refused;
* the header is split leniently (``;`` then the first ``=``), as browsers and most servers do;
* a cookie the gateway decides on (its own, and the app's session cookie) that appears more than once, or whose
  ``name=`` appears anywhere else in the header, makes the request ambiguous: it is refused, never guessed;
* the app receives exactly the pairs the gateway read, minus the gateway's own cookies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from mfa_gateway.core.errors import BadRequest


class AmbiguousCookies(BadRequest):
    code = "ambiguous_cookie"
    default_message = "The request carries conflicting cookies; clear the site's cookies and sign in again."


@dataclass(frozen=True, slots=True)
class CookieHeader:
    raw: str
    parts: tuple[tuple[str, str, str], ...]  # (name, value, the part as sent)

    def value(self, name: str) -> str | None:
        """The single value of a decisive cookie; ``AmbiguousCookies`` if the name could be read two ways."""
        values = [value for part_name, value, _ in self.parts if part_name == name]
        if len(values) > 1 or self.raw.count(name + "=") > len(values):
            raise AmbiguousCookies()
        return values[0] if values else None

    def without(self, names: Iterable[str]) -> str:
        drop = set(names)
        return "; ".join(part for name, _, part in self.parts if name not in drop)


COOKIES = web.RequestKey("cookies", CookieHeader)


def parse(raw: str) -> CookieHeader:
    parts = []
    for piece in raw.split(";"):
        part = piece.strip()
        name, separator, value = part.partition("=")
        if not part or not separator:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        parts.append((name.strip(), value, part))
    return CookieHeader(raw, tuple(parts))


def cookie_header(request: web.Request) -> CookieHeader:
    """The request's cookies, parsed once per request (cached on it)."""
    try:
        return request[COOKIES]
    except KeyError:
        pass
    headers = request.headers.getall("Cookie", [])
    if len(headers) > 1:
        raise AmbiguousCookies()
    parsed = parse(headers[0] if headers else "")
    request[COOKIES] = parsed
    return parsed


def request_cookie(request: web.Request, name: str) -> str | None:
    return cookie_header(request).value(name)
