"""The OpenAPI document: served at {prefix}/api/openapi.json, valid OpenAPI 3.1, and true of a running gateway.

schemathesis generates requests from the document (bounded: a few dozen per operation, no shrinking) against a
real `serve` process in builtin mode, as an anonymous caller and as a signed-in user with a bearer token, and checks
every answer: no 5xx, a status the document lists, the content type and the body schema it gives.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mfa_gateway.web.openapi import openapi_document
from tests.helpers.gateway import FAST_HASHING, add_user, make_settings, write_keys
from tests.helpers.servers import GatewayProcess, start_gateway

PASSWORD = "openapi password 1"
PREFIX = "/_mfa"


def _get_json(url: str, body: dict[str, Any] | None = None) -> Any:
    """GET url, or POST body as JSON to it (a loopback http:// URL the test built, hence the S310 waivers)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.load(response)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp_path = tmp_path_factory.mktemp("openapi")
    document: dict[str, Any] = {
        "identity": {"source": "builtin", "users_file": "users.yaml"},
        "store": {"url": "sqlite+aiosqlite:///mfa.db"},
        "hashing": FAST_HASHING,
        "secrets": write_keys(tmp_path / "keys"),
        "audit": {"path": "audit.log", "store": False},
        # Generated requests fail often: keep the limits from turning every later answer into a 429.
        "limits": {"user": {"max_failures": 1000}, "ip": {"max_failures": 1000}},
        # WebAuthn on, so its operations are driven too (no browser reaches this origin; answers are generated).
        "webauthn": {"origins": ["https://localhost:8443"]},
    }
    add_user(make_settings(tmp_path, document), "alice", PASSWORD)
    gateway = start_gateway(document, tmp_path / "gateway.yaml", tmp_path / "gateway.log", cwd=tmp_path)
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def token(served: GatewayProcess) -> str:
    """A bearer token of a signed-in user (first factor; MFA not yet enrolled)."""
    body = _get_json(f"{served.url}{PREFIX}/api/login", {"username": "alice", "password": PASSWORD})
    return str(body["token"])


def test_the_document_is_served_with_the_prefix_and_is_valid_openapi_31(served: GatewayProcess) -> None:
    """GET {prefix}/api/openapi.json answers the package's document with `servers` set to the prefix, and it is
    a valid OpenAPI 3.1 document whose paths are the routes the gateway serves."""
    document = _get_json(f"{served.url}{PREFIX}/api/openapi.json")
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["servers"][0]["url"] == PREFIX
    assert document == json.loads(json.dumps(openapi_document(PREFIX)))
    assert {"/api/login", "/api/mfa/challenge", "/api/mfa/status", "/jwks.json", "/readyz"} <= set(document["paths"])


OPERATIONS = [
    (path, method.upper())
    for path, item in openapi_document(PREFIX)["paths"].items()
    for method in item
    if method in {"get", "post", "put", "patch", "delete"}
]
# What the document promises: no 5xx, and every answer as described. Not schemathesis' "positive data
# acceptance": a schema-valid body can still be refused on its meaning (a code of the wrong shape is 400
# invalid_code_format, an unenrolled user's challenge 409), which the document lists as such.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
BOUNDED = settings(
    max_examples=40,
    phases=[Phase.explicit, Phase.generate],
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


@pytest.fixture(scope="module")
def api_schema(served: GatewayProcess) -> Any:
    loaded = schemathesis.openapi.from_url(f"{served.url}{PREFIX}/api/openapi.json")
    loaded.config.update(base_url=f"{served.url}{PREFIX}")
    return loaded


def _check_operation(api_schema: Any, path: str, method: str, headers: dict[str, str]) -> None:
    """Requests that fit the document and requests that do not (wrong types, missing fields, other shapes)."""
    operation = api_schema[path][method]
    strategies = [operation.as_strategy(mode) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]

    @BOUNDED
    @given(case=st.one_of(strategies))
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_every_answer_to_an_anonymous_caller_matches_the_document(api_schema: Any, path: str, method: str) -> None:
    """Generated requests to the operation, without credentials, get no 5xx and an answer the document describes:
    a status it lists, its content type and its body schema."""
    _check_operation(api_schema, path, method, {})


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_every_answer_to_a_signed_in_caller_matches_the_document(
    api_schema: Any, token: str, path: str, method: str
) -> None:
    """The same with a signed-in user's bearer token (first factor; MFA not enrolled)."""
    _check_operation(api_schema, path, method, {"Authorization": f"Bearer {token}"})


def test_schemathesis_would_catch_an_undocumented_answer(served: GatewayProcess, tmp_path: Path) -> None:
    """The check above is not a no-op: with 401 removed from api/mfa/status's responses, an anonymous call fails
    schemathesis' status-code conformance check."""
    document = openapi_document(PREFIX)
    changed = json.loads(json.dumps(document))
    del changed["paths"]["/api/mfa/status"]["get"]["responses"]["401"]
    loaded = schemathesis.openapi.from_dict(changed)
    loaded.config.update(base_url=f"{served.url}{PREFIX}")
    operation = loaded["/api/mfa/status"]["GET"]
    case = operation.Case()
    with pytest.raises(FailureGroup) as failed:
        case.call_and_validate()
    assert "Undocumented status code" in str(failed.value.exceptions[0])
