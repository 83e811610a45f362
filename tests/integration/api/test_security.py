"""The security properties of issue 1, each pinned by a test that fails if the property breaks."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.gateway import current_code, database_contents
from tests.helpers.servers import RedisServer, running_redis
from tests.helpers.support import eventually, in_pieces
from tests.integration.api.conftest import PASSWORD, Gateway, GatewayFactory


async def enrolled(gateway: Gateway, user: str = "alice") -> dict[str, Any]:
    """Sign in as ``user`` and activate MFA; return the enrollment data. The clock then moves one step on."""
    await gateway.login(user)
    data = await gateway.enable()
    response = await gateway.post("/api/mfa/verify", {"token": current_code(data["secret"], gateway.clock)})
    assert response.status == 200
    gateway.clock.advance(30)
    return data


async def challenge(gateway: Gateway, token: str) -> Any:
    return await gateway.post("/api/mfa/challenge", {"token": token})


async def test_a_totp_code_is_accepted_at_most_once(gateway: Gateway) -> None:
    """The same code twice: the second use is refused, even within its validity window."""
    data = await enrolled(gateway)
    code = current_code(data["secret"], gateway.clock)
    assert (await challenge(gateway, code)).status == 200
    replay = await challenge(gateway, code)
    assert replay.status == 401 and (await replay.json())["code"] == "invalid_mfa_token"


async def test_an_older_code_is_refused_once_a_newer_step_was_used(gateway: Gateway) -> None:
    """Steps only move forward: after the current code, the previous step's (still in window) code fails."""
    data = await enrolled(gateway)
    assert (await challenge(gateway, current_code(data["secret"], gateway.clock))).status == 200
    older = await challenge(gateway, current_code(data["secret"], gateway.clock, offset=-1))
    assert older.status == 401


async def test_the_activation_code_cannot_be_replayed_as_a_challenge(alice: Gateway) -> None:
    """The code that activated MFA is claimed too: replaying it right away fails."""
    data = await alice.enable()
    code = current_code(data["secret"], alice.clock)
    assert (await alice.post("/api/mfa/verify", {"token": code})).status == 200
    assert (await challenge(alice, code)).status == 401


