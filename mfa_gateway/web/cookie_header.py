"""Reading the request's Cookie header once, the same way for the gateway's decision and for the app.

Cookie parsers disagree (``SimpleCookie`` stops at a stray quote, most frameworks carry on; some split on commas;
duplicates resolve first-wins in one and last-wins in another). A gateway that checks one cookie while the app
reads another can be made to bind a step-up session to the wrong app session. So:

* a request with more than one ``Cookie`` header is refused;
* the header is split leniently (``;`` then the first ``=``), as browsers and most servers do;
* a cookie the gateway decides on (its own, and the app's session cookie) that appears more than once, or whose
  ``name=`` appears anywhere else in the header, makes the request ambiguous: it is refused, never guessed;
* the app receives exactly the pairs the gateway read, minus the gateway's own cookies.

A client sends the same header on every request: each header (up to ``PARSED_CACHE_LENGTH`` characters) is parsed
once per process, and each decisive cookie read from it once, as is what the app receives of it; all are pure
functions of the header.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web

from mfa_gateway.core.errors import BadRequest


class AmbiguousCookies(BadRequest):
    code = "ambiguous_cookie"
    default_message = "The request carries conflicting cookies; clear the site's cookies and sign in again."


PARSED_CACHE_SIZE = 2048
PARSED_CACHE_LENGTH = 2048
"""At most 2048 headers of at most 2048 characters are remembered (a few MiB), whatever clients send."""


@dataclass(frozen=True, slots=True)
class CookieHeader:
    raw: str
    parts: tuple[tuple[str, str, str], ...]  # (name, value, the part as sent)
    _read: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)  # name -> its value
    _without: dict[frozenset[str], str] = field(default_factory=dict, compare=False, repr=False)

    def value(self, name: str) -> str | None:
        """The single value of a decisive cookie; ``AmbiguousCookies`` if the name could be read two ways."""
        try:
            return self._read[name]
        except KeyError:
            pass
        values = [value for part_name, value, _ in self.parts if part_name == name]
        if len(values) > 1 or self.raw.count(name + "=") > len(values):
            raise AmbiguousCookies()  # not remembered: every request with this header is refused the same way
        found = self._read[name] = values[0] if values else None
        return found

    def without(self, names: Iterable[str]) -> str:
        """The header without the cookies ``names``; for a frozenset of names (the gateway's own), remembered."""
        if isinstance(names, frozenset):
            try:
                return self._without[names]
            except KeyError:
                pass
        drop = set(names)
        kept = "; ".join(part for name, _, part in self.parts if name not in drop)
        if isinstance(names, frozenset):
            self._without[names] = kept
        return kept


_parsed: dict[str, CookieHeader] = {}


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
    """The request's cookies: the parsed header, remembered per raw header (not on the request: looking a value up
    on the request costs more than this, the first time)."""
    headers = request.headers.getall("Cookie", ())
    if len(headers) > 1:
        raise AmbiguousCookies()
    raw = headers[0] if headers else ""
    parsed = _parsed.get(raw)
    if parsed is None:
        parsed = parse(raw)
        if len(raw) <= PARSED_CACHE_LENGTH:
            if len(_parsed) >= PARSED_CACHE_SIZE:
                _parsed.clear()
            _parsed[raw] = parsed
    return parsed


def request_cookie(request: web.Request, name: str) -> str | None:
    return cookie_header(request).value(name)
