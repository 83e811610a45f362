"""Forward-auth mode behind the REAL nginx (auth_request) and Caddy (forward_auth), using the shipped example configs.

Each test starts, on free loopback ports: the gateway in-process (forward-auth only, no upstream, a FakeClock), the
bundled demo app as the application, and nginx or Caddy with ``config/nginx.conf`` / ``config/Caddyfile`` rendered
into ``tmp_path``. The rendering replaces only the example's addresses, ports and file paths (asserted), so these
tests exercise the very files the documentation points to. Every test runs once through each proxy.

The Traefik and ingress-nginx examples cannot run here (no binary, no cluster): they are parsed and checked against
the gateway's defaults at the end of this file.

Requests go out with ``yarl.URL(..., encoded=True)`` so that odd paths reach the proxy byte for byte, and cookies
are sent by hand: the gateway's cookie is ``Secure`` + ``__Host-`` and these proxies speak plain HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import yaml
from multidict import CIMultiDict
from yarl import URL

from mfa_gateway import config
from mfa_gateway.demo_app import COOKIE as APP_COOKIE
from mfa_gateway.demo_app import create_demo_app
from mfa_gateway.web.app import create_app
from mfa_gateway.web.server import start_site
from tests.helpers.gateway import FakeClock, add_user, current_code, make_runtime, make_settings
from tests.helpers.servers import bound_port, on_a_free_port, require_binary, start_listening

CONFIG = Path(__file__).resolve().parents[2] / "config"
NGINX_CONF = CONFIG / "nginx.conf"
CADDYFILE = CONFIG / "Caddyfile"
TRAEFIK = CONFIG / "traefik.yml"
INGRESS = CONFIG / "ingress-nginx.yaml"

PREFIX: str = config.Settings.model_fields["prefix"].default
SESSION_COOKIE: str = config.Session().cookie_name
IDENTITY_HEADERS = config.IdentityHeaders()
GATEWAY_PORT = config.Listen().port

PASSWORD = "correct horse battery"
APP_PASSWORD = "legacy app password"
EMAIL = "alice@example.test"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ADMIN_PAGE = "Admin area"

POLICY_RULES: list[dict[str, Any]] = [
    {"name": "public", "action": "bypass", "path": "^/public(/|$)"},
    {"name": "static", "action": "bypass", "path": "^/static/"},
    {"name": "admin", "action": "mfa", "path": "^/admin(/|$)"},
    {"name": "whoami", "action": "mfa", "path": "^/api/whoami$"},
]
WHOAMI_BYPASS_RULES: list[dict[str, Any]] = [
    {"name": "whoami open", "action": "bypass", "path": "^/api/whoami$"},
    *POLICY_RULES,
]

FORGED_IDENTITY = [
    ("Remote-User", "admin"),
    ("remote-user", "root"),
    ("X-Auth-Request-User", "admin"),
    ("X-Auth-User", "admin"),
    ("Remote-Email", "admin@evil.test"),
    ("X-Auth-Request-Email", "admin@evil.test"),
    ("Remote-Groups", "admins"),
    ("Remote_User", "admin"),
    ("X-Forwarded-Uri", "/public"),
    ("X-Forwarded-Method", "GET"),
]


# --- rendering the example configs ---------------------------------------------------------------------------------


def render(template: Path, replacements: Mapping[str, str]) -> str:
    """``template`` with each example value replaced; a value the file no longer contains fails the test."""
    text = template.read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert old in text, f"{template.name} no longer contains {old!r}: update the substitutions in this test"
        text = text.replace(old, new)
    return text


def directives(text: str) -> str:
    """The config without its comments, to check that no system path is left in what the server reads."""
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def nginx_config(root: Path, listen: int, gateway: int, app: int) -> str:
    text = render(
        NGINX_CONF,
        {
            "listen 80;": f"listen 127.0.0.1:{listen};",
            "server 127.0.0.1:9090;": f"server 127.0.0.1:{gateway};",
            "server 127.0.0.1:8080;": f"server 127.0.0.1:{app};",
            "/run/nginx-mfa-gateway.pid": str(root / "nginx.pid"),
            "/run/nginx-mfa-gateway/": f"{root}/ram/",
            "/var/log/nginx/": f"{root}/logs/",
            "/var/lib/nginx/": f"{root}/lib/",
        },
    )
    assert "/var/" not in directives(text) and "/run/" not in directives(text)
    return text


def caddy_config(root: Path, listen: int, gateway: int, app: int) -> str:
    text = render(
        CADDYFILE,
        {
            "http://127.0.0.1:8000": f"http://127.0.0.1:{listen}",
            "127.0.0.1:9090": f"127.0.0.1:{gateway}",
            "127.0.0.1:8080": f"127.0.0.1:{app}",
            "/var/lib/caddy": str(root / "data"),
        },
    )
    assert "/var/" not in directives(text)
    return text


# --- the proxies as processes --------------------------------------------------------------------------------------


@dataclass
class ProxyProcess:
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def launch(args: list[str], port: int, log: Path, env: Mapping[str, str] | None = None) -> ProxyProcess:
    """The proxy, once it listens on ``port``; ``PortTaken`` if another program bound the port first (the caller
    tries another), any other failure to start fails the test with the proxy's output."""
    return ProxyProcess(port, start_listening(args, [port], log, env=env))


