"""Reused forward-auth decisions behind a REAL nginx: the shipped config/nginx.conf, and the auth location
ingress-nginx renders from config/ingress-nginx.yaml's annotations, with the gateway's ``forward_auth.cache_ttl`` on.

Each test starts, on free loopback ports: the gateway in-process (forward-auth only), the bundled demo app (whose
``/api/whoami`` echoes the identity headers it receives) and nginx. How often nginx asked the gateway is read from the
gateway's own metric sample (``route="forward_auth"``), so a test sees whether an answer came from nginx's cache.

ingress-nginx itself needs a cluster: its auth location is rebuilt here as its template (``nginx.tmpl``) renders
the annotations (``auth-cache-key`` as the key, prefixed with the host and auth path, which the controller hashes;
``auth-cache-duration`` as ``proxy_cache_valid``; ``auth-response-headers``; X-Forwarded-For ``$remote_addr``), from
the values in the YAML: a stand-in for the controller, not the controller.

Time: the gateway's clock is injected (FakeClock) where only the gateway's sense of time matters. Two properties are
about how long nginx keeps an entry, which nginx measures on the wall clock (X-Accel-Expires, whole seconds): there
the gateway is given the wall clock too, so that both count the same seconds, and the waits are kept to about two
seconds (cache_ttl 2, or a max_age three seconds after the step-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from yarl import URL

from mfa_gateway.core.session import Session, seal
from mfa_gateway.demo_app import create_demo_app
from mfa_gateway.runtime import Runtime
from mfa_gateway.web.app import create_app
from mfa_gateway.web.server import start_site
from tests.helpers.gateway import FakeClock, make_runtime, make_settings
from tests.helpers.servers import bound_port, on_a_free_port, require_binary
from tests.system.test_forward_auth_servers import (
    IDENTITY_HEADERS,
    INGRESS,
    NGINX_CONF,
    PREFIX,
    SESSION_COOKIE,
    ProxyProcess,
    launch,
    start_nginx,
)

WHOAMI = "/api/whoami"
RULES: list[dict[str, Any]] = [
    {"name": "public", "action": "bypass", "path": "^/public(/|$)"},
    {"name": "whoami", "action": "mfa", "path": "^/api/whoami$"},
]
Clock = Callable[[], float]


# --- ingress-nginx's auth location, as its template renders the example's annotations -----------------------------


def ingress_annotations() -> dict[str, str]:
    documents = [d for d in yaml.safe_load_all(INGRESS.read_text(encoding="utf-8")) if d is not None]
    (app,) = [d for d in documents if d["kind"] == "Ingress" and d["metadata"]["name"] == "app"]
    prefix = "nginx.ingress.kubernetes.io/"
    return {k.removeprefix(prefix): v for k, v in app["metadata"]["annotations"].items() if k.startswith(prefix)}


def ingress_config(root: Path, listen: int, gateway: int, app: int) -> str:
    """nginx.tmpl's auth location and protected location for config/ingress-nginx.yaml's annotations (the parts
    that decide what is cached and what the app receives), on loopback."""
    notes = ingress_annotations()
    auth_url = URL(notes["auth-url"])
    assert auth_url.path == f"{PREFIX}/auth"
    durations = "\n".join(f"proxy_cache_valid {d.strip()};" for d in notes["auth-cache-duration"].split(","))
    names = [name.strip() for name in notes["auth-response-headers"].split(",")]
    response_headers = "\n".join(
        f"auth_request_set $auth_header_{n} $upstream_http_{name.lower().replace('-', '_')};\n"
        f"proxy_set_header '{name}' $auth_header_{n};"
        for n, name in enumerate(names)
    )
    always = " always" if notes.get("auth-always-set-cookie") == "true" else ""
    return f"""
