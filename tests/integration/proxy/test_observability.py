"""Metrics on the admin listener and structured, redacted logs, observed on a real gateway in front of the app."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from mfa_gateway import logs
from mfa_gateway.web.admin_listener import create_admin_app
from mfa_gateway.web.server import start_site
from tests.helpers.servers import bound_port
from tests.helpers.support import eventually
from tests.integration.proxy.conftest import APP_USERS, Stack, StackFactory
from tests.integration.proxy.test_proxy_security import signed_in

REPO = Path(__file__).resolve().parents[3]


def _sample(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample in the Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in exposition.splitlines():
        if line.startswith(name + ("{" + wanted + "}" if labels else " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _scrape(aiohttp_client: object, stack: Stack) -> str:
    client: TestClient = await aiohttp_client(create_admin_app(stack.runtime))  # type: ignore[operator]
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return await response.text()


async def test_metrics_count_requests_by_decision_and_verifications_by_result(
    stack: Stack, aiohttp_client: object
) -> None:
    """/metrics counts proxied requests by decision, code checks by method and result, enrollments, and reports the
    health of the store, the state and the revocation feed."""
    assert (await stack.raw("GET", "/public")).status == 200
    assert (await stack.raw("GET", "/admin", {"Accept": "text/html"})).status in (302, 303)
    secret = await signed_in(stack)
    assert (await stack.raw("GET", "/admin")).status == 200
    stack.clock.advance(120)
    wrong = await stack.csrf_form("/_mfa/disable", "/_mfa/disable", {"code": "000000"})
    assert wrong.status in (400, 401), wrong.body[:200]
    exposition = await _scrape(aiohttp_client, stack)
    assert _sample(exposition, "mfa_gateway_requests_total", route="proxy", decision="bypass") >= 1
    assert _sample(exposition, "mfa_gateway_requests_total", route="proxy", decision="unauthenticated") >= 1
    assert _sample(exposition, "mfa_gateway_requests_total", route="proxy", decision="allow") >= 1
    assert _sample(exposition, "mfa_gateway_request_duration_seconds_count", route="proxy") >= 3
    assert _sample(exposition, "mfa_gateway_mfa_verifications_total", method="otp", result="success") == 1
    assert _sample(exposition, "mfa_gateway_mfa_verifications_total", method="otp", result="failure") == 1
    assert _sample(exposition, "mfa_gateway_enrollments_total", change="activated") == 1
    assert _sample(exposition, "mfa_gateway_dependency_up", dependency="store") == 1
    assert _sample(exposition, "mfa_gateway_dependency_up", dependency="state") == 1
    assert _sample(exposition, "mfa_gateway_revocation_feed_healthy") == 1
    assert "mfa_gateway_challenges_pending " in exposition
    for private in ("alice", secret, *APP_USERS.values(), "127.0.0.1"):
        assert private not in exposition  # no user, secret, password or address in a label


async def test_every_metric_the_shipped_alert_rules_use_is_exposed(stack: Stack, aiohttp_client: object) -> None:
    """config/prometheus-alerts.yaml is well formed (every rule has an alert, an expression, a severity and a
    summary) and names only metrics the admin listener exposes, so no alert silently watches nothing."""
    rules = yaml.safe_load((REPO / "config" / "prometheus-alerts.yaml").read_text())["groups"][0]["rules"]
    assert rules
    exposition = await _scrape(aiohttp_client, stack)
    exposed = {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ")}
    for rule in rules:
        assert {"alert", "expr", "for"} <= set(rule) and rule["labels"]["severity"] in ("page", "ticket"), rule
        assert rule["annotations"]["summary"], rule["alert"]
        for name in re.findall(r"mfa_gateway_\w+", rule["expr"]):
            family = re.sub(r"_(count|sum|bucket)$", "", name)
            assert family in exposed, f"{rule['alert']}: {name} is not among {sorted(exposed)}"


async def test_upstream_errors_are_counted(make_stack: StackFactory, aiohttp_client: object) -> None:
    """An app that cannot be reached counts as an upstream error (and a 502 request), not as a gateway failure."""
    stack = await make_stack({"upstream": {"url": "http://127.0.0.1:9"}, "policy": {"default": "bypass"}})
    assert (await stack.raw("GET", "/anything")).status == 502
    exposition = await _scrape(aiohttp_client, stack)
    assert _sample(exposition, "mfa_gateway_upstream_errors_total", kind="unavailable") == 1
    assert _sample(exposition, "mfa_gateway_requests_total", route="proxy", decision="upstream_unavailable") == 1


async def test_access_events_are_json_with_request_id_user_decision_and_latency(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """At level info each request leaves one JSON access event: request id (also sent to the app), method, path
    without its query, status, decision, user and latency; never the session cookie."""
    await signed_in(stack)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mfa_gateway.access"):
        response = await stack.raw("GET", "/admin?token=abc123secret")
    assert response.status == 200
    records = [r for r in caplog.records if r.name == "mfa_gateway.access"]
    assert len(records) == 1
    line = json.loads(logs.JsonFormatter().format(records[0]))
    assert line["level"] == "info" and line["logger"] == "mfa_gateway.access"
    assert line["method"] == "GET" and line["path"] == "/admin" and line["status"] == 200
    assert line["decision"] == "allow" and line["user"] == "alice" and line["route"] == "proxy"
    assert re.fullmatch(r"[0-9a-f]{16}", line["request_id"]) and line["latency_ms"] >= 0
    text = json.dumps(line)
    assert "abc123secret" not in text
    assert all(value not in text for value in stack.jar.values())


SEEN_IDS = web.AppKey("seen_ids", list[str])


async def _record_request_id(request: web.Request) -> web.Response:
    """The app's side: remember the X-Request-Id it was given; its login always fails (so it passes back)."""
    request.app[SEEN_IDS].append(request.headers.get("X-Request-Id", "<none>"))
    return web.Response(status=401 if request.method == "POST" else 200, text="app")