def start_nginx(root: Path, listen: int, gateway: int, app: int) -> ProxyProcess:
    binary = require_binary("nginx", "nginx")
    for sub in ("logs", "lib", "ram"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(nginx_config(root, listen, gateway, app), encoding="utf-8")
    # As root (CI), workers would drop to "nobody", which cannot enter pytest's private tmp dirs for request-body
    # buffering; the example itself has no `user` directive.
    main = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    args = [binary, "-p", str(root), "-c", str(conf), "-e", str(root / "logs" / "startup.log"), "-g", main]
    return launch(args, listen, root / "output.log")


def start_caddy(root: Path, listen: int, gateway: int, app: int) -> ProxyProcess:
    binary = require_binary("caddy", "caddy")
    for sub in ("home", "data", "config"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    caddyfile = root / "Caddyfile"
    caddyfile.write_text(caddy_config(root, listen, gateway, app), encoding="utf-8")
    env = {
        **os.environ,
        "HOME": str(root / "home"),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_CONFIG_HOME": str(root / "config"),
    }
    args = [binary, "run", "--config", str(caddyfile), "--adapter", "caddyfile"]
    return launch(args, listen, root / "output.log", env)


PROXIES: dict[str, Callable[[Path, int, int, int], ProxyProcess]] = {
    "nginx": start_nginx,
    "caddy": start_caddy,
}


# --- talking to the stack ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDict[str]
    text: str
    cookies: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    def describe(self) -> str:
        return f"{self.status} Location={self.location!r} body={self.text[:160]!r}"


@dataclass
class Stack:
    """nginx or Caddy on ``port``, in front of the demo app on ``app_port``, asking the gateway."""

    proxy: str
    port: int
    app_port: int
    http: aiohttp.ClientSession
    clock: FakeClock

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def fetch(
        self,
        method: str,
        target: str,
        *,
        cookies: Mapping[str, str] | None = None,
        headers: Iterable[tuple[str, str]] = (),
        browser: bool = False,
        direct: bool = False,
        **body: Any,
    ) -> Reply:
        """One request through the proxy (or straight to the app with ``direct``), never following redirects."""
        sent: list[tuple[str, str]] = [("Accept", BROWSER if browser else "application/json"), *headers]
        if cookies:
            sent.append(("Cookie", "; ".join(f"{name}={value}" for name, value in cookies.items())))
        port = self.app_port if direct else self.port
        url = URL(f"http://127.0.0.1:{port}{target}", encoded=True)
        async with self.http.request(method, url, headers=sent, allow_redirects=False, **body) as response:
            text = await response.text(errors="replace")
            return Reply(
                response.status,
                CIMultiDict(response.headers),
                text,
                {name: morsel.value for name, morsel in response.cookies.items()},
            )

    async def api(self, path: str, body: dict[str, Any], cookie: str | None = None) -> Reply:
        cookies = {SESSION_COOKIE: cookie} if cookie else None
        return await self.fetch("POST", PREFIX + path, cookies=cookies, json=body)

    async def sign_in(self) -> str:
        """alice's first factor through the proxy's /_mfa/ route: the session cookie value."""
        login = await self.api("/api/login", {"username": "alice", "password": PASSWORD})
        assert login.status == 200, login.describe()
        return login.cookies[SESSION_COOKIE]

    async def enrol(self) -> tuple[str, str]:
        """alice signs in and activates TOTP through the proxy: (an MFA session cookie, the TOTP secret)."""
        cookie = await self.sign_in()
        enable = await self.api("/api/mfa/enable", {}, cookie)
        assert enable.status == 200, enable.describe()
        secret: str = enable.json()["data"]["secret"]
        verify = await self.api("/api/mfa/verify", {"token": current_code(secret, self.clock)}, cookie)
        assert verify.status == 200, verify.describe()
        return verify.cookies[SESSION_COOKIE], secret

    async def app_session(self, *, gateway_cookie: str | None = None) -> str:
        """alice's session in the demo app: through the proxy with an MFA cookie, else straight from the app."""
        cookies = {SESSION_COOKIE: gateway_cookie} if gateway_cookie else None
        form = {"username": "alice", "password": APP_PASSWORD, "next": "/admin"}
        login = await self.fetch("POST", "/login", cookies=cookies, direct=gateway_cookie is None, data=form)
        assert login.status == 303, login.describe()
        return login.cookies[APP_COOKIE]

    async def whoami(self, **kwargs: Any) -> dict[str, str]:
        """The identity headers the app received on /api/whoami (it echoes them, signed in to the app or not)."""
        reply = await self.fetch("GET", "/api/whoami", **kwargs)
        assert reply.status in (200, 401) and "identityHeaders" in reply.text, reply.describe()
        identity: dict[str, str] = reply.json()["identityHeaders"]
        return identity


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture(params=sorted(PROXIES))
def proxy_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def start_stack(proxy_name: str, tmp_path: Path) -> AsyncIterator[StackFactory]:
    """Starts gateway + demo app + proxy on demand (the policy varies per test); stops everything afterwards."""
    async with contextlib.AsyncExitStack() as cleanup:

        async def start(rules: list[dict[str, Any]] = POLICY_RULES, **overrides: Any) -> Stack:
            clock = FakeClock()
            settings = make_settings(
                tmp_path / "gateway",
                {"trusted_proxies": ["127.0.0.1/32"], "policy": {"default": "mfa", "rules": rules}, **overrides},
            )
            add_user(settings, "alice", PASSWORD, EMAIL)
            runtime, _ = make_runtime(settings, clock)
            ports = []
            for application in (create_app(runtime), create_demo_app({"alice": APP_PASSWORD})):
                runner = await start_site(application, "127.0.0.1", 0)
                cleanup.push_async_callback(runner.cleanup)
                ports.append(bound_port(runner))
            gateway_port, app_port = ports
            http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=20))
            cleanup.push_async_callback(http.close)
            start_proxy = PROXIES[proxy_name]  # its port is in its config file: a picked one, another if taken
            proxy = await asyncio.to_thread(
                on_a_free_port, lambda port: start_proxy(tmp_path / proxy_name, port, gateway_port, app_port)
            )
            cleanup.push_async_callback(asyncio.to_thread, proxy.stop)
            return Stack(proxy_name, proxy.port, app_port, http, clock)

        yield start