worker_processes 1;
pid {root}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/lib/body; proxy_temp_path {root}/lib/proxy; fastcgi_temp_path {root}/lib/fastcgi;
    uwsgi_temp_path {root}/lib/uwsgi; scgi_temp_path {root}/lib/scgi;
    proxy_cache_path {root}/ram/auth levels=1:2 keys_zone=auth_cache:10m max_size=128m inactive=30m use_temp_path=off;
    server {{
        listen 127.0.0.1:{listen};
        location = /_external-auth {{
            internal;
            set $cache_key '127.0.0.1:{listen}/_external-auth{notes["auth-cache-key"]}';
            proxy_cache auth_cache;
            {durations}
            proxy_cache_key "$cache_key";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-Proto "";
            proxy_set_header Host {auth_url.host};
            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_buffering on;
            proxy_http_version 1.1;
            proxy_pass http://127.0.0.1:{gateway}{auth_url.path};
        }}
        location @signin {{
            internal;
            add_header Set-Cookie $auth_cookie;
            return 302 https://$host{PREFIX}/challenge;
        }}
        location / {{
            auth_request /_external-auth;
            auth_request_set $auth_cookie $upstream_http_set_cookie;
            add_header Set-Cookie $auth_cookie{always};
            {response_headers}
            error_page 401 = @signin;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_pass http://127.0.0.1:{app};
        }}
    }}
}}
"""


def start_ingress_nginx(root: Path, listen: int, gateway: int, app: int) -> ProxyProcess:
    binary = require_binary("nginx", "nginx")
    for sub in ("logs", "lib", "ram"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(ingress_config(root, listen, gateway, app), encoding="utf-8")
    main = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")  # as start_nginx: workers reach tmp_path
    args = [binary, "-p", str(root), "-c", str(conf), "-e", str(root / "logs" / "error.log"), "-g", main]
    return launch(args, listen, root / "output.log")


PROXIES: dict[str, Callable[[Path, int, int, int], ProxyProcess]] = {
    "nginx.conf": start_nginx,
    "ingress-nginx": start_ingress_nginx,
}


# --- the stack -----------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    identity: dict[str, str]
    set_cookie: str | None
    sent: float  # when the request left: the decision came after it
    at: float = field(default_factory=time.monotonic)  # when the answer had arrived: the decision came before it


@dataclass
class CacheStack:
    port: int
    runtime: Runtime
    clock: Clock
    http: aiohttp.ClientSession
    elsewhere: aiohttp.ClientSession  # a client at 127.0.0.2

    def asked(self) -> int:
        """How many forward-auth questions the gateway has answered."""
        text = self.runtime.metrics.exposition().decode()
        found = re.search(r'^mfa_gateway_request_duration_seconds_count\{route="forward_auth"\} (\S+)$', text, re.M)
        return int(float(found.group(1))) if found else 0

    def session(self, user: str, **changes: Any) -> Session:
        """``user``'s session, signed in and stepped up now unless ``changes`` say otherwise."""
        now = self.clock()
        started = Session.start(user, ("pwd", "otp"), now=now, ttl=3600, auth_time=now, mfa_time=now)
        return dataclasses.replace(started, **changes)

    def cookie(self, session: Session) -> dict[str, str]:
        return {SESSION_COOKIE: seal(session, self.runtime.keys.session_keyring)}

    async def whoami(
        self, cookies: dict[str, str] | None = None, *, path: str = WHOAMI, elsewhere: bool = False
    ) -> Reply:
        headers = {"Accept": "application/json"}
        if cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
        client = self.elsewhere if elsewhere else self.http
        url = URL(f"http://127.0.0.1:{self.port}{path}", encoded=True)
        sent = time.monotonic()
        async with client.get(url, headers=headers, allow_redirects=False) as response:
            text = await response.text()
            seen: dict[str, str] = {}
            if response.status in (200, 401) and path == WHOAMI and "identityHeaders" in text:
                seen = json.loads(text)["identityHeaders"]
            return Reply(response.status, seen, response.headers.get("Set-Cookie"), sent)


StackFactory = Callable[..., Awaitable[CacheStack]]


@pytest.fixture(params=sorted(PROXIES))
def proxy_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def start_stack(proxy_name: str, tmp_path: Path) -> AsyncIterator[StackFactory]:
    """Starts gateway (with cache_ttl), demo app and nginx (either config) on demand; stops everything afterwards."""
    async with contextlib.AsyncExitStack() as cleanup:

        async def start(
            *, ttl: int = 60, rules: list[dict[str, Any]] = RULES, clock: Clock | None = None
        ) -> CacheStack:
            settings = make_settings(
                tmp_path / "gateway",
                {
                    "trusted_proxies": ["127.0.0.1/32"],
                    "policy": {"default": "mfa", "rules": rules},
                    "forward_auth": {"cache_ttl": ttl},
                },
            )
            runtime, _ = make_runtime(settings, clock or FakeClock())
            ports = []
            for application in (create_app(runtime), create_demo_app({"alice": "unused password"})):
                runner = await start_site(application, "127.0.0.1", 0)
                cleanup.push_async_callback(runner.cleanup)
                ports.append(bound_port(runner))
            gateway_port, app_port = ports
            clients = []
            for address in ("127.0.0.1", "127.0.0.2"):
                connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
                client = aiohttp.ClientSession(
                    connector=connector, cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=20)
                )
                cleanup.push_async_callback(client.close)
                clients.append(client)
            start_proxy = PROXIES[proxy_name]
            proxy = await asyncio.to_thread(
                on_a_free_port, lambda port: start_proxy(tmp_path / "proxy", port, gateway_port, app_port)
            )
            cleanup.push_async_callback(asyncio.to_thread, proxy.stop)
            return CacheStack(proxy.port, runtime, clock or runtime.clock, clients[0], clients[1])

        yield start


