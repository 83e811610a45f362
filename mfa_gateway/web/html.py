"""Server-rendered HTML: one layout, every interpolated value escaped, no inline script anywhere.

Pages work without JavaScript, label every input, and are served under a Content-Security-Policy that allows
nothing but our own stylesheet, data: images (the QR code), and form posts to ourselves and to the hosts in
``redirects.allowed_hosts`` over https (a form's answer may redirect to a return target there, and form-action
covers redirects). A page that offers security keys adds one script, the gateway's own ``webauthn.js``
(``web.assets``): its policy adds ``script-src 'self'`` and ``connect-src 'self'`` (never ``unsafe-inline`` or
``unsafe-eval``) and requires Trusted Types, and the tag carries the script's integrity digest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from aiohttp import web

Script = tuple[str, str]
"""A script a page loads: (URL, Subresource Integrity digest)."""

SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
"""On every response of the gateway's own (its routes, by middleware, and every page it renders)."""

STYLESHEET = """
:root { color-scheme: light dark; --bg: #ffffff; --text: #1b1b1f; --muted: #575761; --accent: #2457c5;
        --on-accent: #ffffff; --error: #b00020; --notice-bg: #eef2fb; --border: #6b6b75; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #15161a; --text: #e9e9ee; --muted: #b4b4be; --accent: #8cb2ff; --on-accent: #0b1733;
          --error: #ff9a91; --notice-bg: #1e2636; --border: #8d8d99; }
}
body { font: 16px/1.5 system-ui, sans-serif; max-width: 34rem; margin: 3rem auto; padding: 0 1rem;
       background: var(--bg); color: var(--text); }
h1 { font-size: 1.5rem; margin-bottom: 0.5rem; }
a { color: var(--accent); }
form { margin: 1.5rem 0; display: grid; gap: 0.75rem; }
label { font-weight: 600; }
label.check { font-weight: 400; }
input[type=text], input[type=password] { font: inherit; padding: 0.5rem; border: 1px solid var(--border);
  border-radius: 4px; background: var(--bg); color: var(--text); }
input[aria-invalid=true] { border: 2px solid var(--error); }
button { font: inherit; padding: 0.6rem 1rem; background: var(--accent); color: var(--on-accent); border: 0;
         border-radius: 4px; cursor: pointer; }
button.secondary { background: transparent; color: var(--accent); border: 1px solid var(--accent); }
.error { color: var(--error); font-weight: 600; }
.notice { padding: 0.75rem; border-left: 4px solid var(--accent); background: var(--notice-bg); color: var(--text); }
.hint { color: var(--muted); }
code, .codes { font-family: ui-monospace, monospace; font-size: 1.05rem; }
figure.key { margin: 0; }
.codes { columns: 2; list-style: none; padding: 0; }
.actions { list-style: none; padding: 0; display: flex; gap: 1.5rem; flex-wrap: wrap; }
[hidden] { display: none !important; }
dl.key { display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1rem; margin: 0.5rem 0; }
dl.key dt { font-weight: 600; }
dl.key dd { margin: 0; }
ul.keys { list-style: none; padding: 0; }
ul.keys > li { border-top: 1px solid var(--border); padding: 0.5rem 0; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 0.5rem; }
img.qr { width: 14rem; height: 14rem; image-rendering: pixelated; background: #fff; }
"""
"""Colours are custom properties, a light and a dark palette; ``tests/unit/web/test_pages_html.py`` computes
the WCAG contrast of every text/background pair of both (at least 4.5:1; 3:1 for input borders)."""


def wants_html(request: web.BaseRequest, method: str | None = None) -> bool:
    """Browsers navigating (GET/HEAD asking for HTML) get redirects and pages; everything else gets JSON."""
    return (method or request.method) in ("GET", "HEAD") and "text/html" in request.headers.get("Accept", "")


SCRIPT_POLICY = "script-src 'self'; connect-src 'self'; require-trusted-types-for 'script'; "
"""What a page with the gateway's script adds to its policy: scripts and requests to its own origin only."""


def csp(form_targets: str = "", *, script: bool = False) -> str:
    return (
        f"default-src 'none'; {SCRIPT_POLICY if script else ''}style-src 'self'; img-src 'self' data:; "
        f"form-action 'self'{(' ' + form_targets) if form_targets else ''}; frame-ancestors 'none'; base-uri 'none'"
    )