@pytest.fixture
async def stack(start_stack: StackFactory) -> Stack:
    return await start_stack()


def challenge_page(page: str, return_to: str = "/admin") -> str:
    """The relative Location of the gateway's sign-in or MFA page, returning to ``return_to``."""
    return f"{PREFIX}/{page}?{urlencode({'rd': return_to})}"


# --- challenges ----------------------------------------------------------------------------------------------------


async def test_anonymous_browser_is_sent_to_sign_in_and_api_client_gets_401(stack: Stack) -> None:
    """No session on an mfa route: a browser gets 302 to the relative /_mfa/signin?rd=/admin (a page served through
    the same proxy), an API client a 401 JSON with that Location, a POST a 401 too; the app is never asked."""
    browser = await stack.fetch("GET", "/admin", browser=True)
    assert browser.status == 302, browser.describe()
    assert browser.location == challenge_page("signin")

    page = await stack.fetch("GET", browser.location, browser=True)
    assert page.status == 200 and "<form" in page.text and 'action="/_mfa/signin"' in page.text, page.describe()

    api = await stack.fetch("GET", "/admin")
    assert api.status == 401, api.describe()
    assert api.json()["code"] == "unauthenticated"
    assert api.location == challenge_page("signin")

    post = await stack.fetch("POST", "/admin", data={"x": "1"}, browser=True)
    assert post.status == 401, post.describe()