def user_of(reply: Reply) -> str | None:
    return reply.identity.get("remote-user") or None


# --- the properties ------------------------------------------------------------------------------------------------


async def test_a_reused_decision_never_reaches_the_gateway(start_stack: StackFactory) -> None:
    """carol's first request is decided by the gateway; the next ones, within the reuse time, are answered by nginx
    alone, and the app still receives carol's identity headers from the kept answer."""
    stack = await start_stack()
    carol = stack.cookie(stack.session("carol", email="carol@example.test"))
    first = await stack.whoami(carol)
    assert first.status in (200, 401) and user_of(first) == "carol", first
    asked = stack.asked()
    for _ in range(5):
        again = await stack.whoami(carol)
        assert user_of(again) == "carol" and again.identity["remote-email"] == "carol@example.test", again
        for name in IDENTITY_HEADERS.user:
            assert again.identity[name.lower()] == "carol", again
    assert stack.asked() == asked, "a reused decision reached the gateway"


async def test_another_user_never_receives_a_kept_identity(start_stack: StackFactory) -> None:
    """carol and dave, each with their own session, ask in turn: each always gets their own identity, each answer
    kept apart (the gateway decides once per user)."""
    stack = await start_stack()
    people = {user: stack.cookie(stack.session(user)) for user in ("carol", "dave")}
    before = stack.asked()
    for _ in range(3):
        for user, cookies in people.items():
            reply = await stack.whoami(cookies)
            assert user_of(reply) == user, (user, reply)
    assert stack.asked() - before == len(people)


async def test_an_anonymous_request_is_never_served_from_the_cache(start_stack: StackFactory) -> None:
    """With carol's answer kept, a request without credentials (on the same route, from the same address) is asked
    of the gateway every time and refused; a bypass route's anonymous answer is never kept either."""
    stack = await start_stack()
    carol = stack.cookie(stack.session("carol"))
    assert user_of(await stack.whoami(carol)) == "carol"
    for _ in range(3):
        before = stack.asked()
        anonymous = await stack.whoami()
        assert anonymous.status in (302, 401) and user_of(anonymous) is None, anonymous
        assert stack.asked() == before + 1
        public = await stack.whoami(path="/public")
        assert public.status == 200 and stack.asked() == before + 2


async def test_a_client_elsewhere_is_decided_for_its_own_address(start_stack: StackFactory) -> None:
    """A networks rule denies 127.0.0.2: with carol's answer kept for 127.0.0.1, her cookie from 127.0.0.2 is still
    denied, every time (the client address is in the key)."""
    stack = await start_stack(rules=[{"name": "no", "action": "deny", "networks": ["127.0.0.2/32"]}, *RULES])
    carol = stack.cookie(stack.session("carol"))
    assert user_of(await stack.whoami(carol)) == "carol"
    for _ in range(3):
        assert (await stack.whoami(carol, elsewhere=True)).status == 403
        assert user_of(await stack.whoami(carol)) == "carol"


async def test_a_revoked_session_stops_passing_within_the_ttl(start_stack: StackFactory) -> None:
    """cache_ttl 2 (wall clock: nginx's expiry is): carol's answer is kept, her session is revoked, and nginx keeps
    answering from its cache at most 2 s after it first asked; from then on every answer is a refusal. (nginx asked
    before the first answer arrived, and decided each later request after it was sent: those are the times
    compared, so a request straddling the bound cannot fail the test, nor a late pass go unseen.)"""
    stack = await start_stack(ttl=2, clock=time.time)
    session = stack.session("carol")
    carol = stack.cookie(session)
    first = await stack.whoami(carol)
    assert user_of(first) == "carol"
    filled = first.at
    await stack.runtime.revocations.revoke_session(session)
    replies = []
    while time.monotonic() - filled < 3.5:
        replies.append(await stack.whoami(carol))
        await asyncio.sleep(0.05)
    passed = [reply.sent - filled for reply in replies if user_of(reply) == "carol"]
    assert passed, "the kept answer was not used at all after the revocation"
    assert max(passed) <= 2.0, f"a revoked session passed {max(passed):.2f} s after nginx asked (ttl 2)"
    assert all(user_of(reply) is None for reply in replies if reply.sent - filled > 2.0)


