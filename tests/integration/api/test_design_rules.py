"""Security rules of DESIGN.md that had no test able to fail, each pinned against a real gateway.

* Attempt limiting per client IP: one address guessing against several users is locked out (429 + Retry-After)
  although no single user reached its own limit; the lock holds on a second replica sharing Redis; another
  address is not affected.
* The plaintext TOTP secret is shown only during enrollment: never afterwards in a response, a page, the database,
  a log record, the audit file, the metrics or the admin CLI's output. Backup codes, likewise, are shown once.
* Cookies: every cookie the gateway sets or clears is ``__Host-``, Secure, HttpOnly, Path=/, without Domain, and
  SameSite=Lax (the CSRF cookie: Strict), so that browsers accept the deletions too.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from mfa_gateway import admin
from mfa_gateway.web.admin_listener import create_admin_app
from tests.helpers.gateway import FakeClock, add_user, current_code, database_contents
from tests.integration.api.conftest import PASSWORD, Gateway, GatewayFactory

# -- attempt limiting per client IP ------------------------------------------------------------------------------

ATTACKER = "203.0.113.7"
BYSTANDER = "198.51.100.9"
ENROLLER = "192.0.2.50"
IP_LIMIT = 6  # failures that lock an address: 3 users x 2 guesses, each user well below its own limit of 5
PER_IP = {"trusted_proxies": ["127.0.0.1/32"], "limits": {"ip": {"max_failures": IP_LIMIT, "lockout": 60}}}
USERS = ("alice", "bob", "carol", "dave")


def _from(ip: str, **headers: str) -> dict[str, str]:
    """Headers of a request relayed by the trusted proxy at 127.0.0.1 for the client at ``ip``."""
    return {"X-Forwarded-For": ip, **headers}


async def _assert_locked_out(response: ClientResponse, *, at_most: int = 60) -> None:
    body = await response.json()
    assert (response.status, body["code"]) == (429, "locked_out"), body
    assert 1 <= int(response.headers["Retry-After"]) <= at_most


async def _password_gateway(make_gateway: GatewayFactory) -> Gateway:
    gateway = await make_gateway(PER_IP)
    for user in USERS[2:]:
        add_user(gateway.settings, user, PASSWORD)
    return gateway


async def _login(gateway: Gateway, user: str, ip: str, password: str = PASSWORD) -> ClientResponse:
    response: ClientResponse = await gateway.post(
        "/api/login", {"username": user, "password": password}, headers=_from(ip)
    )
    return response


async def _guess_passwords_from_one_address(gateway: Gateway, ip: str = ATTACKER) -> None:
    """Two wrong passwords each for alice, bob and carol from ``ip``: 6 failures, none of the users at 5."""
    for user in USERS[:3]:
        for _ in range(IP_LIMIT // 3):
            response = await _login(gateway, user, ip, password="wrong password")
            assert response.status == 401, await response.text()


async def test_one_address_guessing_passwords_for_several_users_is_locked_out(make_gateway: GatewayFactory) -> None:
    """After limits.ip.max_failures wrong passwords spread over several users, that address gets 429 + Retry-After
    even for a fresh user with the right password; another address signs in as usual, as do the users guessed at
    (none of whom reached the per-user limit). The lock lifts after Retry-After (injected time)."""
    gateway = await _password_gateway(make_gateway)
    await _guess_passwords_from_one_address(gateway)
    await _assert_locked_out(await _login(gateway, "dave", ATTACKER))
    for user in USERS:
        assert (await _login(gateway, user, BYSTANDER)).status == 200, user
    gateway.clock.advance(61)
    assert (await _login(gateway, "dave", ATTACKER)).status == 200


@pytest.mark.parametrize("backend", ["redis+postgres"], indirect=True)
async def test_a_per_address_password_lockout_holds_on_another_replica(make_gateway: GatewayFactory) -> None:
    """Two replicas sharing the store (users file, PostgreSQL) and Redis: the address locked by failures on A is
    locked on B, other addresses are not."""
    a = await _password_gateway(make_gateway)
    b = await _password_gateway(make_gateway)
    assert a.runtime.state is not b.runtime.state
    await _guess_passwords_from_one_address(a)
    await _assert_locked_out(await _login(b, "dave", ATTACKER))
    assert (await _login(b, "dave", BYSTANDER)).status == 200
    a.clock.advance(61)  # both replicas run on the same injected clock
    assert (await _login(b, "dave", ATTACKER)).status == 200


def _wrong_code(secret: str, clock: FakeClock) -> str:
    """A code that is wrong for every step of the window (so the test never depends on luck)."""
    valid = {current_code(secret, clock, offset=offset) for offset in (-1, 0, 1)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in valid)


async def _code_gateway(make_gateway: GatewayFactory) -> Gateway:
    return await make_gateway({**PER_IP, "identity": {"source": "trusted_header"}})


async def _enroll_all(gateway: Gateway) -> dict[str, str]:
    """Every user enrolled (from ENROLLER); their secrets. The clock then moves one step on."""
    secrets = {}
    for user in USERS:
        who = _from(ENROLLER, **{"X-Forwarded-User": user})
        data = (await (await gateway.post("/api/mfa/enable", headers=who)).json())["data"]
        code = current_code(data["secret"], gateway.clock)
        assert (await gateway.post("/api/mfa/verify", {"token": code}, headers=who)).status == 200
        secrets[user] = data["secret"]
    gateway.clock.advance(30)
    return secrets


async def _challenge(gateway: Gateway, user: str, ip: str, code: str) -> ClientResponse:
    who = _from(ip, **{"X-Forwarded-User": user})
    response: ClientResponse = await gateway.post("/api/mfa/challenge", {"token": code}, headers=who)
    return response


async def _guess_codes_from_one_address(gateway: Gateway, secrets: dict[str, str]) -> None:
    for user in USERS[:3]:
        for _ in range(IP_LIMIT // 3):
            response = await _challenge(gateway, user, ATTACKER, _wrong_code(secrets[user], gateway.clock))
            assert response.status == 401, await response.text()


async def test_one_address_guessing_codes_for_several_users_is_locked_out(make_gateway: GatewayFactory) -> None:
    """Wrong TOTP codes for several users from one address: once the address reaches its limit, even dave's right
    code from there is 429 + Retry-After; from another address every user's right code works."""
    gateway = await _code_gateway(make_gateway)
    secrets = await _enroll_all(gateway)
    await _guess_codes_from_one_address(gateway, secrets)
    await _assert_locked_out(await _challenge(gateway, "dave", ATTACKER, current_code(secrets["dave"], gateway.clock)))
    for user in USERS:
        response = await _challenge(gateway, user, BYSTANDER, current_code(secrets[user], gateway.clock))
        assert response.status == 200, (user, await response.text())