async def test_signed_in_user_without_mfa_is_sent_to_the_challenge(stack: Stack) -> None:
    """A first-factor session (password only) on an mfa route: browser 302 to /_mfa/challenge?rd=/admin, API 401
    mfa_required."""
    cookie = await stack.sign_in()
    browser = await stack.fetch("GET", "/admin", browser=True, cookies={SESSION_COOKIE: cookie})
    assert browser.status == 302, browser.describe()
    assert browser.location == challenge_page("challenge")

    api = await stack.fetch("GET", "/admin?tab=1", cookies={SESSION_COOKIE: cookie})
    assert api.status == 401, api.describe()
    assert api.json()["code"] == "mfa_required"
    assert api.location == challenge_page("challenge", "/admin?tab=1")


async def test_bypass_route_is_served_without_sign_in(stack: Stack) -> None:
    """A bypass rule (^/public) lets an anonymous request through to the app."""
    reply = await stack.fetch("GET", "/public", browser=True)
    assert reply.status == 200 and "Public page" in reply.text, reply.describe()


# --- allowed requests ----------------------------------------------------------------------------------------------


async def test_mfa_user_reaches_admin_and_the_app_sees_the_gateway_identity(stack: Stack) -> None:
    """After login + TOTP through the proxy, alice passes: the app's own login and /admin work, and the app gets
    Remote-User, X-Auth-Request-User, X-Auth-User = alice and both email headers from the gateway."""
    cookie, _ = await stack.enrol()
    app_cookie = await stack.app_session(gateway_cookie=cookie)
    cookies = {SESSION_COOKIE: cookie, APP_COOKIE: app_cookie}

    admin = await stack.fetch("GET", "/admin", browser=True, cookies=cookies)
    assert admin.status == 200 and ADMIN_PAGE in admin.text and "Signed in as alice" in admin.text, admin.describe()

    identity = await stack.whoami(cookies=cookies)
    for name in IDENTITY_HEADERS.user:
        assert identity[name.lower()] == "alice", identity
    for name in IDENTITY_HEADERS.email:
        assert identity[name.lower()] == EMAIL, identity
    for name in IDENTITY_HEADERS.groups:
        assert not identity.get(name.lower()), identity  # alice has no groups: empty or absent
    assert identity["x-forwarded-host"] == stack.host and identity["x-forwarded-proto"] == "http", identity


async def test_bearer_token_from_api_login_passes_the_proxy(stack: Stack) -> None:
    """An API client with the JWT from POST /_mfa/api/login (password + TOTP) reaches an mfa route as alice."""
    _, secret = await stack.enrol()
    stack.clock.advance(30)  # a new time step: the activation code cannot be replayed
    login = await stack.api(
        "/api/login", {"username": "alice", "password": PASSWORD, "mfaToken": current_code(secret, stack.clock)}
    )
    assert login.status == 200, login.describe()
    token = login.json()["token"]
    identity = await stack.whoami(headers=[("Authorization", f"Bearer {token}")])
    assert identity["remote-user"] == "alice", identity


async def test_request_body_reaches_the_app_only_after_mfa(stack: Stack) -> None:
    """A 200 KB upload (buffered by the proxy) reaches the app intact for an MFA session; anonymous gets 401."""
    body = secrets.token_bytes(200_000)
    anonymous = await stack.fetch("POST", "/upload", data=body)
    assert anonymous.status == 401, anonymous.describe()

    cookie, _ = await stack.enrol()
    upload = await stack.fetch("POST", "/upload", data=body, cookies={SESSION_COOKIE: cookie})
    assert upload.status == 200, upload.describe()
    assert upload.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