async def test_a_step_up_freshness_limit_is_never_exceeded_through_the_cache(start_stack: StackFactory) -> None:
    """A rule asks for MFA at most 3 s old (wall clock, as nginx's expiry): carol stepped up 0.5 s before asking.
    Whether nginx answers from its cache or asks again, carol passes only while her MFA is at most 3 s old, then is
    sent to the challenge, whatever cache_ttl (60) says."""
    fresh = [{"name": "whoami", "action": "mfa", "path": "^/api/whoami$", "max_age": 3}]
    stack = await start_stack(rules=fresh, clock=time.time)
    stepped_up = time.time() - 0.5
    carol = stack.cookie(stack.session("carol", mfa_time=stepped_up))
    offset = time.time() - time.monotonic()  # reply times are monotonic: the MFA time on the same scale
    replies = []
    while time.monotonic() + offset - stepped_up < 4.5:
        replies.append(await stack.whoami(carol))
        await asyncio.sleep(0.05)
    # Each request was decided after it was sent: its MFA was at least this old then.
    passed = [reply.sent + offset - stepped_up for reply in replies if user_of(reply) == "carol"]
    assert passed and max(passed) <= 3.0, f"carol passed with an MFA {max(passed):.2f} s old (max_age 3)"
    assert replies[-1].status in (302, 401) and user_of(replies[-1]) is None


async def test_an_answer_refreshing_the_cookie_is_never_kept(start_stack: StackFactory) -> None:
    """carol's cookie was last seen two minutes ago: each answer re-seals it (Set-Cookie for her browser), and is
    never kept, so nginx asks again each time and never replays her Set-Cookie; dave, asking in between, never
    gets it. With the refreshed cookie her next answers are kept."""
    stack = await start_stack()
    now = stack.clock()
    session = stack.session("carol", last_seen=now - 120)
    stale = stack.cookie(session)
    dave = stack.cookie(stack.session("dave"))
    refreshed = None
    for _ in range(3):
        before = stack.asked()
        reply = await stack.whoami(stale)
        assert user_of(reply) == "carol" and reply.set_cookie and SESSION_COOKIE in reply.set_cookie, reply
        assert stack.asked() == before + 1
        refreshed = reply.set_cookie.split(";", 1)[0].split("=", 1)[1]
        other = await stack.whoami(dave)
        assert user_of(other) == "dave" and other.set_cookie is None, other
    assert refreshed is not None
    kept = await stack.whoami({SESSION_COOKIE: refreshed})
    asked = stack.asked()
    again = await stack.whoami({SESSION_COOKIE: refreshed})
    assert user_of(kept) == user_of(again) == "carol" and stack.asked() == asked


# --- the shipped files ---------------------------------------------------------------------------------------------


def test_the_shipped_configs_keep_only_what_the_gateway_marks_under_the_same_key() -> None:
    """config/nginx.conf and config/ingress-nginx.yaml key their caches alike (the tests above run both), and
    neither keeps an answer the gateway did not mark: nginx.conf has no proxy_cache_valid, no proxy_ignore_headers,
    no stale answers; the ingress example keeps 200s for 0 s unless the gateway says otherwise."""
    nginx = "\n".join(line.split("#", 1)[0] for line in NGINX_CONF.read_text(encoding="utf-8").splitlines())
    (key,) = re.findall(r'proxy_cache_key "([^"]+)";', nginx)
    notes = ingress_annotations()
    assert notes["auth-cache-key"] == key
    assert notes["auth-cache-duration"] == "200 0s"
    for directive in ("proxy_cache_valid", "proxy_ignore_headers", "proxy_cache_use_stale", "proxy_no_cache"):
        assert directive not in nginx, directive
    for part in ("$request_method", "$scheme://$http_host$request_uri", "$http_cookie", "$http_authorization"):
        assert part in key, part
    assert key.endswith("|$remote_addr")
