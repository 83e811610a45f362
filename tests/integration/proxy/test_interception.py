"""Login interception: the app's own login, held by the gateway until MFA succeeds."""

from __future__ import annotations

import json

import pytest

from tests.helpers.support import eventually
from tests.integration.proxy.conftest import Stack, StackFactory


async def test_failed_app_login_passes_through_untouched(stack: Stack) -> None:
    """A wrong password: the app's own 200 form comes back as it is; nothing is held, no cookie is set."""
    response = await stack.form("/login", {"username": "alice", "password": "wrong", "next": "/admin"})
    assert response.status == 200
    assert b"Invalid username or password." in response.body
    assert response.cookies() == {}


async def test_successful_app_login_is_held_until_mfa(stack: Stack) -> None:
    """A right password: the app's session cookie is withheld; the browser goes to the gateway's challenge."""
    response = await stack.app_login()
    assert response.status == 303
    assert response.header("Location") == "/_mfa/challenge?rd=%2Fadmin"
    assert "legacy_session" not in response.cookies()
    assert "mfa_session_pending" in response.cookies()
    admin = await stack.raw("GET", "/admin", {"Accept": "text/html"})
    assert admin.status == 302 and b"Admin area" not in admin.body


async def test_new_user_enrolls_then_reaches_admin(stack: Stack) -> None:
    """Not enrolled: challenge → enrollment → confirm; the held app login is released with a step-up cookie."""
    await stack.app_login()
    challenge = await stack.raw("GET", "/_mfa/challenge?rd=/admin", {"Accept": "text/html"})
    assert challenge.status == 303 and challenge.header("Location") == "/_mfa/enroll?rd=%2Fadmin"
    await stack.enroll_via_pages()
    assert "legacy_session" in stack.jar and "mfa_session" in stack.jar
    admin = await stack.raw("GET", "/admin", {"Accept": "text/html"})
    assert admin.status == 200 and b"Admin area" in admin.body and b"Signed in as alice" in admin.body


async def test_enrolled_user_answers_the_challenge(stack: Stack) -> None:
    """Enrolled: the next login asks for the code; a wrong one is refused, the right one releases the login."""
    await stack.app_login()
    secret, _ = await stack.enroll_via_pages()
    stack.jar.clear()
    stack.clock.advance(30)
    await stack.app_login()
    wrong = await stack.csrf_form("/_mfa/challenge?rd=/admin", "/_mfa/challenge", {"code": "000000", "rd": "/admin"})
    assert stack.code(secret) != "000000", "rerun: 000000 happens to be the current code"
    assert wrong.status == 401 and b"not valid" in wrong.body
    right = await stack.csrf_form(
        "/_mfa/challenge?rd=/admin", "/_mfa/challenge", {"code": stack.code(secret), "rd": "/admin"}
    )
    assert right.status == 303 and right.header("Location") == "/admin"
    assert (await stack.raw("GET", "/admin")).status == 200


async def test_backup_code_works_once_through_the_pages(stack: Stack) -> None:
    """A backup code releases a held login once; the same code on the next login is refused."""
    await stack.app_login()
    _, codes = await stack.enroll_via_pages()
    for attempt in range(2):
        stack.jar.clear()
        await stack.app_login()
        answer = await stack.csrf_form(
            "/_mfa/challenge?rd=/admin", "/_mfa/challenge", {"code": codes[0], "rd": "/admin"}
        )
        if attempt == 0:
            assert answer.status == 303
            assert (await stack.raw("GET", "/admin")).status == 200
        else:
            assert answer.status == 401 and b"not valid" in answer.body
            assert (await stack.raw("GET", "/admin", {"Accept": "text/html"})).status == 302


async def test_a_step_up_cookie_does_not_travel_to_another_app_session(stack: Stack) -> None:
    """alice's step-up cookie next to bob's app session (cookie swapping) gives bob no access."""
    await stack.app_login("alice")
    await stack.enroll_via_pages()
    alice_step_up = stack.jar["mfa_session"]
    stack.jar.clear()
    held = await stack.app_login("bob")
    assert held.status == 303
    # bob's app session cookie is only ever released after MFA; take it from the app directly, as an attacker
    # who logged into the app behind the gateway's back would have it.
    direct = await _app_session_for(stack, "bob")
    swapped = {"legacy_session": direct, "mfa_session": alice_step_up}
    response = await stack.raw("GET", "/admin", {"Accept": "text/html"}, cookies=swapped)
    assert response.status == 302 and b"Admin area" not in response.body