async def test_refreshed_session_cookie_reaches_the_browser_and_keeps_the_session_alive(stack: Stack) -> None:
    """The session cookie the gateway re-seals on an allowed forward-auth answer (at most once a minute) is passed
    to the client; with it the session outlives the idle timeout counted from the original cookie."""
    cookie, _ = await stack.enrol()
    stack.clock.advance(120)
    reply = await stack.fetch("GET", "/api/whoami", cookies={SESSION_COOKIE: cookie})
    assert reply.json()["identityHeaders"]["remote-user"] == "alice", reply.describe()
    refreshed = reply.cookies.get(SESSION_COOKIE)
    assert refreshed and refreshed != cookie, reply.headers.getall("Set-Cookie", [])

    stack.clock.advance(1700)  # 1820 s after the original cookie's last use, 1700 s after the refreshed one's
    idle = await stack.fetch("GET", "/api/whoami", cookies={SESSION_COOKIE: cookie})
    assert idle.status == 401 and idle.json()["code"] == "unauthenticated", idle.describe()
    alive = await stack.whoami(cookies={SESSION_COOKIE: refreshed})
    assert alive["remote-user"] == "alice", alive


# --- forged headers ------------------------------------------------------------------------------------------------


async def test_forged_identity_headers_never_reach_the_app_on_an_mfa_route(stack: Stack) -> None:
    """alice (MFA) sends Remote-User: admin, X-Auth-User: admin, ... herself: the app sees exactly one value per
    identity header, the gateway's (alice), and none of the client's forward-auth headers."""
    cookie, _ = await stack.enrol()
    identity = await stack.whoami(cookies={SESSION_COOKIE: cookie}, headers=FORGED_IDENTITY)
    for name in IDENTITY_HEADERS.user:
        assert identity[name.lower()] == "alice", identity
    for name in IDENTITY_HEADERS.email:
        assert identity[name.lower()] == EMAIL, identity
    for name in IDENTITY_HEADERS.groups:
        assert not identity.get(name.lower()), identity
    assert "x-forwarded-uri" not in identity and "x-forwarded-method" not in identity, identity
    assert not any("admin" in value or "root" in value for value in identity.values()), identity


async def test_forged_identity_headers_never_reach_the_app_on_a_bypass_route(start_stack: StackFactory) -> None:
    """On a bypass route (here /api/whoami) nobody is signed in and the gateway vouches for no one: every identity
    header a client sends is removed or emptied before the app sees it."""
    stack = await start_stack(WHOAMI_BYPASS_RULES)
    identity = await stack.whoami(headers=FORGED_IDENTITY)
    for name in IDENTITY_HEADERS.all():
        assert not identity.get(name.lower()), identity
    assert "x-forwarded-uri" not in identity and "x-forwarded-method" not in identity, identity
    assert not any("admin" in value or "root" in value for value in identity.values()), identity


async def test_a_client_naming_itself_in_the_trusted_header_stays_anonymous(start_stack: StackFactory) -> None:
    """With identity.source: trusted_header the gateway believes X-Forwarded-User from the proxy, so the shipped
    configs clear a client's copy: "alice" sent by the client is nobody. Believed, she would be sent to her MFA
    challenge (401 mfa_required); cleared, there is no one to challenge (nginx: its own 401 page; Caddy passes the
    gateway's 401 unauthenticated)."""
    stack = await start_stack(identity={"source": "trusted_header"})
    reply = await stack.fetch("GET", "/admin", headers=[("X-Forwarded-User", "alice"), ("x-forwarded-user", "alice")])
    assert reply.status == 401, reply.describe()
    assert "mfa_required" not in reply.text and reply.location != challenge_page("challenge"), reply.describe()
    if reply.headers.get("Content-Type", "").startswith("application/json"):
        assert reply.json()["code"] == "unauthenticated", reply.describe()


async def test_spoofed_forward_auth_headers_do_not_turn_admin_into_public(stack: Stack) -> None:
    """A client's X-Original-URL / X-Forwarded-Uri pointing at the bypass route /public are replaced by the proxy:
    the gateway judges the real request, /admin, even for a client holding a valid app session."""
    app_cookie = await stack.app_session()
    spoofed = [
        ("X-Original-URL", f"http://{stack.host}/public"),
        ("X-Original-Method", "GET"),
        ("X-Forwarded-Uri", "/public"),
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Host", stack.host),
        ("X-Forwarded-Proto", "https"),
    ]
    browser = await stack.fetch("GET", "/admin", browser=True, headers=spoofed, cookies={APP_COOKIE: app_cookie})
    assert browser.status == 302 and browser.location == challenge_page("signin"), browser.describe()
    api = await stack.fetch("GET", "/admin", headers=spoofed, cookies={APP_COOKIE: app_cookie})
    assert api.status == 401 and ADMIN_PAGE not in api.text, api.describe()


