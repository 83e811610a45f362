"""A small "legacy" web application for the demo and the browser tests: its own login form and session cookie.

It knows nothing about MFA. The gateway is put in front of it and intercepts its login: a successful sign-in here is
always ``303 See Other`` plus ``Set-Cookie: legacy_session=...``; a failed one is a ``200`` re-render of the form with
no cookie. Sessions live in memory and die with the process. No JavaScript anywhere; one tiny stylesheet.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from html import escape

from aiohttp import WSMsgType, web

COOKIE = "legacy_session"
MAX_SLOW_MS = 30_000
IDENTITY_PREFIXES = (
    "x-auth-",
    "remote-",
    "x-forwarded-",
    "forwarded",
    "x-real-ip",
    "x-original-",
    "x-rewrite-",
    "x-http-method",
    "x-method-override",
)
"""Headers whoami echoes (with ``_`` read as ``-``, as CGI/WSGI servers do), so tests see what reached the app."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
}
STYLESHEET = """\
body { font-family: sans-serif; max-width: 40rem; margin: 2rem auto; color: #222; }
nav a, nav form { margin-right: 1rem; display: inline; }
label { display: block; margin-top: .5rem; }
.error { color: #a00; }
"""

SESSIONS = web.AppKey("sessions", dict[str, str])
USERS = web.AppKey("users", dict[str, str])


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this site ("/x", not "//host", "/\\host" or a URL), else "/"."""
    if not value or not value.startswith("/") or value[1:2] in ("/", "\\"):
        return "/"
    if "\\" in value or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        return "/"  # browsers strip tabs/newlines and read "\" as "/", which could turn this into "//host"
    return value


def current_user(request: web.Request) -> str | None:
    session_id = request.cookies.get(COOKIE)
    return request.app[SESSIONS].get(session_id) if session_id else None


def page(title: str, body: str, *, status: int = 200) -> web.Response:
    """A whole HTML page; ``title`` is escaped here, ``body`` must already be safe HTML."""
    text = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)} - Acme Legacy App</title>\n"
        '<link rel="stylesheet" href="/static/app.css">\n</head>\n<body>\n'
        '<nav><a href="/">Home</a><a href="/admin">Admin</a><a href="/reports">Reports</a>'
        '<a href="/public">Public</a></nav>\n'
        f"{body}\n</body>\n</html>\n"
    )
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def require_login(request: web.Request) -> str:
    user = current_user(request)
    if user is None:
        raise web.HTTPFound(f"/login?next={request.path}")
    return user


def login_form(next_path: str, *, username: str = "", error: str | None = None) -> web.Response:
    message = f'<p class="error">{escape(error)}</p>\n' if error else ""
    return page(
        "Sign in",
        "<h1>Sign in</h1>\n"
        f"{message}"
        '<form method="post" action="/login">\n'
        f'<input type="hidden" name="next" value="{escape(next_path)}">\n'
        '<label for="username">Username</label>\n'
        f'<input id="username" name="username" autocomplete="username" value="{escape(username)}" required>\n'
        '<label for="password">Password</label>\n'
        '<input id="password" name="password" type="password" autocomplete="current-password" required>\n'
        '<p><button type="submit">Sign in</button></p>\n</form>',
    )


async def home(request: web.Request) -> web.Response:
    user = current_user(request)
    if user is None:
        status = '<p>You are not signed in.</p>\n<p><a href="/login">Sign in</a></p>'
    else:
        status = (
            f"<p>Signed in as {escape(user)}.</p>\n"
            '<form method="post" action="/logout"><button type="submit">Sign out</button></form>'
        )
    return page("Home", f"<h1>Acme Legacy App</h1>\n{status}")


async def login_page(request: web.Request) -> web.Response:
    return login_form(safe_next(request.query.get("next")))


async def login_submit(request: web.Request) -> web.Response:
    form = await request.post()
    fields = {name: value if isinstance(value := form.get(name), str) else "" for name in ("username", "password")}
    next_value = form.get("next")
    next_path = safe_next(next_value if isinstance(next_value, str) else None)
    username, password = fields["username"], fields["password"]
    users = request.app[USERS]
    # Compare against something even for unknown users, so timing does not tell which usernames exist.
    expected = users.get(username, secrets.token_urlsafe(16))
    if username not in users or not hmac.compare_digest(password.encode(), expected.encode()):
        return login_form(next_path, username=username, error="Invalid username or password.")
    sessions = request.app[SESSIONS]
    old = request.cookies.get(COOKIE)
    if old:
        sessions.pop(old, None)  # a fresh id on every sign-in: no session fixation
    session_id = secrets.token_urlsafe(32)
    sessions[session_id] = username
    response = see_other(next_path)
    response.set_cookie(COOKIE, session_id, path="/", httponly=True, samesite="Lax")
    return response


async def logout(request: web.Request) -> web.Response:
    session_id = request.cookies.get(COOKIE)
    if session_id:
        request.app[SESSIONS].pop(session_id, None)
    response = see_other("/")
    response.del_cookie(COOKIE, path="/", httponly=True, samesite="Lax")
    return response


async def admin(request: web.Request) -> web.Response:
    user = require_login(request)
    return page("Admin", f"<h1>Admin area</h1>\n<p>Signed in as {escape(user)}</p>")


async def reports(request: web.Request) -> web.Response:
    user = require_login(request)
    return page("Reports", f"<h1>Reports</h1>\n<p>Signed in as {escape(user)}</p>\n<p>No reports yet.</p>")


async def public(request: web.Request) -> web.Response:
    return page("Public", "<h1>Public page</h1>\n<p>Anyone can read this.</p>")


async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(text=STYLESHEET, content_type="text/css", charset="utf-8")


async def whoami(request: web.Request) -> web.Response:
    identity: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        if key.replace("_", "-").startswith(IDENTITY_PREFIXES):
            identity[key] = f"{identity[key]}, {value}" if key in identity else value
    user = current_user(request)
    return web.json_response({"user": user, "identityHeaders": identity}, status=200 if user else 401)


async def upload(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        digest.update(chunk)
        size += len(chunk)
    return web.json_response({"bytes": size, "sha256": digest.hexdigest()})


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


async def slow(request: web.Request) -> web.Response:
    try:
        delay_ms = int(request.query.get("ms", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="ms must be an integer") from None
    if delay_ms < 0:
        raise web.HTTPBadRequest(text="ms must not be negative")
    await asyncio.sleep(min(delay_ms, MAX_SLOW_MS) / 1000)
    return web.Response(text="ok")


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def create_demo_app(users: Mapping[str, str]) -> web.Application:
    """The legacy app for ``users`` (username -> password), with an empty in-memory session store."""
    app = web.Application()
    app[USERS] = dict(users)
    app[SESSIONS] = {}
    app.on_response_prepare.append(add_security_headers)
    app.router.add_routes(
        [
            web.get("/", home),
            web.get("/login", login_page),
            web.post("/login", login_submit),
            web.post("/logout", logout),
            web.get("/admin", admin),
            web.get("/reports", reports),
            web.get("/public", public),
            web.get("/static/app.css", stylesheet),
            web.get("/api/whoami", whoami),
            web.post("/upload", upload),
            web.get("/ws", echo),
            web.get("/slow", slow),
        ]
    )
    return app


def main() -> None:
    """Run the legacy app on its own, for manual use."""
    parser = argparse.ArgumentParser(description="Acme Legacy App: a demo web app with its own login.")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--user", default="demo")
    parser.add_argument("--password", default="demo-password")
    args = parser.parse_args()
    web.run_app(create_demo_app({args.user: args.password}), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