@pytest.mark.parametrize("backend", ["redis+postgres"], indirect=True)
async def test_a_per_address_code_lockout_holds_on_another_replica(make_gateway: GatewayFactory) -> None:
    """Two replicas sharing the store (PostgreSQL) and Redis: code guesses against several users on replica A lock
    the address on replica B; B still accepts the same user's right code from another address."""
    a = await _code_gateway(make_gateway)
    b = await _code_gateway(make_gateway)
    secrets = await _enroll_all(a)
    await _guess_codes_from_one_address(a, secrets)
    await _assert_locked_out(await _challenge(b, "dave", ATTACKER, current_code(secrets["dave"], b.clock)))
    assert (await _challenge(b, "dave", BYSTANDER, current_code(secrets["dave"], b.clock))).status == 200


async def test_clients_a_trusted_proxy_names_no_address_for_share_one_limit(make_gateway: GatewayFactory) -> None:
    """A trusted proxy that writes something other than an address for its clients (``unknown``, ``unix:``): they are
    unknown to ``networks`` rules but not unlimited. They share one per-address limit (that proxy's), so guessing
    across users from behind it locks them out together, while a client the proxy names keeps its own."""
    gateway = await _password_gateway(make_gateway)
    await _guess_passwords_from_one_address(gateway, "unknown")
    await _assert_locked_out(await _login(gateway, "dave", "unix:"))
    assert (await _login(gateway, "dave", BYSTANDER)).status == 200