def page(
    prefix: str,
    allowed_hosts: tuple[str, ...],
    title: str,
    body: str,
    *,
    status: int = 200,
    script: Script | None = None,
) -> web.Response:
    """A full page. ``body`` is trusted markup built with ``escape``d values; ``title`` is escaped here.

    Forms may post to ourselves and to the hosts redirects may go to (``redirects.allowed_hosts``). With
    ``script`` (its URL and integrity digest), the page loads it, deferred, and its policy allows it.
    """
    stylesheet = prefix + "/static/gateway.css"
    form_targets = " ".join(f"https://{host}" for host in allowed_hosts)
    tag = (
        f'<script src="{escape(script[0])}" integrity="{escape(script[1])}" defer></script>'
        if script is not None
        else ""
    )
    document = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="stylesheet" href="{escape(stylesheet)}">{tag}</head>'
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>\n"
    )
    return web.Response(
        status=status,
        text=document,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": csp(form_targets, script=script is not None),
            "X-Frame-Options": "DENY",
            # also on pages the proxy serves (refusals, 502/503/504), outside the gateway routes' middleware
            **SECURITY_HEADERS,
        },
    )


def paragraph(text: str, css_class: str = "") -> str:
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<p{attribute}>{escape(text)}</p>"


def error(element_id: str, text: str) -> str:
    """An error message: announced when it appears (``role="alert"``) and named by ``id`` so the fields it is
    about can point at it (``field(..., error_id=...)``)."""
    return f'<p id="{escape(element_id)}" class="error" role="alert">{escape(text)}</p>'


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


def field(
    name: str, label: str, *, kind: str = "text", autocomplete: str = "off", extra: str = "", error_id: str = ""
) -> str:
    """A labelled input; with ``error_id`` it is marked invalid and described by that error message."""
    invalid = f' aria-invalid="true" aria-describedby="{escape(error_id)}"' if error_id else ""
    return (
        f'<label for="{escape(name)}">{escape(label)}</label>'
        f'<input id="{escape(name)}" name="{escape(name)}" type="{escape(kind)}" autocomplete="{escape(autocomplete)}"'
        f" required{invalid} {extra}>"
    )


def checkbox(name: str, label: str, *, field_id: str = "") -> str:
    """A labelled checkbox, unticked: ticked, the form sends ``name=1``. ``field_id`` (``name`` by default) tells
    apart two boxes of one name on a page, one per form."""
    field_id = field_id or name
    return (
        f'<label class="check" for="{escape(field_id)}"><input id="{escape(field_id)}" name="{escape(name)}" '
        f'type="checkbox" value="1"> {escape(label)}</label>'
    )


def form(action: str, fields: str, submit: str, *, css_class: str = "") -> str:
    button_class = f' class="{css_class}"' if css_class else ""
    return (
        f'<form method="post" action="{escape(action)}">{fields}'
        f'<button type="submit"{button_class}>{escape(submit)}</button></form>'
    )


Link = tuple[str, str]
"""Where a page offers to go next: (href, text)."""

BACK_TO_APP: Link = ("/", "Back to the application")


def actions(links: Sequence[Link]) -> str:
    """The ways on from a message page, as a list of links (nothing when there are none)."""
    if not links:
        return ""
    items = "".join(f'<li><a href="{escape(href)}">{escape(text)}</a></li>' for href, text in links)
    return f'<ul class="actions">{items}</ul>'


def wait_in_words(seconds: float) -> str:
    """``Retry-After`` as a person reads it: "Try again in 45 seconds", "in 2 minutes", "in 1 hour 5 minutes".
    Rounded up, so the wait it names is never shorter than the real one."""
    whole = max(1, math.ceil(seconds))
    if whole < 60:
        return f"Try again in {_count(whole, 'second')}."
    minutes = math.ceil(whole / 60)
    if minutes < 60:
        return f"Try again in {_count(minutes, 'minute')}."
    hours, rest = divmod(minutes, 60)
    return f"Try again in {_count(hours, 'hour')}" + (f" {_count(rest, 'minute')}." if rest else ".")


def duration(seconds: float) -> str:
    """A span as a person reads it, in its largest whole unit, rounded down (never promising more than is true):
    "30 days", "12 hours", "5 minutes"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            return _count(int(seconds // size), unit)
    return _count(max(1, int(seconds)), "second")


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"


def message_page(
    prefix: str,
    allowed_hosts: tuple[str, ...],
    status: int,
    title: str,
    text: str,
    *,
    links: Sequence[Link] = (BACK_TO_APP,),
    wait: float | None = None,
    advice: str = "",
) -> web.Response:
    """A page with one message, styled like the rest (used for errors, refusals and confirmations): for an error
    (status 400 and up) the message is an alert; ``wait`` (seconds, the ``Retry-After``) is said in words, then
    ``advice``; ``links`` offer a way on (by default, back to the application)."""
    message = " ".join(part for part in (text, wait_in_words(wait) if wait is not None else "", advice) if part)
    body = error("message", message) if status >= 400 else paragraph(message)
    return page(prefix, allowed_hosts, title, body + actions(links), status=status)