async def _app_session_for(stack: Stack, user: str) -> str:
    import aiohttp

    from tests.integration.proxy.conftest import APP_USERS

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{stack.app_port}/login",
            data={"username": user, "password": APP_USERS[user]},
            allow_redirects=False,
        ) as response,
    ):
        return response.cookies["legacy_session"].value


async def test_logout_revokes_the_session(stack: Stack) -> None:
    """After sign-out the old step-up cookie, replayed, no longer opens /admin."""
    await stack.app_login()
    await stack.enroll_via_pages()
    before = dict(stack.jar)
    out = await stack.csrf_form("/_mfa/logout", "/_mfa/logout", {})
    assert out.status == 200 and b"Signed out" in out.body
    replay = await stack.raw("GET", "/admin", {"Accept": "text/html"}, cookies=before)
    assert replay.status == 302 and b"Admin area" not in replay.body


async def test_revocation_reaches_a_second_gateway(make_stack: StackFactory, redis_url: str) -> None:
    """Two gateways sharing Redis: sign-out on the first refuses the same cookies on the second."""
    shared = {"state": {"backend": "redis", "url": redis_url, "key_prefix": f"rev{id(make_stack)}:"}}
    first = await make_stack(shared, name="first")
    second = await make_stack(shared, name="second", app_port=first.app_port)
    second.runtime.keys = first.runtime.keys  # the same keys, as replicas have
    await first.app_login()
    await first.enroll_via_pages()
    cookies = dict(first.jar)
    assert (await second.raw("GET", "/admin", cookies=cookies)).status == 200
    await first.csrf_form("/_mfa/logout", "/_mfa/logout", {})

    async def refused_on_second() -> bool:
        return (await second.raw("GET", "/admin", cookies=cookies)).status != 200

    # the revocation crosses over Redis pub/sub: a bounded wait on the real event
    await eventually(refused_on_second, "the second gateway to refuse the signed-out cookies", within=10, interval=0.02)
    assert (await second.raw("GET", "/admin", {"Accept": "text/html"}, cookies=cookies)).status == 302


async def test_expired_pending_login_must_start_again(stack: Stack) -> None:
    """A held login lives challenge_ttl seconds; after that the challenge page asks to sign in again."""
    await stack.app_login()
    secret, _ = await stack.enroll_via_pages()
    stack.jar.clear()
    stack.clock.advance(30)
    await stack.app_login()
    page = await stack.raw("GET", "/_mfa/challenge?rd=/admin", {"Accept": "text/html"})
    stack.clock.advance(301)
    import re

    token = re.search(rb'name="csrf" value="([^"]+)"', page.body)
    assert token is not None
    late = await stack.form(
        "/_mfa/challenge", {"code": stack.code(secret), "rd": "/admin", "csrf": token.group(1).decode()}
    )
    assert late.status == 401 and (await stack.raw("GET", "/admin", {"Accept": "text/html"})).status == 302


async def _stolen_swap(stack: Stack) -> tuple[str, str, str]:
    """bob has his own MFA session; the attacker (bob) also holds alice's app session cookie, without her MFA."""
    await stack.app_login("bob")
    await stack.enroll_via_pages()
    return stack.jar["mfa_session"], stack.jar["legacy_session"], await _app_session_for(stack, "alice")


async def test_a_second_cookie_header_cannot_smuggle_another_app_session(stack: Stack) -> None:
    """Two Cookie headers (gateway reads one, app another) are refused; alice's account stays closed to bob."""
    step_up, bob_app, alice_app = await _stolen_swap(stack)
    response = await stack.raw(
        "GET",
        "/admin",
        {"Cookie": f"mfa_session={step_up}; legacy_session={bob_app}", "cookie": f"legacy_session={alice_app}"},
        cookies={},
    )
    assert response.status == 400 and b"Signed in as alice" not in response.body


