"""Threat-model gaps closed by test: hashing under load (T-A6) and the ``max_body`` limits of an intercepted login,
its answers above all (T-A5).

Nothing here waits on the wall clock to decide an outcome: the hashes are held in flight by a gate the test opens,
and the bodies sent in pieces pause between them only so that they do arrive in pieces; a correct gateway passes
whatever the timing.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
import pytest
from aiohttp import web

from mfa_gateway.core import backup_codes
from mfa_gateway.web.interception import FAILED_LOGIN_LIMIT
from mfa_gateway.web.server import start_site
from tests.helpers.gateway import add_user
from tests.helpers.servers import bound_port
from tests.helpers.support import eventually, in_pieces
from tests.integration.proxy.conftest import RawResponse, Stack, StackFactory

# -- T-A6: Argon2id under a flood of sign-ins ---------------------------------------------------------------------

MAX_CONCURRENCY = 2
GATE_TIMEOUT = 30.0
"""How long a held hash waits for the gate at most. Only reached when the event loop is blocked (so the test cannot
open the gate): the spy then notes it and opens the gate itself, and the test fails saying so."""
PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-2", "carol": "carol-secret-3", "dave": "dave-secret-4"}


class HashSpy:
    """Wraps the Argon2id calls (in whatever thread they run): records each caller's thread, how many run at once
    and the most that ever did, and holds each one until ``gate`` opens (except on the event loop's own thread,
    where holding would stop the loop that has to open it)."""

    def __init__(self, loop_thread: int) -> None:
        self.loop_thread = loop_thread
        self.gate = threading.Event()
        self.threads: list[int] = []
        self.running = 0
        self.most = 0
        self.timed_out = False
        self._lock = threading.Lock()

    def wrap(self, slow: Callable[..., Any]) -> Callable[..., Any]:
        def spied(*args: Any) -> Any:
            me = threading.get_ident()
            with self._lock:
                self.threads.append(me)
                self.running += 1
                self.most = max(self.most, self.running)
            try:
                if me != self.loop_thread and not self.gate.wait(GATE_TIMEOUT):
                    self.timed_out = True
                    self.gate.set()
                return slow(*args)
            finally:
                with self._lock:
                    self.running -= 1

        return spied


def _alone_in_their_bucket(user: str, codes: list[str]) -> list[str]:
    """The codes no other code of the set shares a lookup bucket with: each costs exactly one hash to check (two
    codes in one bucket, a 1-in-100 chance per code, may cost two)."""
    buckets = Counter(backup_codes.lookup(user, str(backup_codes.normalise(code))) for code in codes)
    return [code for code in codes if buckets[backup_codes.lookup(user, str(backup_codes.normalise(code)))] == 1]


async def _enroll_over_the_api(stack: Stack, user: str) -> list[str]:
    """``user`` signs in over the API, turns MFA on and confirms it: their backup codes."""
    jar = aiohttp.CookieJar(unsafe=True)  # the demo's cookies are not Secure; 127.0.0.1 is an IP host
    async with aiohttp.ClientSession(cookie_jar=jar) as session:

        async def post(path: str, body: dict[str, str]) -> dict[str, Any]:
            async with session.post(stack.url + "/_mfa/api" + path, json=body) as response:
                answer: dict[str, Any] = await response.json()
                assert response.status == 200, answer
                return answer

        await post("/login", {"username": user, "password": PASSWORDS[user]})
        data = (await post("/mfa/enable", {}))["data"]
        await post("/mfa/verify", {"token": stack.code(data["secret"])})
    stack.clock.advance(30)
    codes: list[str] = data["backupCodes"]
    return codes


async def test_a_login_flood_hashes_off_the_loop_two_at_a_time_and_other_requests_go_on(
    make_stack: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T-A6: 13 sign-ins at once (passwords right and wrong, an unknown user, backup codes) with
    ``hashing.max_concurrency`` 2. While the gate holds the hashes in flight: exactly 2 run, every sign-in is queued
    at the pool, none has answered, and a health check and a bypassed app page are still answered. After
    it opens: never more than 2 hashes ran at once, on at most 2 worker threads, none on the event loop's thread,
    and every queued sign-in got its right answer (right passwords and codes in, wrong ones out)."""
    stack = await make_stack(
        {"identity": {"source": "builtin", "upstream_login": None}, "hashing": {"max_concurrency": MAX_CONCURRENCY}}
    )
    for user, password in PASSWORDS.items():
        add_user(stack.settings, user, password)
    codes = _alone_in_their_bucket("dave", await _enroll_over_the_api(stack, "dave"))

    pool = stack.runtime.hashing
    spy = HashSpy(loop_thread=threading.get_ident())
    monkeypatch.setattr(pool._hasher, "matches", spy.wrap(pool._hasher.matches))
    monkeypatch.setattr(pool._hasher, "hash", spy.wrap(pool._hasher.hash))
    asked = 0
    pool_matches = pool.matches

    async def counted(stored_hash: str | None, value: str) -> bool:
        nonlocal asked
        asked += 1
        return await pool_matches(stored_hash, value)

    monkeypatch.setattr(pool, "matches", counted)

    # (user, password, MFA code, expected status, slow hashes it costs)
    flood = [
        *[("alice", PASSWORDS["alice"], None, 200, 1)] * 3,
        ("alice", "not-alices-password", None, 401, 1),
        *[("bob", PASSWORDS["bob"], None, 200, 1)] * 3,
        ("bob", "not-bobs-password", None, 401, 1),
        *[("carol", PASSWORDS["carol"], None, 200, 1)] * 2,
        ("mallory", "no-such-user", None, 401, 1),  # an unknown user costs the dummy hash all the same
        ("dave", PASSWORDS["dave"], codes[0], 200, 2),  # the password, then one backup-code bucket
        ("dave", PASSWORDS["dave"], codes[1], 200, 2),
    ]

    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:

        async def sign_in(user: str, password: str, code: str | None) -> tuple[int, dict[str, Any]]:
            body = {"username": user, "password": password, **({"mfaToken": code} if code else {})}
            async with session.post(stack.url + "/_mfa/api/login", json=body) as response:
                return response.status, await response.json()

        tasks = [asyncio.create_task(sign_in(user, password, code)) for user, password, code, _, _ in flood]
        try:
            await eventually(
                lambda: spy.running >= MAX_CONCURRENCY or spy.loop_thread in spy.threads or spy.timed_out,
                f"{MAX_CONCURRENCY} hashes in flight",
                within=20,
            )
            assert spy.loop_thread not in spy.threads, "Argon2id ran on the event loop's thread"
            assert not spy.timed_out, "the event loop was blocked while a hash ran: the gate could not be opened"
            await eventually(lambda: asked == len(flood), "every sign-in to reach the hashing pool", within=20)

            async with session.get(stack.url + "/_mfa/healthz") as health:
                assert health.status == 200 and (await health.json()) == {"status": "ok"}
            async with session.get(stack.url + "/public") as public:
                assert public.status == 200 and "Public page" in await public.text()

            assert spy.running == MAX_CONCURRENCY and spy.most == MAX_CONCURRENCY
            assert not any(task.done() for task in tasks), "a sign-in answered while its hash was held"
        finally:
            spy.gate.set()
        answers = await asyncio.gather(*tasks)

    assert spy.most == MAX_CONCURRENCY, f"{spy.most} hashes ran at once"
    assert len(spy.threads) == sum(cost for *_, cost in flood)
    assert spy.loop_thread not in spy.threads and len(set(spy.threads)) <= MAX_CONCURRENCY
    for (user, _, _, expected, _), (status, body) in zip(flood, answers, strict=True):
        assert status == expected, (user, status, body)
        if expected == 200:
            assert body["success"] is True and body["user"]["username"] == user and body["token"]
        else:
            assert body["success"] is False and body["code"] == "invalid_credentials"