@pytest.fixture
async def recording_app() -> AsyncIterator[tuple[int, list[str]]]:
    app = web.Application()
    app[SEEN_IDS] = []
    app.router.add_route("*", "/{tail:.*}", _record_request_id)
    runner = await start_site(app, "127.0.0.1", 0)
    yield bound_port(runner), app[SEEN_IDS]
    await runner.cleanup()


async def test_every_proxied_request_is_logged_and_counted_with_the_request_id_the_app_received(
    make_stack: StackFactory,
    recording_app: tuple[int, list[str]],
    aiohttp_client: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever the outcome (passed to the app, challenged, refused before any decision for an ambiguous path, an
    intercepted login), a proxied request leaves one access event and one counted sample, under the id a trusted
    proxy gave in X-Request-Id: the id the app received when the request reached it. From an untrusted peer the id
    is the gateway's own, whatever the client sent."""
    app_port, seen = recording_app
    stack = await make_stack({"trusted_proxies": ["127.0.0.1/32"]}, app_port=app_port)
    asked = [
        ("GET", "/public", "trace-public", 200, "bypass"),
        ("GET", "/admin", "trace-challenged", 401, "unauthenticated"),
        ("GET", "/a/%2e%2e/admin", "trace-ambiguous", 400, "ambiguous_path"),
        ("POST", "/login", "trace-login", 401, "login"),
    ]
    with caplog.at_level(logging.INFO, logger="mfa_gateway.access"):
        for method, target, given, status, _ in asked:
            headers = {"X-Request-Id": given, "Accept": "application/json"}
            form = b"username=alice&password=wrong"
            if method == "POST":
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = await stack.raw(method, target, headers, form if method == "POST" else b"")
            assert response.status == status, (target, response.body[:200])
    events = [json.loads(logs.JsonFormatter().format(r)) for r in caplog.records if r.name == "mfa_gateway.access"]
    assert [(e["request_id"], e["status"], e["decision"]) for e in events] == [
        (given, status, decision) for _, _, given, status, decision in asked
    ]
    assert seen == ["trace-public", "trace-login"]  # only these reached the app
    exposition = await _scrape(aiohttp_client, stack)
    for _, _, _, _, decision in asked:
        assert _sample(exposition, "mfa_gateway_requests_total", route="proxy", decision=decision) == 1, decision
    assert _sample(exposition, "mfa_gateway_request_duration_seconds_count", route="proxy") == len(asked)

    caplog.clear()
    untrusted = await make_stack(name="untrusted", app_port=app_port)
    with caplog.at_level(logging.INFO, logger="mfa_gateway.access"):
        for target in ("/public", "/admin"):
            await untrusted.raw("GET", target, {"X-Request-Id": "forged-id", "Accept": "application/json"})
    ids = [r.__dict__["request_id"] for r in caplog.records if r.name == "mfa_gateway.access"]
    assert len(ids) == 2 and all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert seen[-1] == ids[0]  # the app got the gateway's id, not the client's


def test_redaction_removes_registered_secrets_credentials_and_codes() -> None:
    """Every log line is redacted: loaded secret values, bearer tokens, JWTs, Vault tokens, session cookies,
    password/secret pairs and TOTP codes given as values, in the message, the fields and the traceback."""
    logs.register_secret("K9-registered-secret-value")
    record = logging.LogRecord(
        "mfa_gateway.test",
        logging.ERROR,
        __file__,
        1,
        "login failed password=%s with Authorization: Bearer %s code=%s cookie __Host-mfa_session=%s, %s",
        ("hunter22", "abcdefghijklmnop", "123456", "sealedcookievalue", "K9-registered-secret-value"),
        None,
    )
    record.token = "hvs.CAESIJshouldneverbeseen1234567890"
    record.detail = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    try:
        raise ValueError("secret_id=s3cr3t-from-a-library K9-registered-secret-value")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    # as another handler (pytest's capture, an operator's extra handler) leaves it: the raw traceback cached
    record.exc_text = logging.Formatter().formatException(record.exc_info)
    record.stack_info = "Stack (most recent call last):\n  token=hvs.CAESIJshouldneverbeseen1234567890"
    for formatter in (logs.JsonFormatter(), logs.TextFormatter()):
        line = formatter.format(record)
        for leaked in (
            "hunter22",
            "abcdefghijklmnop",
            "123456",
            "sealedcookievalue",
            "K9-registered-secret-value",
            "hvs.CAES",
            "eyJzdWIiOiJhbGljZSJ9",
            "s3cr3t-from-a-library",
        ):
            assert leaked not in line, (leaked, line)
        assert "[redacted]" in line and "login failed" in line
    record.exc_info = record.exc_text = record.stack_info = None


async def test_the_secret_refresh_endpoint_needs_the_admin_token(
    make_stack: StackFactory, aiohttp_client: object, tmp_path: Path
) -> None:
    """POST /admin/secrets/refresh exists only with admin.token, answers 401 without the right bearer token, and with
    it re-reads every secret and reports each one's state (never a value)."""
    token_file = tmp_path / "admin-token"
    token_file.write_text("admin-token-" + "x" * 24 + "\n")
    without = await make_stack({}, name="no-token")
    client: TestClient = await aiohttp_client(create_admin_app(without.runtime))  # type: ignore[operator]
    assert (await client.post("/admin/secrets/refresh")).status == 404  # without admin.token: no such endpoint
    stack = await make_stack({"admin": {"token": f"file:{token_file}"}}, name="token")
    client = await aiohttp_client(create_admin_app(stack.runtime))  # type: ignore[operator]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "admin-token-" + "x" * 24}):
        refused = await client.post("/admin/secrets/refresh", headers=headers)
        assert refused.status == 401 and (await refused.json())["code"] == "invalid_token"
    right = {"Authorization": "Bearer admin-token-" + "x" * 24}
    done = await client.post("/admin/secrets/refresh", headers=right)
    body = await done.json()
    assert done.status == 200 and body["success"] is True
    assert {entry["secret"] for entry in body["data"]["secrets"]} >= {"secrets.keyring", "admin.token"}
    assert "admin-token-" not in json.dumps(body)


async def test_the_audit_stream_passes_the_same_redaction_step() -> None:
    """An audit line is redacted like a log line: a loaded secret or a credential in an event never reaches the
    stream (the services put none in; this is the second line of defence)."""
    import io

    from mfa_gateway.adapters.audit import JsonLinesAudit
    from mfa_gateway.core.model import AuditEvent

    logs.register_secret("K7-audit-registered-secret")
    stream = io.StringIO()
    audit = JsonLinesAudit(stream, logs.redact)
    await audit.emit(
        AuditEvent(
            at=1_800_000_000.0,
            event="mfa.verify",
            result="failure",
            user_id="alice",
            detail={"reason": "K7-audit-registered-secret", "header": "Bearer abcdefghijklmnop"},
        )
    )
    line = json.loads(stream.getvalue())
    assert line["event"] == "mfa.verify" and line["user"] == "alice"
    assert "K7-audit-registered-secret" not in stream.getvalue() and "abcdefghijklmnop" not in stream.getvalue()


async def test_guessing_the_admin_token_is_throttled(
    make_stack: StackFactory, aiohttp_client: object, tmp_path: Path
) -> None:
    """After 5 wrong admin tokens within a minute every attempt, the right token included, is refused with 429 and
    Retry-After; a minute later (injected time) the right token works again."""
    token_file = tmp_path / "admin-token"
    token_file.write_text("admin-token-" + "y" * 24 + "\n")
    stack = await make_stack({"admin": {"token": f"file:{token_file}"}}, name="throttle")
    client: TestClient = await aiohttp_client(create_admin_app(stack.runtime))  # type: ignore[operator]
    right = {"Authorization": "Bearer admin-token-" + "y" * 24}
    for attempt in range(5):
        wrong = await client.post("/admin/secrets/refresh", headers={"Authorization": f"Bearer guess-{attempt}"})
        assert wrong.status == 401
    locked = await client.post("/admin/secrets/refresh", headers=right)
    assert locked.status == 429 and int(locked.headers["Retry-After"]) > 0
    stack.clock.advance(61)
    assert (await client.post("/admin/secrets/refresh", headers=right)).status == 200


async def test_a_websocket_through_the_proxy_is_logged_and_counted_once_it_ends(
    stack: Stack, aiohttp_client: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A WebSocket session bridged to the app leaves its access event (status 101) and metric sample when it ends."""
    import aiohttp

    with caplog.at_level(logging.INFO, logger="mfa_gateway.access"):
        async with aiohttp.ClientSession() as session, session.ws_connect(stack.url + "/ws") as ws:
            await ws.send_str("hello")
            assert (await ws.receive(timeout=5)).data == "hello"

        def logged() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.name == "mfa_gateway.access" and r.__dict__["path"] == "/ws"]

        await eventually(lambda: bool(logged()), "the WebSocket's access event", within=10)
    (record,) = logged()
    assert record.__dict__["status"] == 101 and record.__dict__["route"] == "proxy"
    exposition = await _scrape(aiohttp_client, stack)
    assert _sample(exposition, "mfa_gateway_request_duration_seconds_count", route="proxy") == 1