async def test_a_code_used_before_redis_restarts_without_its_data_is_still_refused(
    make_gateway: GatewayFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """T-C10. A Redis with no persistence restarts and forgets every replay mark: the code accepted just before is
    still refused within its window, on the step-up and on a sign-in with ``mfaToken``, as the same 401
    invalid_mfa_token as any replay (the step kept with the enrollment); a spent backup code stays spent; the next
    step's code is accepted. With a Redis of its own, restarted on its port, and each store (SQLite, PostgreSQL)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as redis_server:
        gateway = await make_gateway({"state": {"backend": "redis", "url": redis_server.url}})
        data = await enrolled(gateway)
        code, backup = current_code(data["secret"], gateway.clock), data["backupCodes"][0]
        assert (await challenge(gateway, code)).status == 200
        assert (await challenge(gateway, backup)).status == 200
        await restarted_empty(gateway, redis_server)
        for replay in (await challenge(gateway, code), await gateway.login(mfaToken=code)):
            assert replay.status == 401 and (await replay.json())["code"] == "invalid_mfa_token"
        assert (await challenge(gateway, backup)).status == 401
        gateway.clock.advance(30)
        assert (await challenge(gateway, current_code(data["secret"], gateway.clock))).status == 200


async def restarted_empty(gateway: Gateway, redis_server: RedisServer) -> None:
    """Stop ``redis_server`` and start a new one, empty, on its port; return once the gateway's revocation feed
    (which sees every outage) is back."""
    revocations = gateway.runtime.revocations
    redis_server.stop()
    await eventually(lambda: not revocations.healthy, "the revocation feed to notice Redis is gone", within=10)
    redis_server.start()
    await eventually(lambda: revocations.healthy, "the revocation feed to reconnect to Redis", within=20)


async def _fail(gateway: Gateway, times: int) -> list[int]:
    statuses = []
    for _ in range(times):
        statuses.append((await challenge(gateway, "000000")).status)
    return statuses


def _wrong_code_exists(data: dict[str, Any], gateway: Gateway) -> None:
    # "000000" is the valid code in about one run in a million; make that visible rather than flaky.
    assert current_code(data["secret"], gateway.clock) != "000000", "rerun: 000000 happens to be the current code"


async def test_lockout_after_five_failures_with_retry_after(gateway: Gateway) -> None:
    """Five wrong codes in five minutes lock the user: 429 + Retry-After, even for the right code."""
    data = await enrolled(gateway)
    _wrong_code_exists(data, gateway)
    assert await _fail(gateway, 5) == [401] * 5
    locked = await challenge(gateway, current_code(data["secret"], gateway.clock))
    assert locked.status == 429
    assert (await locked.json())["code"] == "locked_out"
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    gateway.clock.advance(61)
    assert (await challenge(gateway, current_code(data["secret"], gateway.clock))).status == 200


async def test_concurrent_wrong_codes_never_outrun_the_lockout(gateway: Gateway) -> None:
    """Sixty wrong codes sent at once are not sixty guesses: each code's attempt is settled in one atomic step of
    shared state (refused if locked, else counted), so exactly five count (401) and the rest are refused once those
    five locked the user (429 locked_out; none waits, as no attempt holds a reservation); then the right code is
    refused too (429 locked_out)."""
    data = await enrolled(gateway)
    valid = {current_code(data["secret"], gateway.clock, offset=step) for step in (-1, 0, 1)}
    guesses = [code for code in (f"{i:06d}" for i in range(1, 61)) if code not in valid]
    responses = await asyncio.gather(*(challenge(gateway, guess) for guess in guesses))
    codes = Counter([(r.status, (await r.json())["code"]) for r in responses])
    judged, locked = (401, "invalid_mfa_token"), (429, "locked_out")
    assert codes == {judged: 5, locked: len(guesses) - 5}
    locked = await challenge(gateway, current_code(data["secret"], gateway.clock))
    assert locked.status == 429 and (await locked.json())["code"] == "locked_out"


async def test_concurrent_wrong_passwords_never_outrun_the_lockout(gateway: Gateway) -> None:
    """Thirty wrong passwords at once: five are checked (401), the rest told to wait before any hashing (429)."""
    responses = await asyncio.gather(*(gateway.login(password=f"wrong-{i}") for i in range(30)))
    codes = Counter([(r.status, (await r.json())["code"]) for r in responses])
    judged, waited, locked = (401, "invalid_credentials"), (429, "attempts_busy"), (429, "locked_out")
    assert codes[judged] == 5 and codes[waited] + codes[locked] == 25 and set(codes) <= {judged, waited, locked}


async def test_correct_attempts_never_count_against_the_address(make_gateway: GatewayFactory) -> None:
    """With limits.ip.max_failures 3: one address signing in and stepping up again and again, and a burst of eight
    correct sign-ins at once (those beyond the limit wait a second, 429 Retry-After: 1), is never locked; three wrong
    codes from it then lock it (the user's own limit is five)."""
    gateway = await make_gateway({"limits": {"ip": {"max_failures": 3}}})
    data = await enrolled(gateway)
    for _ in range(4):
        assert (await gateway.login()).status == 200
        assert (await challenge(gateway, current_code(data["secret"], gateway.clock))).status == 200
        gateway.clock.advance(30)
    burst = await asyncio.gather(*(gateway.login() for _ in range(8)))
    assert Counter(r.status for r in burst)[200] >= 3 and {r.status for r in burst} <= {200, 429}
    for waited in (r for r in burst if r.status == 429):
        assert waited.headers["Retry-After"] == "1" and (await waited.json())["code"] == "attempts_busy"
    assert (await gateway.login()).status == 200
    _wrong_code_exists(data, gateway)
    assert await _fail(gateway, 3) == [401] * 3
    locked = await challenge(gateway, current_code(data["secret"], gateway.clock))
    assert locked.status == 429 and int(locked.headers["Retry-After"]) > 1


async def test_failures_spread_beyond_the_window_do_not_lock(gateway: Gateway) -> None:
    """Four failures, a pause longer than the window, four more: no lockout."""
    data = await enrolled(gateway)
    _wrong_code_exists(data, gateway)
    assert await _fail(gateway, 4) == [401] * 4
    gateway.clock.advance(301)
    assert await _fail(gateway, 4) == [401] * 4


async def test_backoff_grows_with_each_lockout(gateway: Gateway) -> None:
    """The second lockout lasts twice as long as the first."""
    data = await enrolled(gateway)
    _wrong_code_exists(data, gateway)
    await _fail(gateway, 5)
    first = int((await challenge(gateway, "000000")).headers["Retry-After"])
    gateway.clock.advance(first + 1)
    await _fail(gateway, 5)
    second = int((await challenge(gateway, "000000")).headers["Retry-After"])
    assert first == 60 and second == 120


async def test_lockout_key_is_the_case_folded_user_name(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    """Failures as 'Alice' and 'ALICE' count against one user, whose lockout then holds for 'alice'."""
    gateway = await make_gateway({"identity": {"source": "trusted_header"}, "trusted_proxies": ["127.0.0.1/32"]})
    await gateway.post("/api/mfa/enable", headers={"X-Forwarded-User": "alice"})
    for name in ("Alice", "ALICE", "aLiCe", "ALICE", "Alice"):
        response = await gateway.post("/api/mfa/verify", {"token": "000000"}, headers={"X-Forwarded-User": name})
        assert response.status in (401, 429)
    locked = await gateway.post("/api/mfa/verify", {"token": "000000"}, headers={"X-Forwarded-User": "alice"})
    assert locked.status == 429


async def test_more_than_100_consecutive_failures_are_impossible(make_gateway: GatewayFactory) -> None:
    """Waiting out every lockout, the 100th consecutive failure locks the user until an admin reset."""
    gateway = await make_gateway({"session": {"ttl": 2_592_000, "idle_timeout": 2_592_000}})
    data = await enrolled(gateway)
    _wrong_code_exists(data, gateway)
    failures = 0
    while failures < 100:
        response = await challenge(gateway, "000000")
        body = await response.json()
        if response.status == 401:
            assert body["code"] == "invalid_mfa_token"
            failures += 1
        else:
            assert response.status == 429, body
            gateway.clock.advance(int(response.headers["Retry-After"]) + 1)
    gateway.clock.advance(60 * 86400)
    await gateway.login()
    refused = await challenge(gateway, current_code(data["secret"], gateway.clock))
    assert refused.status == 429, await refused.text()
    await gateway.runtime.state.clear_failures(["user:alice"])
    assert (await challenge(gateway, current_code(data["secret"], gateway.clock))).status == 200


async def test_password_guessing_is_rate_limited(gateway: Gateway) -> None:
    """Login attempts are limited like codes: five wrong passwords lock further attempts with 429."""
    statuses = [(await gateway.login(password="wrong")).status for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    assert (await gateway.login()).status == 429


@pytest.mark.parametrize(
    "token", ["12345", "1234567", "12a456", "١٢٣٤٥٦", "１２３４５６", "123456\x00", "x" * 65, "9" * 10_000]
)
async def test_malformed_codes_get_400_not_500(gateway: Gateway, token: str) -> None:
    """Wrong length, non-digit, non-ASCII-digit and oversized codes are a 400 with a stable code."""
    await enrolled(gateway)
    response = await challenge(gateway, token)
    assert response.status == 400
    assert (await response.json())["code"] in ("invalid_code_format",)


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400, "invalid_json"),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400, "invalid_json"),
        (b'{"token": 123456}', {"Content-Type": "application/json"}, 400, "invalid_field"),
        (b'{"token": null}', {"Content-Type": "application/json"}, 400, "invalid_field"),
        (b"token=123456", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "json_required"),
        (b'{"token": "' + b"1" * 20_000 + b'"}', {"Content-Type": "application/json"}, 413, "body_too_large"),
        (b"\xff\xfe", {"Content-Type": "application/json"}, 400, "invalid_json"),
    ],
)
async def test_malformed_requests_get_a_json_4xx(
    gateway: Gateway, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    """Broken bodies, wrong content types and oversized bodies: a 4xx JSON error, never a 500."""
    await enrolled(gateway)
    response = await gateway.client.post(gateway.prefix + "/api/mfa/challenge", data=body, headers=headers)
    assert response.status == status
    assert await response.json() == {"success": False, "error": response_error(await response.json()), "code": code}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (json.dumps({"username": "alice", "password": PASSWORD}).encode(), 200, None),
        (b'{"username": "alice", "password": "' + b"x" * 20_000 + b'"}', 413, "body_too_large"),
    ],
    ids=["read whole", "too large in pieces"],
)
async def test_a_json_body_that_arrives_in_pieces_is_read_whole(
    gateway: Gateway, body: bytes, status: int, code: str | None
) -> None:
    """A chunked JSON body is read to its end (not cut at the first piece into invalid JSON), and one over the limit
    is 413 however it arrives."""
    response = await gateway.client.post(
        gateway.prefix + "/api/login", data=in_pieces(body, 4), headers={"Content-Type": "application/json"}
    )
    assert response.status == status, await response.text()
    if code is not None:
        assert (await response.json())["code"] == code