# -- T-A5: the max_body limits of an intercepted login ------------------------------------------------------------

MAX_BODY = 4096
PAUSE = 0.01
"""Seconds the sized app waits between the pieces of a chunked answer, so that they reach the gateway apart."""
APP_PASSWORD = "app-password"
SIZED_LOGIN = {
    "identity": {
        "upstream_login": {
            "login_path": "/login",
            "session_cookie": "legacy_session",
            "success_status": [303],
            "max_body": MAX_BODY,
        }
    }
}
RECEIVED = web.AppKey("received", list[bytes])


def answer_body(size: int) -> bytes:
    """``size`` bytes in which every offset is different text, so a cut, a repeat or a reorder shows."""
    lines = b"".join(b"%07d\n" % i for i in range(size // 8 + 1))
    return lines[:size]


async def sized_login(request: web.Request) -> web.StreamResponse:
    """An app login whose answer is as large as the form's ``size`` asks: one body with a Content-Length
    (``pieces`` 1), or ``pieces`` chunks written ``PAUSE`` apart. The right password signs in (303 with the app's
    session cookie); ``no-cookie`` answers 303 without one (a failed login by the gateway's rule); any other password
    fails (401). Every form it receives is kept, as received, in ``app[RECEIVED]``."""
    raw = await request.read()
    request.app[RECEIVED].append(raw)
    form = dict(parse_qsl(raw.decode("ascii")))
    body = answer_body(int(form.get("size", "10")))
    pieces = int(form.get("pieces", "1"))
    if form.get("password") == APP_PASSWORD:
        status, headers = 303, {"Location": "/admin", "Set-Cookie": f"legacy_session={secrets.token_hex(8)}; Path=/"}
    elif form.get("password") == "no-cookie":
        status, headers = 303, {"Location": "/login?failed=1"}
    else:
        status, headers = 401, {"X-App-Login": "failed"}
    headers["Content-Type"] = "text/plain"
    if pieces == 1:
        return web.Response(status=status, headers=headers, body=body)
    response = web.StreamResponse(status=status, headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    step = -(-len(body) // pieces)
    for start in range(0, len(body), step):
        if start:
            await asyncio.sleep(PAUSE)
        await response.write(body[start : start + step])
    await response.write_eof()
    return response


@dataclass
class SizedApp:
    port: int
    received: list[bytes]


@pytest.fixture
async def sized_app() -> AsyncIterator[SizedApp]:
    """A small app on loopback whose login answers are as large as the test asks."""
    app = web.Application()
    app[RECEIVED] = []
    app.router.add_post("/login", sized_login)
    runner = await start_site(app, "127.0.0.1", 0)
    yield SizedApp(bound_port(runner), app[RECEIVED])
    await runner.cleanup()


@pytest.fixture
async def sized_stack(make_stack: StackFactory, sized_app: SizedApp) -> Stack:
    """The gateway intercepting the sized app's login (the user named by the form), ``max_body`` MAX_BODY."""
    return await make_stack(SIZED_LOGIN, app_port=sized_app.port)


def login_form(size: int, pieces: int = 1, password: str = APP_PASSWORD, **extra: str) -> dict[str, str]:
    return {"username": "alice", "password": password, "size": str(size), "pieces": str(pieces), **extra}


async def app_login(stack: Stack, size: int, *, pieces: int = 1, password: str = APP_PASSWORD) -> RawResponse:
    return await stack.form("/login", login_form(size, pieces, password))


def intercepted(stack: Stack) -> list[str]:
    return [event.result for event in stack.audit.events if event.event == "login.intercept"]


def refused_as_not_understood(response: RawResponse) -> bool:
    return response.status == 502 and json.loads(response.body)["code"] == "login_not_understood"


@pytest.mark.parametrize("pieces", [1, 8])
@pytest.mark.parametrize("size", [MAX_BODY + 1, 16 * MAX_BODY])
async def test_a_successful_login_answer_over_max_body_is_refused_and_nothing_released(
    sized_stack: Stack, size: int, pieces: int
) -> None:
    """T-A5: an app login that succeeds (303 with the app's session cookie) but answers more than
    ``upstream_login.max_body`` bytes (one byte more, or 16 times as much; in one body, or in chunks that arrive
    apart) is refused with 502 ``login_not_understood``: the app's session cookie, its body and a pending challenge
    are never given out, and nothing is held."""
    response = await app_login(sized_stack, size, pieces=pieces)
    assert refused_as_not_understood(response), (response.status, response.body[:200])
    assert answer_body(64) not in response.body
    assert response.cookies() == {} and response.header("Location") is None
    assert intercepted(sized_stack) == []


@pytest.mark.parametrize("pieces", [1, 8])
async def test_a_successful_login_answer_within_max_body_is_held_then_released_whole(
    sized_stack: Stack, pieces: int
) -> None:
    """T-A5: a successful app login answering exactly ``max_body`` bytes (the limit itself; in one body, or in chunks
    that arrive apart) is held: the browser goes to the gateway's challenge without the app's cookie or body; after
    MFA the app's answer is released as the app gave it, byte for byte, with its session cookie."""
    first = await app_login(sized_stack, 10)
    assert first.status == 303 and "legacy_session" not in first.cookies()
    secret, _ = await sized_stack.enroll_via_pages()  # alice's first login: releases that small answer
    sized_stack.jar.clear()
    sized_stack.clock.advance(30)  # the next TOTP step

    held = await app_login(sized_stack, MAX_BODY, pieces=pieces)
    assert held.status == 303 and held.header("Location") == "/_mfa/challenge?rd=%2Fadmin"
    assert "legacy_session" not in held.cookies() and "mfa_session_pending" in held.cookies()
    assert answer_body(64) not in held.body
    assert intercepted(sized_stack) == ["held", "held"]
    released = await sized_stack.csrf_form(
        "/_mfa/challenge?rd=/admin", "/_mfa/challenge", {"code": sized_stack.code(secret), "rd": "/admin"}
    )
    assert released.status == 303 and released.header("Location") == "/admin"
    assert released.body == answer_body(MAX_BODY)
    assert "legacy_session" in released.cookies() and "mfa_session" in released.cookies()


@pytest.mark.parametrize("pieces", [1, 64])
@pytest.mark.parametrize(("password", "status"), [("wrong", 401), ("no-cookie", 303)])
async def test_a_failed_login_answer_over_max_body_is_passed_back_whole(
    sized_stack: Stack, password: str, status: int, pieces: int
) -> None:
    """T-A5 (the residual the threat model names): a failed app login (a wrong password's 401, or a success status
    without the app's session cookie) is not held, so ``max_body`` does not bound it: its answer, 16 times
    ``max_body`` here, in one body or in chunks that arrive apart, is passed back whole, byte for byte, with the
    app's status and headers; nothing is held and no cookie is set."""
    response = await app_login(sized_stack, 16 * MAX_BODY, pieces=pieces, password=password)
    assert response.status == status
    assert response.body == answer_body(16 * MAX_BODY)
    assert response.cookies() == {} and intercepted(sized_stack) == []


@pytest.mark.parametrize("pieces", [1, 64])
async def test_a_failed_login_answer_is_read_at_most_to_the_failed_login_limit(sized_stack: Stack, pieces: int) -> None:
    """T-A5: what the gateway reads of a failed login's answer is bounded all the same, by ``FAILED_LOGIN_LIMIT``
    (8 MiB): an answer of exactly that size is passed back whole; one byte more is refused with 502
    ``login_not_understood``, none of it passed back."""
    whole = await app_login(sized_stack, FAILED_LOGIN_LIMIT, pieces=pieces, password="wrong")
    assert whole.status == 401 and whole.body == answer_body(FAILED_LOGIN_LIMIT)
    refused = await app_login(sized_stack, FAILED_LOGIN_LIMIT + 1, pieces=pieces, password="wrong")
    assert refused_as_not_understood(refused), (refused.status, refused.body[:200])
    assert answer_body(64) not in refused.body and refused.cookies() == {}


async def _form_in_pieces(stack: Stack, form: bytes, pieces: int) -> tuple[int, bytes, dict[str, str]]:
    """POST ``form`` to /login through the gateway as ``pieces`` chunks sent ``PAUSE`` apart."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
        session.post(
            stack.url + "/login", data=in_pieces(form, pieces, PAUSE), headers=headers, allow_redirects=False
        ) as response,
    ):
        return response.status, await response.read(), {k: v.value for k, v in response.cookies.items()}


async def test_a_login_form_in_pieces_is_read_whole_up_to_max_body(sized_stack: Stack, sized_app: SizedApp) -> None:
    """T-A5: an intercepted login form is read whole even when it arrives in pieces: a form of exactly ``max_body``
    bytes, sent in 4 chunks apart, reaches the app as sent and the login is held for the user it names."""
    form = urlencode(login_form(10)).encode()
    form += b"&pad=" + b"x" * (MAX_BODY - len(form) - 5)
    assert len(form) == MAX_BODY
    status, _, cookies = await _form_in_pieces(sized_stack, form, 4)
    assert status == 303 and "mfa_session_pending" in cookies and "legacy_session" not in cookies
    assert sized_app.received == [form]
    assert [e.user_id for e in sized_stack.audit.events if e.event == "login.intercept"] == ["alice"]


async def test_a_login_form_over_max_body_in_pieces_is_refused_before_the_app(
    sized_stack: Stack, sized_app: SizedApp
) -> None:
    """T-A5: an intercepted login form one byte over ``max_body``, sent in 4 chunks apart, is refused with 413
    ``body_too_large``; the app never sees any of it."""
    form = urlencode(login_form(10)).encode()
    form += b"&pad=" + b"x" * (MAX_BODY + 1 - len(form) - 5)
    status, body, cookies = await _form_in_pieces(sized_stack, form, 4)
    assert status == 413 and json.loads(body)["code"] == "body_too_large"
    assert cookies == {} and sized_app.received == [] and intercepted(sized_stack) == []