async def test_a_client_cannot_choose_its_address_without_a_trusted_proxy(make_gateway: GatewayFactory) -> None:
    """Without trusted_proxies, X-Forwarded-For is not believed: rotating it does not dodge the per-address limit."""
    gateway = await make_gateway({"limits": {"ip": {"max_failures": IP_LIMIT}}})
    add_user(gateway.settings, "carol", PASSWORD)
    for user in USERS[:3]:
        for attempt in range(IP_LIMIT // 3):
            response = await _login(gateway, user, f"203.0.113.{attempt + 10}", password="wrong password")
            assert response.status == 401
    await _assert_locked_out(await _login(gateway, "alice", BYSTANDER))


# -- the plaintext TOTP secret is shown only during enrollment -----------------------------------------------------


def _base64_forms(raw: bytes) -> list[bytes]:
    """``raw`` as it reads inside any larger base64 text (standard and URL-safe alphabets): base64 encodes three
    bytes at a time, so ``raw`` reads one of three ways depending on where it starts. Each is the encoding of
    ``raw`` after 0, 1 or 2 filler bytes, without the characters that also hold filler bits or, at the end,
    whatever follows ``raw``."""
    forms = []
    for shift in range(3):
        encoded = binascii.b2a_base64(b"\0" * shift + raw, newline=False)
        first = -(-shift * 8 // 6)  # characters with a filler bit in them
        last = (shift + len(raw)) * 8 // 6  # characters made of the bytes given only
        core = encoded[first:last]
        forms += [core, core.translate(bytes.maketrans(b"+/", b"-_"))]
    return forms


def secret_forms(secret: str) -> list[bytes]:
    """Every spelling under which the secret could leak: base32 (as given, lower case, grouped by four as on the
    page), the raw key bytes, their hex, and their base64 encodings wherever they start in a larger base64 text."""
    raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    texts = [secret, secret.lower(), grouped, grouped.lower(), raw.hex()]
    return [t.encode() for t in texts] + _base64_forms(raw) + [raw]


def leaked(blob: bytes | str, secret: str) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [repr(form[:8]) + "…" for form in secret_forms(secret) if form in data]


class Transcript:
    """Every response the user's client received, as bytes (status line, headers, body)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def add(self, response: ClientResponse) -> ClientResponse:
        head = f"{response.status} {response.url}\n" + "".join(f"{k}: {v}\n" for k, v in response.headers.items())
        self.chunks.append(head.encode() + await response.read())
        return response

    async def visit(self, gateway: Gateway, expected: dict[str, int]) -> None:
        """GET each page under the prefix (redirects not followed), keeping what came back; each status as given."""
        for path, status in expected.items():
            page = await self.add(await gateway.client.get(gateway.prefix + path, allow_redirects=False))
            assert page.status == status, path

    @property
    def text(self) -> bytes:
        return b"\n".join(self.chunks)


async def _everything_stored_and_logged(
    gateway: Gateway,
    user: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    aiohttp_client: Callable[..., Any],
) -> dict[str, bytes]:
    """What an operator or an attacker with access to the gateway's side could read afterwards."""
    database = await database_contents(gateway.settings.store.url)
    assert b"$argon2id$" in database, "the dump should hold the backup-code hashes (is it the right database?)"
    files = b"".join(path.read_bytes() for path in tmp_path.glob("mfa.db*"))  # SQLite: the files, WAL included
    audit_file = (tmp_path / "audit.log").read_bytes()
    assert b"mfa.enroll.start" in audit_file and b"mfa.enroll.activate" in audit_file
    records = caplog.get_records("call")
    assert records, "the gateway should have logged (access events at least)"
    logged = "\n".join(
        f"{r.getMessage()} {r.args!r} {logging.Formatter().formatException(r.exc_info) if r.exc_info else ''}"
        for r in records
    )
    admin_client: TestClient[Any, Any] = await aiohttp_client(create_admin_app(gateway.runtime))
    metrics = await (await admin_client.get("/metrics")).read()
    cli = io.StringIO()
    with redirect_stdout(cli):
        assert await admin.run(gateway.settings, "list", None) == 0
        assert await admin.run(gateway.settings, "show", user) == 0
    assert f"{user}: active" in cli.getvalue(), cli.getvalue()
    return {
        "audit file": audit_file,
        "logs": logged.encode(),
        "metrics": metrics,
        "users list/show": cli.getvalue().encode(),
        "database": database + files,
    }


async def test_the_api_shows_the_totp_secret_only_when_enrollment_starts(
    make_gateway: GatewayFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture, aiohttp_client: Any
) -> None:
    """POST /api/mfa/enable shows the secret (and the backup codes); nothing afterwards does: not activation, the
    status, challenges, logins, their JWTs, a repeated enable, the account pages, the database, the logs, the audit
    file, the metrics, nor `users list/show`. The backup codes are not shown again either."""
    caplog.set_level(logging.DEBUG)
    gateway = await make_gateway(audit_sinks=True)
    assert (await gateway.login()).status == 200
    enable = await gateway.post("/api/mfa/enable")
    shown = await enable.read()
    data = json.loads(shown)["data"]
    secret, codes = data["secret"], data["backupCodes"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret) and leaked(shown, secret), "the enrollment response shows it"
    assert f"secret={secret}" in data["otpauthUrl"]

    later = Transcript()
    code = current_code(secret, gateway.clock)
    assert (await later.add(await gateway.post("/api/mfa/verify", {"token": code}))).status == 200
    gateway.clock.advance(30)
    await later.visit(
        gateway,
        {
            "/api/mfa/status": 200,
            "/challenge": 200,
            "/backup-codes": 200,
            "/disable": 200,
            "/enroll": 303,
            "/logout": 200,
            "/jwks.json": 200,
        },
    )
    assert (await later.add(await gateway.post("/api/mfa/enable"))).status == 409
    wrong = await later.add(await gateway.post("/api/mfa/challenge", {"token": _wrong_code(secret, gateway.clock)}))
    assert wrong.status == 401
    gateway.clock.advance(30)
    challenged = await later.add(
        await gateway.post("/api/mfa/challenge", {"token": current_code(secret, gateway.clock)})
    )
    assert challenged.status == 200
    pending = await later.add(await gateway.login())
    assert (await pending.json())["mfaRequired"] is True
    gateway.clock.advance(30)
    signed_in = await later.add(await gateway.login(mfaToken=current_code(secret, gateway.clock)))
    claims = jwt.decode((await signed_in.json())["token"], options={"verify_signature": False})
    later.chunks.append(json.dumps(claims).encode())
    gateway.clock.advance(30)
    regenerated = await later.add(
        await gateway.post("/api/mfa/backup-codes", {"token": current_code(secret, gateway.clock)})
    )
    assert regenerated.status == 200
    await later.add(await gateway.client.get(gateway.prefix + "/backup-codes"))

    assert leaked(later.text, secret) == []
    assert [c for c in codes if c.encode() in later.text or c.replace("-", "").encode() in later.text] == []
    for place, blob in (
        await _everything_stored_and_logged(gateway, "alice", tmp_path, caplog, aiohttp_client)
    ).items():
        assert leaked(blob, secret) == [], f"the TOTP secret is readable in the {place}"


async def test_the_enroll_page_shows_the_totp_secret_only_while_setting_up(
    make_gateway: GatewayFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture, aiohttp_client: Any
) -> None:
    """The setup page shows the manual key; after confirming, no page (enroll, challenge, backup codes, disable),
    API answer, stored value, log record, audit line, metric or CLI output holds it."""
    caplog.set_level(logging.DEBUG)
    gateway = await make_gateway(audit_sinks=True)
    assert (await gateway.login("bob")).status == 200
    start = await gateway.client.get(gateway.prefix + "/enroll?rd=/")
    token = re.search(r'name="csrf" value="([^"]+)"', await start.text())
    assert start.status == 200 and token is not None
    setup = await gateway.client.post(gateway.prefix + "/enroll", data={"csrf": token.group(1), "rd": "/"})
    page = await setup.text()
    key = re.search(r'id="manual-key"[^>]*>([A-Z2-7 ]+)<', page)
    assert setup.status == 200 and key is not None, page[:500]
    secret = key.group(1).replace(" ", "")
    codes = re.findall(r"<li>([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})</li>", page)
    assert len(codes) == 10 and leaked(page, secret)

    later = Transcript()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    confirmed = await later.add(
        await gateway.client.post(
            gateway.prefix + "/enroll/confirm",
            data={"csrf": token.group(1), "rd": "/", "code": current_code(secret, gateway.clock)},
            allow_redirects=False,
        )
    )
    assert confirmed.status == 303, await confirmed.text()
    await later.visit(
        gateway, {"/enroll": 303, "/challenge": 200, "/backup-codes": 200, "/disable": 200, "/api/mfa/status": 200}
    )
    wrong = await later.add(
        await gateway.client.post(
            gateway.prefix + "/enroll", data={"csrf": token.group(1), "rd": "/"}, allow_redirects=False
        )
    )
    assert wrong.status == 409, await wrong.text()  # enrolling again is refused, not a second look
    assert leaked(later.text, secret) == []
    assert [c for c in codes if c.encode() in later.text or c.replace("-", "").encode() in later.text] == []
    for place, blob in (await _everything_stored_and_logged(gateway, "bob", tmp_path, caplog, aiohttp_client)).items():
        assert leaked(blob, secret) == [], f"the TOTP secret is readable in the {place}"


def test_the_leak_check_recognises_every_spelling() -> None:
    """The check itself: the secret in any of its spellings inside a larger blob is found, including its key bytes
    base64-encoded inside a larger value at any offset (standard and URL-safe alphabets); another secret is not."""
    secret, other = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU"
    for form in secret_forms(secret):
        assert leaked(b"<p>" + form + b"</p>", secret), form
    raw = base64.b32decode(secret)
    for before in range(4):
        for after in range(3):
            value = b"\xfb" * before + raw + b"\xff" * after
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                assert leaked(b'{"blob": "' + encode(value) + b'"}', secret), (before, after, encode.__name__)
    assert leaked(b"".join(secret_forms(other)), secret) == []


# -- cookies -----------------------------------------------------------------------------------------------------


def _set_cookies(response: ClientResponse) -> list[tuple[str, str, dict[str, str]]]:
    """(name, value, attributes with lower-case names) of every Set-Cookie header, as the browser receives them."""
    parsed = []
    for header in response.headers.getall("Set-Cookie", []):
        first, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        attrs = {}
        for attribute in attributes:
            key, _, val = attribute.partition("=")
            attrs[key.strip().lower()] = val.strip()
        parsed.append((name, value, attrs))
    return parsed


async def test_every_cookie_the_gateway_sets_or_clears_is_host_prefixed_secure_and_httponly(
    make_gateway: GatewayFactory,
) -> None:
    """Across sign-in pages, the API login with its pending challenge, the challenge, enrollment pages and sign-out:
    every Set-Cookie (clearing ones included, which browsers ignore unless they carry the same attributes) is
    ``__Host-``, Secure, HttpOnly, Path=/, has no Domain, and is SameSite=Lax (the CSRF cookie Strict)."""
    gateway = await make_gateway()
    seen: list[tuple[str, str, dict[str, str]]] = []

    async def record(response: ClientResponse) -> ClientResponse:
        seen.extend(_set_cookies(response))
        return response

    def csrf_of(page: str) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found is not None, page[:300]
        return found.group(1)

    signin = await record(await gateway.client.get(gateway.prefix + "/signin?rd=/"))
    form = {"csrf": csrf_of(await signin.text()), "rd": "/", "username": "alice", "password": PASSWORD}
    await record(await gateway.client.post(gateway.prefix + "/signin", data=form, allow_redirects=False))
    start = await record(await gateway.client.get(gateway.prefix + "/enroll?rd=/"))
    setup = await record(
        await gateway.client.post(gateway.prefix + "/enroll", data={"csrf": csrf_of(await start.text()), "rd": "/"})
    )
    page = await setup.text()
    key = re.search(r'id="manual-key"[^>]*>([A-Z2-7 ]+)<', page)
    assert key is not None
    secret = key.group(1).replace(" ", "")
    confirm = {"csrf": csrf_of(page), "rd": "/", "code": current_code(secret, gateway.clock)}
    confirmed = await record(
        await gateway.client.post(gateway.prefix + "/enroll/confirm", data=confirm, allow_redirects=False)
    )
    assert confirmed.status == 303
    gateway.clock.advance(30)
    pending = await record(await gateway.login())
    assert (await pending.json())["mfaRequired"] is True
    done = await record(await gateway.post("/api/mfa/challenge", {"token": current_code(secret, gateway.clock)}))
    assert done.status == 200, await done.text()
    logout = await record(await gateway.client.get(gateway.prefix + "/logout"))
    await record(await gateway.client.post(gateway.prefix + "/logout", data={"csrf": csrf_of(await logout.text())}))

    session = gateway.settings.session.cookie_name
    names = {name for name, _, _ in seen}
    assert {session, session + "_pending", "__Host-mfa_csrf"} <= names, names
    cleared = {name for name, value, attrs in seen if not value or attrs.get("max-age") == "0"}
    assert {session, session + "_pending"} <= cleared, "sign-out and the finished challenge should clear cookies"
    for name, _, attrs in seen:
        assert name.startswith("__Host-"), name
        assert "secure" in attrs and "httponly" in attrs, (name, attrs)
        assert attrs.get("path") == "/" and "domain" not in attrs, (name, attrs)
        assert attrs.get("samesite") == ("Strict" if name == "__Host-mfa_csrf" else "Lax"), (name, attrs)
