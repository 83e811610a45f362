"""Server-rendered HTML: one layout, every interpolated value escaped, no script anywhere.

Pages work without JavaScript, label every input, and are served under a Content-Security-Policy that allows
nothing but our own stylesheet, data: images (the QR code), and form posts to ourselves and to the hosts in
``redirects.allowed_hosts`` over https (a form's answer may redirect to a return target there, and form-action
covers redirects).
"""

from __future__ import annotations

from html import escape

from aiohttp import web

SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
"""On every response of the gateway's own (its routes, by middleware, and every page it renders)."""

STYLESHEET = """
:root { color-scheme: light dark; --accent: #2457c5; }
body { font: 16px/1.5 system-ui, sans-serif; max-width: 34rem; margin: 3rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.5rem; }
form { margin: 1.5rem 0; display: grid; gap: 0.75rem; }
label { font-weight: 600; }
input[type=text], input[type=password] { font: inherit; padding: 0.5rem; border: 1px solid #888; border-radius: 4px; }
button { font: inherit; padding: 0.6rem 1rem; background: var(--accent); color: #fff; border: 0; border-radius: 4px;
         cursor: pointer; }
button.secondary { background: transparent; color: var(--accent); border: 1px solid var(--accent); }
.error { color: #b00020; font-weight: 600; }
.notice { padding: 0.75rem; border-left: 4px solid var(--accent); background: rgba(36, 87, 197, 0.08); }
code, .codes { font-family: ui-monospace, monospace; font-size: 1.05rem; }
.codes { columns: 2; list-style: none; padding: 0; }
img.qr { width: 14rem; height: 14rem; image-rendering: pixelated; background: #fff; }
footer { margin-top: 3rem; font-size: 0.85rem; color: #666; }
"""


def wants_html(request: web.BaseRequest, method: str | None = None) -> bool:
    """Browsers navigating (GET/HEAD asking for HTML) get redirects and pages; everything else gets JSON."""
    return (method or request.method) in ("GET", "HEAD") and "text/html" in request.headers.get("Accept", "")


def csp(form_targets: str = "") -> str:
    return (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        f"form-action 'self'{(' ' + form_targets) if form_targets else ''}; frame-ancestors 'none'; base-uri 'none'"
    )


def page(prefix: str, allowed_hosts: tuple[str, ...], title: str, body: str, *, status: int = 200) -> web.Response:
    """A full page. ``body`` is trusted markup built with ``escape``d values; ``title`` is escaped here.

    Forms may post to ourselves and to the hosts redirects may go to (``redirects.allowed_hosts``).
    """
    stylesheet = prefix + "/static/gateway.css"
    form_targets = " ".join(f"https://{host}" for host in allowed_hosts)
    document = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="stylesheet" href="{escape(stylesheet)}"></head>'
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>\n"
    )
    return web.Response(
        status=status,
        text=document,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": csp(form_targets),
            "X-Frame-Options": "DENY",
            # also on pages the proxy serves (refusals, 502/503/504), outside the gateway routes' middleware
            **SECURITY_HEADERS,
        },
    )


def paragraph(text: str, css_class: str = "") -> str:
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<p{attribute}>{escape(text)}</p>"


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


def field(name: str, label: str, *, kind: str = "text", autocomplete: str = "off", extra: str = "") -> str:
    return (
        f'<label for="{escape(name)}">{escape(label)}</label>'
        f'<input id="{escape(name)}" name="{escape(name)}" type="{escape(kind)}" autocomplete="{escape(autocomplete)}"'
        f" required {extra}>"
    )


def form(action: str, fields: str, submit: str, *, css_class: str = "") -> str:
    button_class = f' class="{css_class}"' if css_class else ""
    return (
        f'<form method="post" action="{escape(action)}">{fields}'
        f'<button type="submit"{button_class}>{escape(submit)}</button></form>'
    )


def message_page(prefix: str, allowed_hosts: tuple[str, ...], status: int, title: str, text: str) -> web.Response:
    """A page with one message, styled like the rest (used for errors, refusals and confirmations)."""
    return page(prefix, allowed_hosts, title, paragraph(text), status=status)