# --- the gateway's own routes --------------------------------------------------------------------------------------


async def test_gateway_health_is_reachable_and_its_auth_endpoint_is_not(stack: Stack) -> None:
    """/_mfa/healthz answers through the proxy; /_mfa/auth (the proxy's question, in any spelling) does not answer
    clients: they would learn what the gateway decides about a URL of their choosing."""
    health = await stack.fetch("GET", f"{PREFIX}/healthz")
    assert health.status == 200 and health.json() == {"status": "ok"}, health.describe()

    spoofed = [("X-Original-URL", f"http://{stack.host}/public"), ("X-Forwarded-Uri", "/public")]
    outcomes = {}
    for target in (f"{PREFIX}/auth", f"/{PREFIX}/auth", f"{PREFIX}/%61uth", f"{PREFIX}/auth/", f"{PREFIX}/auth?x=1"):
        outcomes[target] = await stack.fetch("GET", target, headers=spoofed)
    described = {target: reply.describe() for target, reply in outcomes.items()}
    for reply in outcomes.values():
        assert reply.status == 404, described
        assert not any(name in reply.headers for name in IDENTITY_HEADERS.all()), described


# --- path tricks ---------------------------------------------------------------------------------------------------

PATH_TRICKS = (
    "/admin",
    "/admin/",
    "/admin?x=1",
    "/Admin",
    "/ADMIN",
    "/admin/../admin",
    "/./admin",
    "//admin",
    "///admin",
    "/%61dmin",
    "/%2561dmin",
    "/admin%2f",
    "/admin%2F",
    "/%2fadmin",
    "/admin;",
    "/admin;x=1",
    "/admin%3b",
    "/admin%00",
    "/admin%20",
    "/admin.",
    "/public/../admin",
    "/public/..%2fadmin",
    "/public/%2e%2e/admin",
    "/public/.%2e/admin",
    "/public%2f..%2fadmin",
    "/public/..;/admin",
    "/public;/../admin",
    "/public/%2e%2e%5cadmin",
    "/public/%252e%252e/admin",
    "/public/..%252fadmin",
    "/static/../admin",
)


async def test_path_tricks_never_serve_the_admin_page_without_mfa(stack: Stack) -> None:
    """With a valid app session but no MFA, no spelling of /admin (dot segments, doubled slashes, %-encoding,
    encoded slashes, path parameters, a bypass prefix) gets the app's admin page through the proxy."""
    app_cookie = await stack.app_session()
    control = await stack.fetch("GET", "/admin", direct=True, cookies={APP_COOKIE: app_cookie})
    assert control.status == 200 and ADMIN_PAGE in control.text, "the app session must open /admin on the app itself"

    outcomes = {}
    for target in PATH_TRICKS:
        for browser in (True, False):
            reply = await stack.fetch("GET", target, browser=browser, cookies={APP_COOKIE: app_cookie})
            outcomes[f"{target} ({'browser' if browser else 'api'})"] = reply
    report = "\n".join(f"  {stack.proxy} {target}: {reply.describe()}" for target, reply in outcomes.items())
    served = [target for target, reply in outcomes.items() if reply.status == 200 or ADMIN_PAGE in reply.text]
    assert not served, f"served without MFA: {served}\n{report}"
    for target, reply in outcomes.items():
        if reply.status == 302:
            assert (reply.location or "").startswith(f"{PREFIX}/"), f"{target}\n{report}"


# --- the documentation-only examples -------------------------------------------------------------------------------