def response_error(body: dict[str, Any]) -> str:
    assert isinstance(body["error"], str) and body["error"]
    return body["error"]


@pytest.mark.parametrize("path", ["/nope", "/api/mfa/unknown", "/api", "/api/login/extra"])
async def test_unknown_routes_under_the_prefix_are_json_404(gateway: Gateway, path: str) -> None:
    """Unknown routes under the prefix answer 404 in the JSON error shape."""
    response = await gateway.client.get(gateway.prefix + path)
    assert response.status == 404
    assert (await response.json())["code"] == "not_found"


async def test_wrong_method_is_a_json_405(gateway: Gateway) -> None:
    """GET on a POST endpoint is a 405 JSON error with an Allow header."""
    response = await gateway.client.get(gateway.prefix + "/api/mfa/enable")
    assert response.status == 405 and response.headers["Allow"] == "POST"
    assert (await response.json())["code"] == "method_not_allowed"


async def test_api_needs_a_first_factor(gateway: Gateway) -> None:
    """Without a session, bearer token or trusted header every MFA endpoint is 401."""
    for path in ("/api/mfa/enable", "/api/mfa/verify", "/api/mfa/disable", "/api/mfa/backup-codes"):
        response = await gateway.post(path, {"token": "123456"})
        assert response.status == 401, path
    assert (await gateway.client.get(gateway.prefix + "/api/mfa/status")).status == 401


