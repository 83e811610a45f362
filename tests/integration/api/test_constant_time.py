"""Security rule: "constant-time comparison everywhere" (DESIGN.md, Security rules).

Two lines of defence against a secret comparison becoming ``==``:

* Behaviour: on a real gateway, at each place named here where a client's guess meets a secret-derived value
  (TOTP codes, CSRF tokens, the admin bearer token, the step-up session's binding, backup codes and passwords
  through Argon2id), the guess must reach a constant-time primitive, and that primitive's verdict must be the one
  the gateway acts on. A recording ``compare_digest`` proves the first; making it refuse one value proves the
  second (a ``==`` beside it would not notice and the request would still succeed).
* Source: a scan for ``==``, ``!=``, ``in`` and ``not in`` where an operand's name says it holds a secret (a
  variable or attribute, a constant key it was looked up by, or what ``str()``, ``.encode()`` and the like were
  applied to), apart from the reviewed comparisons listed below (each with the reason it is not an attacker's
  oracle). It is a tripwire, not a proof: it goes by names, so a secret under an innocent name, compared inside an
  expression it does not look into (an f-string, a hash or any other call's result) or by another means (``startswith``,
  ``dict`` lookup, ``sorted``) escapes it; the behaviour tests above are the ones that follow the values.
"""

from __future__ import annotations

import ast
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import argon2
import argon2.exceptions
import pyotp.utils
import pytest
from aiohttp.test_utils import TestClient

import mfa_gateway
from mfa_gateway.core import totp
from mfa_gateway.core.model import TotpParams
from mfa_gateway.core.session import binding_of
from mfa_gateway.web.admin_listener import create_admin_app
from tests.helpers.gateway import current_code
from tests.integration.api.conftest import PASSWORD, Gateway, GatewayFactory

# The properties checked here do not depend on the state or store backend: run them once.
MEMORY_ONLY = pytest.mark.parametrize("backend", ["memory+sqlite"], indirect=True)

_REAL_COMPARE = hmac.compare_digest


def _as_bytes(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode()
    assert isinstance(value, bytes | bytearray | memoryview), type(value)
    return bytes(value)


@dataclass
class Comparisons:
    """Every constant-time comparison made while installed, and values whose comparisons are made to fail."""

    calls: list[tuple[bytes, bytes]] = field(default_factory=list)
    refused: set[bytes] = field(default_factory=set)

    def compare(self, a: object, b: object) -> bool:
        pair = (_as_bytes(a), _as_bytes(b))
        self.calls.append(pair)
        if self.refused & set(pair):
            return False
        return _REAL_COMPARE(*pair)

    def refuse(self, value: str | bytes) -> None:
        """From now on, any comparison involving ``value`` answers "different"."""
        self.refused.add(_as_bytes(value))

    def involving(self, value: str | bytes) -> list[tuple[bytes, bytes]]:
        needle = _as_bytes(value)
        return [pair for pair in self.calls if needle in pair]


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> Comparisons:
    """Installs the recorder as every public spelling of compare_digest (hmac, secrets, and pyotp's own import)."""
    recorder = Comparisons()
    monkeypatch.setattr(hmac, "compare_digest", recorder.compare)
    monkeypatch.setattr(secrets, "compare_digest", recorder.compare)
    monkeypatch.setattr(pyotp.utils, "compare_digest", recorder.compare)
    return recorder


@dataclass
class Argon2Checks:
    """Every Argon2id verification (constant time inside libargon2) made while installed."""

    calls: list[str] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)