@pytest.mark.parametrize("junk", ['bad"x=1', 'x="unterminated', "x=a\\b", "x=\u00e9", "x=1, y=2"])
async def test_cookie_parser_differentials_cannot_smuggle_another_app_session(stack: Stack, junk: str) -> None:
    """A header the gateway and the app might split differently, naming the app cookie twice, is refused."""
    step_up, bob_app, alice_app = await _stolen_swap(stack)
    header = f"mfa_session={step_up}; legacy_session={bob_app}; {junk}; legacy_session={alice_app}"
    response = await stack.raw("GET", "/admin", {"Cookie": header}, cookies={})
    assert response.status == 400 and b"Signed in as alice" not in response.body


async def test_the_app_receives_exactly_the_cookies_the_gateway_read(stack: Stack) -> None:
    """The forwarded Cookie header is rebuilt from the parsed pairs, without the gateway's cookies."""
    step_up, bob_app, _ = await _stolen_swap(stack)
    response = await stack.raw(
        "GET", "/api/whoami", {"Cookie": f"mfa_session={step_up}; legacy_session={bob_app}"}, cookies={}
    )
    assert response.status == 200 and json.loads(response.body)["user"] == "bob"


FORM_ONLY = {"login_path": "/login", "session_cookie": "legacy_session", "success_status": [303]}

UTF16_ATTACK = "username=alice&password=alice-password&next=%2Fadmin&x=".encode("utf-16-le") + b"&username=mallory1&"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (UTF16_ATTACK, "application/x-www-form-urlencoded; charset=utf-16-le"),
        (b"username=mallory&username=alice&password=alice-password", "application/x-www-form-urlencoded"),
        (b"username=mallory;username=alice&password=alice-password", "application/x-www-form-urlencoded"),
        (b'{"username": "mallory", "username": "alice", "password": "alice-password"}', "application/json"),
        (b"username=alice\xff&password=alice-password", "application/x-www-form-urlencoded"),
        (
            b"--b\r\nContent-Disposition: form-data; name=username\r\n\r\nalice\r\n--b--",
            "multipart/form-data; boundary=b",
        ),
    ],
)
async def test_a_login_form_the_app_could_read_differently_is_refused(
    make_stack: StackFactory, body: bytes, content_type: str
) -> None:
    """Charset tricks, repeated fields, ';' separators, duplicate JSON keys, raw bytes: 400 before the app sees it,
    so the gateway never holds alice's session under another name (the enrollment-takeover found in review).
    This is the rule when the gateway reads the user from the form (no whoami_path)."""
    stack = await make_stack({"identity": {"upstream_login": FORM_ONLY}})
    response = await stack.raw("POST", "/login", {"Content-Type": content_type}, body)
    assert response.status == 400 and json.loads(response.body)["code"] == "login_not_understood"
    assert "legacy_session" not in response.cookies() and "mfa_session_pending" not in response.cookies()
    assert [e for e in stack.audit.events if e.event == "login.intercept"] == []


async def test_the_app_names_the_user_when_whoami_is_configured(stack: Stack) -> None:
    """With whoami_path, the held login is for the user the app says it signed in (asked with the new cookie)."""
    await stack.app_login("alice")
    assert [e.user_id for e in stack.audit.events if e.event == "login.intercept"] == ["alice"]


async def test_a_whoami_that_cannot_answer_refuses_the_login(make_stack: StackFactory) -> None:
    """If the app cannot say who signed in, the login is refused and the app's session never released."""
    stack = await make_stack(
        {
            "identity": {
                "upstream_login": {
                    "login_path": "/login",
                    "session_cookie": "legacy_session",
                    "success_status": [303],
                    "whoami_path": "/nowhere",
                }
            }
        }
    )
    response = await stack.app_login("alice")
    assert response.status == 400 and "legacy_session" not in response.cookies()


async def test_upper_case_utf8_charset_is_accepted(stack: Stack) -> None:
    """charset=UTF-8 (as jQuery sends it) is the same charset: the login is held, not refused."""
    response = await stack.raw(
        "POST",
        "/login",
        {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
        b"username=alice&password=alice-password&next=%2Fadmin",
    )
    assert response.status == 303 and "mfa_session_pending" in response.cookies()