async def test_forged_session_cookie_and_bearer_are_refused(gateway: Gateway) -> None:
    """A made-up cookie gives no identity; a forged bearer token is a 401 invalid_token."""
    gateway.client.session.cookie_jar.update_cookies({gateway.settings.session.cookie_name: "AQ" + "A" * 100})
    assert (await gateway.client.get(gateway.prefix + "/api/mfa/status")).status == 401
    forged = await gateway.client.get(
        gateway.prefix + "/api/mfa/status",
        headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."},
    )
    assert forged.status == 401 and (await forged.json())["code"] == "invalid_token"


async def test_header_identity_from_an_untrusted_address_is_ignored(make_gateway: GatewayFactory) -> None:
    """trusted_header: the header counts only from trusted_proxies; from anyone else it is ignored (401)."""
    untrusted = await make_gateway({"identity": {"source": "trusted_header"}, "trusted_proxies": ["10.0.0.0/8"]})
    response = await untrusted.post("/api/mfa/enable", headers={"X-Forwarded-User": "alice"})
    assert response.status == 401
    trusted = await make_gateway({"identity": {"source": "trusted_header"}, "trusted_proxies": ["127.0.0.1/32"]})
    assert (await trusted.post("/api/mfa/enable", headers={"X-Forwarded-User": "alice"})).status == 200