@pytest.fixture
def argon2_checks(monkeypatch: pytest.MonkeyPatch) -> Argon2Checks:
    checks = Argon2Checks()
    real_verify = argon2.PasswordHasher.verify

    def verify(self: argon2.PasswordHasher, stored: str | bytes, password: str | bytes) -> bool:
        value = password.decode() if isinstance(password, bytes) else password
        checks.calls.append(value)
        if value in checks.refused:
            raise argon2.exceptions.VerifyMismatchError()
        return real_verify(self, stored, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", verify)
    return checks


async def _enrolled(gateway: Gateway) -> dict[str, Any]:
    """alice signed in with MFA active; the clock then moves one step on so a fresh code is due."""
    assert (await gateway.login()).status == 200
    data = await gateway.enable()
    response = await gateway.post("/api/mfa/verify", {"token": current_code(data["secret"], gateway.clock)})
    assert response.status == 200, await response.text()
    gateway.clock.advance(30)
    return data


# -- TOTP codes --------------------------------------------------------------------------------------------------


@MEMORY_ONLY
async def test_a_totp_code_is_compared_in_constant_time_with_every_step_of_the_window(
    gateway: Gateway, comparisons: Comparisons
) -> None:
    """The submitted code meets the code of each of the 3 steps of the ±1 window through compare_digest (no early
    exit once one matches), and the gateway accepts exactly when compare_digest says equal."""
    data = await _enrolled(gateway)
    code = current_code(data["secret"], gateway.clock)
    comparisons.calls.clear()
    comparisons.refuse(code)
    refused = await gateway.post("/api/mfa/challenge", {"token": code})
    assert refused.status == 401, "the right code passed although compare_digest called it different"
    expected = {current_code(data["secret"], gateway.clock, offset=o).encode() for o in (-1, 0, 1)}
    made = comparisons.involving(code)
    assert len(made) == 3, made
    assert {a if b == code.encode() else b for a, b in made} == expected

    comparisons.refused.clear()
    comparisons.calls.clear()
    accepted = await gateway.post("/api/mfa/challenge", {"token": code})
    assert accepted.status == 200, await accepted.text()
    assert len(comparisons.involving(code)) == 3  # the matching step is the middle one: the scan went on past it


def test_core_totp_verify_scans_the_whole_window_in_constant_time(comparisons: Comparisons) -> None:
    """The pure core check, for every position of the match in a ±2 window: 5 constant-time comparisons each."""
    secret = totp.generate_secret()
    params = TotpParams()
    now = 1_800_000_000.0
    step = totp.time_step(now, params)
    for offset in range(-2, 3):
        code = totp.code_at(secret, params, step + offset)
        comparisons.calls.clear()
        assert totp.verify(secret, code, params, now, window=2) in range(step - 2, step + 3)
        assert len(comparisons.involving(code)) == 5, offset


# -- backup codes and passwords: Argon2id, whose verification compares in constant time --------------------------


@MEMORY_ONLY
async def test_backup_codes_and_passwords_are_checked_only_through_argon2(
    gateway: Gateway, argon2_checks: Argon2Checks
) -> None:
    """A backup code and a password are accepted only when Argon2id verification says so: no plaintext or digest
    is compared with == anywhere beside it."""
    data = await _enrolled(gateway)
    backup = data["backupCodes"][0]
    normalised = backup.replace("-", "")
    argon2_checks.refused.add(normalised)
    refused = await gateway.post("/api/mfa/challenge", {"token": backup})
    assert refused.status == 401, "the backup code passed although Argon2id refused it"
    assert normalised in argon2_checks.calls
    argon2_checks.refused.clear()
    assert (await gateway.post("/api/mfa/challenge", {"token": backup})).status == 200

    argon2_checks.refused.add(PASSWORD)
    assert (await gateway.login()).status == 401, "the password passed although Argon2id refused it"
    argon2_checks.refused.clear()
    assert (await gateway.login()).status == 200


# -- CSRF tokens -------------------------------------------------------------------------------------------------


def _csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page[:500]
    return found.group(1)


@MEMORY_ONLY
async def test_the_csrf_pair_is_compared_in_constant_time(gateway: Gateway, comparisons: Comparisons) -> None:
    """The form's token meets the cookie's through compare_digest, and its verdict decides the form."""
    token = _csrf_of(await (await gateway.client.get(gateway.prefix + "/logout")).text())
    comparisons.refuse(token)
    refused = await gateway.client.post(gateway.prefix + "/logout", data={"csrf": token})
    assert refused.status == 403, "a matching CSRF pair passed although compare_digest called it different"
    assert (token.encode(), token.encode()) in comparisons.calls
    comparisons.refused.clear()
    assert (await gateway.client.post(gateway.prefix + "/logout", data={"csrf": token})).status == 200


# -- the admin bearer token ----------------------------------------------------------------------------------------


@MEMORY_ONLY
async def test_the_admin_token_is_compared_in_constant_time(
    make_gateway: GatewayFactory,
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    comparisons: Comparisons,
) -> None:
    """POST /admin/secrets/refresh: the bearer token meets admin.token through compare_digest, whose verdict wins."""
    admin_token = "admin-" + secrets.token_urlsafe(24)
    (tmp_path / "admin-token").write_text(admin_token + "\n")
    gateway = await make_gateway({"admin": {"token": f"file:{tmp_path / 'admin-token'}"}})
    client: TestClient[Any, Any] = await aiohttp_client(create_admin_app(gateway.runtime))
    right = {"Authorization": f"Bearer {admin_token}"}
    comparisons.refuse(admin_token)
    refused = await client.post("/admin/secrets/refresh", headers=right)
    assert refused.status == 401, "the right admin token passed although compare_digest called it different"
    assert (admin_token.encode(), admin_token.encode()) in comparisons.calls
    comparisons.refused.clear()
    assert (await client.post("/admin/secrets/refresh", headers=right)).status == 200


# -- the step-up session's binding to its first factor ------------------------------------------------------------


@MEMORY_ONLY
async def test_the_session_binding_is_compared_in_constant_time(
    make_gateway: GatewayFactory, comparisons: Comparisons
) -> None:
    """A step-up cookie counts only beside the first factor it is bound to; that binding (a hash of the first-factor
    credential) is compared through compare_digest, whose verdict decides whether the MFA session counts."""
    gateway = await make_gateway({"identity": {"source": "trusted_header"}, "trusted_proxies": ["127.0.0.1/32"]})
    alice = {"X-Forwarded-User": "alice"}
    data = (await (await gateway.post("/api/mfa/enable", headers=alice)).json())["data"]
    verified = await gateway.post(
        "/api/mfa/verify", {"token": current_code(data["secret"], gateway.clock)}, headers=alice
    )
    assert verified.status == 200

    async def mfa_session() -> bool:
        response = await gateway.client.get(gateway.prefix + "/api/mfa/status", headers=alice)
        assert response.status == 200
        return bool((await response.json())["data"]["mfaSession"])

    binding = binding_of("header:alice")
    comparisons.calls.clear()
    assert await mfa_session() is True
    assert (binding.encode(), binding.encode()) in comparisons.calls, "the binding was not compared in constant time"
    comparisons.refuse(binding)
    assert await mfa_session() is False, "the session counted although compare_digest called its binding different"


# -- source: no == on secret-named values -----------------------------------------------------------------------

PACKAGE = Path(mfa_gateway.__file__).parent
SECRET_WORDS = frozenset(
    {
        "token",
        "code",
        "secret",
        "csrf",
        "binding",
        "expected",
        "submitted",
        "given",
        "password",
        "digest",
        "hash",
        "otp",
        "mac",
        "signature",
        "credential",
    }
)


def _is_secret_name(name: str) -> bool:
    """A name made of words (snake_case or camelCase) of which one says it holds a secret: ``mfa_token``,
    ``expected``, ``backupCodes``; not ``decoded`` or ``tokenizer``."""
    words = re.split(r"_+|(?<=[a-z0-9])(?=[A-Z])", name)
    lowered = [word.lower() for word in words if word]
    return any({w, w.removesuffix("s"), w.removesuffix("es")} & SECRET_WORDS for w in lowered)


REVIEWED: dict[tuple[str, str], str] = {
    ("adapters/secrets/awssm.py", "code == _NOT_FOUND"): "an AWS error code, not a secret",
    ("adapters/secrets/awssm.py", "code not in _TRANSIENT_CODES"): "an AWS error code, not a secret",
    ("adapters/secrets/awssm.py", "code in _PERMANENT_CODES"): "an AWS error code, not a secret",
    ("adapters/secrets/vault_auth.py", "token != self._token"): "our own Vault token re-read from a file: no client",
    ("adapters/secrets/vault_auth.py", "self._token == before"): "our own Vault token, change detection: no client",
    (
        "adapters/sql/store.py",
        "enrollments.c.secret_ciphertext == expected_ciphertext",
    ): "SQL compare-and-set of our own ciphertext (built as SQL, not compared in Python)",
    ("adapters/sql/store.py", "backup_codes.c.id == code_id"): "a row id in SQL, not a secret",
    (
        "adapters/sql/store.py",
        "table.c.credential_id == credential_id",
    ): "a WebAuthn credential id (public: browsers list it in options) in SQL, not compared in Python",
    (
        "adapters/sql/store.py",
        "table.c.credential_id == credential.credential_id",
    ): "a WebAuthn credential id (public: browsers list it in options) in SQL, not compared in Python",
    (
        "adapters/sql/store.py",
        "device_grants.c.token_hash == token_hash",
    ): "the SHA-256 of a device cookie's random token, looked up by index in SQL: timing tells nothing of a token",
    ("adapters/state/redis.py", "credential in self._refused"): "our own Redis password candidates: no client",
    ("adapters/state/redis.py", "c != credential"): "our own Redis password candidates: no client",
    ("cli/users.py", "getpass.getpass('Repeat: ') != password"): "the administrator typing a new password twice",
    ("web/interception.py", "target.path.decoded == expected"): "the configured login path, not a secret",
    ("web/request_ids.py", "' ' not in given"): "a client's request id, not a secret",
}


_TRANSPARENT_METHODS = ("encode", "decode", "strip", "lower", "upper", "casefold", "reveal", "hexdigest")
_TRANSPARENT_BUILTINS = ("str", "bytes", "bytearray", "repr")


def _constant_key(node: ast.expr) -> list[str]:
    return [node.value] if isinstance(node, ast.Constant) and isinstance(node.value, str) else []


def _names_of(node: ast.expr) -> list[str]:
    """Every name that says what ``node`` holds: a variable or attribute, a constant key it was looked up by
    (``body["token"]``, ``form.get("csrf")``) beside the container's own name, and what a conversion
    (``str(token)``, ``token.encode()``) was applied to."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.Subscript):
        return [*_names_of(node.value), *_constant_key(node.slice)]
    if not isinstance(node, ast.Call):
        return []
    if isinstance(node.func, ast.Name) and node.func.id in _TRANSPARENT_BUILTINS:
        return [name for argument in node.args for name in _names_of(argument)]
    if isinstance(node.func, ast.Attribute):
        if node.func.attr == "get" and node.args:
            return [*_names_of(node.func.value), *_constant_key(node.args[0])]
        if node.func.attr in _TRANSPARENT_METHODS:
            return _names_of(node.func.value)
    return []


def secret_comparisons(root: Path = PACKAGE) -> list[tuple[str, str, int]]:
    """(module, expression, line) of every equality or membership test that touches a secret-named value."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
                if not isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn):
                    continue
                if any(_is_secret_name(name) for side in (left, right) for name in _names_of(side)):
                    found.append((path.relative_to(root).as_posix(), ast.unparse(node), node.lineno))
                    break
    return found