def test_nginx_and_caddy_examples_name_every_default_identity_header() -> None:
    """config/nginx.conf and config/Caddyfile overwrite each of the gateway's default identity headers and ask the
    gateway's default forward-auth path (the runnable tests above only look at what the demo app echoes)."""
    nginx, caddy = NGINX_CONF.read_text(encoding="utf-8"), CADDYFILE.read_text(encoding="utf-8")
    assert f"location = {PREFIX}/auth" in nginx and f"auth_request {PREFIX}/auth;" in nginx
    assert f"rewrite {PREFIX}/auth" in caddy and f"handle {PREFIX}/*" in caddy
    for name in IDENTITY_HEADERS.all():
        variable = re.escape(name.lower().replace("-", "_"))
        source = re.search(rf"auth_request_set \$(\w+) \$upstream_http_{variable};", nginx)
        assert source is not None, f"nginx.conf does not read {name} from the gateway's answer"
        assert f"proxy_set_header {name} ${source.group(1)};" in nginx, name
        assert f"request_header {name} {{rp.header.{name}}}" in caddy, name


def test_traefik_example_matches_the_gateway_defaults() -> None:
    """config/traefik.yml: forwardAuth asks {prefix}/auth on the default port, does not trust client X-Forwarded-*,
    passes only credential headers (never X-Original-URL), copies every default identity header and the session
    cookie, and routes {prefix}/ to the gateway."""
    document = yaml.safe_load(TRAEFIK.read_text(encoding="utf-8"))
    http = document["http"]
    forward = http["middlewares"]["mfa-gateway"]["forwardAuth"]
    assert forward["address"] == f"http://mfa-gateway:{GATEWAY_PORT}{PREFIX}/auth"
    assert forward["trustForwardHeader"] is False
    assert {"Accept", "Authorization", "Cookie"} <= set(forward["authRequestHeaders"])
    assert not any(name.lower().startswith("x-original") for name in forward["authRequestHeaders"])
    assert forward["authResponseHeaders"] == list(IDENTITY_HEADERS.all())
    assert forward["addAuthCookiesToResponse"] == [SESSION_COOKIE]

    routers = http["routers"]
    assert f"PathPrefix(`{PREFIX}/`)" in routers["mfa-gateway"]["rule"]
    assert routers["mfa-gateway"]["service"] == "mfa-gateway" and "middlewares" not in routers["mfa-gateway"]
    assert routers["app"]["middlewares"][-1] == "mfa-gateway"
    stripped = http["middlewares"][routers["app"]["middlewares"][0]]["headers"]["customRequestHeaders"]
    assert stripped == {name.replace("-", "_"): "" for name in IDENTITY_HEADERS.all()}
    gateway_url = http["services"]["mfa-gateway"]["loadBalancer"]["servers"][0]["url"]
    assert gateway_url == f"http://mfa-gateway:{GATEWAY_PORT}"


def test_ingress_nginx_example_matches_the_gateway_defaults() -> None:
    """config/ingress-nginx.yaml: the app's Ingress asks {prefix}/auth on the gateway Service, signs in at
    {prefix}/challenge with a relative rd, sets every default identity header and the refreshed cookie; a second
    Ingress routes {prefix} on the same host to the gateway."""
    documents = [d for d in yaml.safe_load_all(INGRESS.read_text(encoding="utf-8")) if d is not None]
    ingresses = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Ingress"}
    assert set(ingresses) == {"app", "mfa-gateway"}

    app, gateway = ingresses["app"], ingresses["mfa-gateway"]
    annotations = app["metadata"]["annotations"]
    namespace = gateway["metadata"]["namespace"]
    prefix = "nginx.ingress.kubernetes.io/"
    auth_url = f"http://mfa-gateway.{namespace}.svc.cluster.local:{GATEWAY_PORT}{PREFIX}/auth"
    assert annotations[prefix + "auth-url"] == auth_url
    assert annotations[prefix + "auth-signin"] == f"https://$host{PREFIX}/challenge?rd=$escaped_request_uri"
    assert annotations[prefix + "auth-response-headers"].split(",") == list(IDENTITY_HEADERS.all())
    assert annotations[prefix + "auth-always-set-cookie"] == "true"

    hosts = {rule["host"] for rule in app["spec"]["rules"]}
    (gateway_rule,) = gateway["spec"]["rules"]
    assert gateway_rule["host"] in hosts
    (path,) = gateway_rule["http"]["paths"]
    assert path["path"] == PREFIX and path["pathType"] == "Prefix"
    assert path["backend"]["service"] == {"name": "mfa-gateway", "port": {"number": GATEWAY_PORT}}
    assert "annotations" not in gateway["metadata"] or prefix + "auth-url" not in gateway["metadata"]["annotations"]