async def test_step_up_cookie_of_one_user_does_not_count_for_another(make_gateway: GatewayFactory) -> None:
    """A step-up cookie earned by alice, presented with bob's header identity, gives bob no MFA session."""
    gateway = await make_gateway({"identity": {"source": "trusted_header"}, "trusted_proxies": ["127.0.0.1/32"]})
    alice = {"X-Forwarded-User": "alice"}
    data = (await (await gateway.post("/api/mfa/enable", headers=alice)).json())["data"]
    assert (
        await gateway.post("/api/mfa/verify", {"token": current_code(data["secret"], gateway.clock)}, headers=alice)
    ).status == 200
    mine = await (await gateway.client.get(gateway.prefix + "/api/mfa/status", headers=alice)).json()
    theirs = await (
        await gateway.client.get(gateway.prefix + "/api/mfa/status", headers={"X-Forwarded-User": "bob"})
    ).json()
    assert mine["data"]["mfaSession"] is True
    assert theirs["data"]["user"] == "bob" and theirs["data"]["mfaSession"] is False


async def test_database_holds_neither_totp_secret_nor_backup_codes(gateway: Gateway, tmp_path: Path) -> None:
    """No table value (and, for SQLite, no byte of the files) holds a readable TOTP secret or backup code."""
    data = await enrolled(gateway)
    await challenge(gateway, data["backupCodes"][3])
    raw = await database_contents(gateway.settings.store.url)
    assert b"$argon2id$" in raw, "the backup-code hashes should be in the dump"
    await gateway.runtime.store.close()
    raw += b"".join(path.read_bytes() for path in tmp_path.glob("mfa.db*"))
    needles = [data["secret"], data["secret"].lower()]
    for code in data["backupCodes"]:
        needles += [code, code.replace("-", ""), code.lower()]
    assert [n for n in needles if n.encode() in raw] == []


async def test_audit_events_carry_no_code_secret_or_password(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    """Audit JSON lines name event, user, IP and result, but never a code, the secret or a password."""
    from mfa_gateway.runtime import build_runtime

    gateway = await make_gateway()
    data = await enrolled(gateway)
    await challenge(gateway, data["backupCodes"][0])
    await challenge(gateway, "000000")
    assert gateway.audit is not None
    events = [e.event for e in gateway.audit.events]
    assert {"login.password", "mfa.enroll.start", "mfa.enroll.activate", "mfa.verify"} <= set(events)
    from mfa_gateway.adapters.audit import event_json

    text = "\n".join(event_json(e) for e in gateway.audit.events)
    secrets = [
        data["secret"],
        PASSWORD,
        "000000",
        *data["backupCodes"],
        *(c.replace("-", "") for c in data["backupCodes"]),
    ]
    assert [s for s in secrets if s in text] == []
    record = json.loads(text.splitlines()[0])
    assert set(record) >= {"time", "event", "user", "client_ip", "result"}
    assert build_runtime  # the same runtime builds the JSON-lines sink used in production


async def test_redis_down_fails_closed_but_health_stays_up(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    """With Redis unreachable: MFA endpoints 503 dependency_unavailable, readyz 503, healthz 200."""
    from tests.helpers.servers import running_redis

    with running_redis(tmp_path) as redis:
        gateway = await make_gateway({"state": {"backend": "redis", "url": redis.url}})
        data = await enrolled(gateway)
        assert await gateway.runtime.revocations.wait_healthy(5.0)  # the feed subscribes on the first loop turns
        assert (await gateway.client.get(gateway.prefix + "/readyz")).status == 200
    response = await challenge(gateway, current_code(data["secret"], gateway.clock))
    assert response.status == 503
    assert (await response.json())["code"] == "dependency_unavailable"
    assert (await gateway.client.get(gateway.prefix + "/readyz")).status == 503
    assert (await gateway.client.get(gateway.prefix + "/healthz")).status == 200


async def test_responses_carry_security_headers(gateway: Gateway) -> None:
    """Every gateway response is no-store, nosniff, and has a deny-all CSP."""
    response = await gateway.client.get(gateway.prefix + "/healthz")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


async def test_session_cookie_attributes(gateway: Gateway) -> None:
    """The session cookie is __Host-, HttpOnly, Secure, SameSite=Lax, Path=/."""
    response = await gateway.login()
    cookie = response.cookies[gateway.settings.session.cookie_name]
    assert gateway.settings.session.cookie_name.startswith("__Host-")
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert not cookie["domain"]