def test_no_secret_is_compared_with_equality_operators() -> None:
    """Outside the reviewed list, no module compares a secret-named value with ==, !=, in or not in: a guess
    checked that way leaks, through timing, how much of it was right."""
    unreviewed = [
        f"{module}:{line}: {text}" for module, text, line in secret_comparisons() if (module, text) not in REVIEWED
    ]
    assert unreviewed == [], "use hmac.compare_digest (or review the comparison here): " + "; ".join(unreviewed)


def test_every_reviewed_comparison_is_still_in_the_source() -> None:
    """The allow-list cannot go stale: each entry is a comparison the scan still finds. An entry left behind after
    its comparison changed or went away would silently excuse a new comparison written with the same text."""
    found = {(module, text) for module, text, _ in secret_comparisons()}
    assert [f"{module}: {text}" for module, text in REVIEWED if (module, text) not in found] == []


def test_the_source_check_notices_an_equality_comparison(tmp_path: Path) -> None:
    """The scanner itself: it flags == on a token and a binding, on a value looked up by a secret-named key
    (subscript or ``.get``) and on a secret passed through str(); it passes compare_digest, len(...) checks and
    values whose names and keys say nothing secret."""
    (tmp_path / "sample.py").write_text(
        "import hmac\n"
        "def a(token, expected): return token == expected\n"
        "def b(session, first): return session.binding != first.binding\n"
        "def c(given, expected): return hmac.compare_digest(given.encode(), expected.encode())\n"
        "def d(token, params): return len(token) == params.digits\n"
        "def e(decoded, target): return decoded == target\n"
        "def f(body, stored): return body['backupCodes'] in stored\n"
        "def g(body, guess): return body['token'] == guess\n"
        "def h(token, x): return str(token) == x\n"
        "def i(form, cookie): return form.get('csrf', '').encode() != cookie\n"
        "def j(headers, row): return headers['Accept'] == row[0] or headers.get('Host') == repr(row)\n"
    )
    flagged = [text for _, text, _ in secret_comparisons(tmp_path)]
    assert flagged == [
        "token == expected",
        "session.binding != first.binding",
        "body['backupCodes'] in stored",
        "body['token'] == guess",
        "str(token) == x",
        "form.get('csrf', '').encode() != cookie",
    ]
