"""TOTP against the RFC 6238 / RFC 4226 vectors, and the verify contract (matched step, window, input shape)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from mfa_gateway.core import totp
from mfa_gateway.core.errors import BadRequest, InvalidCode
from mfa_gateway.core.model import TotpAlgorithm, TotpParams

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
RFC6238 = json.loads((VECTORS / "rfc6238.json").read_text())["vectors"]
RFC4226 = json.loads((VECTORS / "rfc4226.json").read_text())


@pytest.mark.parametrize("vector", RFC6238, ids=lambda v: f"{v['algorithm']}-{v['time']}")
def test_rfc6238_vectors(vector: dict[str, object]) -> None:
    """Every RFC 6238 Appendix B code verifies at its time and yields the step time // period."""
    params = TotpParams(TotpAlgorithm(str(vector["algorithm"])), int(str(vector["digits"])), int(str(vector["period"])))
    secret = str(vector["secret_base32"])
    now = float(str(vector["time"]))
    assert totp.code_at(secret, params, totp.time_step(now, params)) == vector["totp"]
    assert totp.verify(secret, str(vector["totp"]), params, now, window=0) == int(now) // params.period


@pytest.mark.parametrize("vector", RFC4226["vectors"], ids=lambda v: str(v["counter"]))
def test_rfc4226_vectors(vector: dict[str, object]) -> None:
    """HOTP (RFC 4226 Appendix D) is the TOTP building block: the code of step N is HOTP(counter N)."""
    params = TotpParams()
    assert totp.code_at(RFC4226["secret_base32"], params, int(str(vector["counter"]))) == vector["hotp"]


def test_window_accepts_one_step_either_side_and_returns_the_matched_step() -> None:
    """With window 1 the previous and next codes verify and report their own step; two steps away does not."""
    secret, params = totp.generate_secret(), TotpParams()
    now = 1_800_000_015.0
    step = totp.time_step(now, params)
    for offset in (-1, 0, 1):
        assert totp.verify(secret, totp.code_at(secret, params, step + offset), params, now) == step + offset
    with pytest.raises(InvalidCode):
        totp.verify(secret, totp.code_at(secret, params, step + 2), params, now)
    with pytest.raises(InvalidCode):
        totp.verify(secret, totp.code_at(secret, params, step - 1), params, now, window=0)


@pytest.mark.parametrize("token", ["12345", "1234567", "12a456", "١٢٣٤٥٦", "12345６", "", " " * 6, "9" * 100])
def test_tokens_that_cannot_be_codes_are_bad_requests(token: str) -> None:
    """Wrong length, non-digits and non-ASCII digits are a format error, not a failed verification."""
    with pytest.raises(BadRequest):
        totp.verify(totp.generate_secret(), token, TotpParams(), 1_800_000_000.0)


def test_secrets_are_160_bits_and_random() -> None:
    """A new secret is 32 base32 characters (160 bits) and two are never equal."""
    first, second = totp.generate_secret(), totp.generate_secret()
    assert len(first) == 32 and first != second and "=" not in first


def test_provisioning_uri_follows_the_key_uri_format() -> None:
    """Label issuer:account, issuer parameter, unpadded secret; algorithm/digits/period only when not default."""
    secret = totp.generate_secret()
    default = urlparse(totp.provisioning_uri(secret, TotpParams(), account="alice", issuer="Acme Co"))
    assert (default.scheme, default.netloc) == ("otpauth", "totp")
    assert unquote(default.path) == "/Acme Co:alice"
    query = parse_qs(default.query)
    assert query == {"secret": [secret], "issuer": ["Acme Co"]}
    custom = parse_qs(
        urlparse(
            totp.provisioning_uri(secret, TotpParams(TotpAlgorithm.SHA256, 8, 60), account="alice", issuer="Acme")
        ).query
    )
    assert custom["algorithm"] == ["SHA256"] and custom["digits"] == ["8"] and custom["period"] == ["60"]


def parse_key_uri(uri: str) -> tuple[str, str, dict[str, list[str]]]:
    """Read an otpauth URI as an authenticator app does: the label split on its one ``:``, then unquoted."""
    parts = urlparse(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    label = parts.path.removeprefix("/")
    assert re.fullmatch(r"[A-Za-z0-9._~%-]+:[A-Za-z0-9._~%-]+", label), label  # reserved characters all encoded
    issuer, account = label.split(":")
    return (
        unquote(issuer, errors="strict"),
        unquote(account, errors="strict"),
        parse_qs(parts.query, strict_parsing=True),
    )


@pytest.mark.parametrize(
    ("issuer", "account"),
    [
        ("Acme Co", "alice"),
        ("Acme Co/EU", "alice/ops"),
        ("A&B ?#+%=", "bob smith+test@example.com"),
        ("Ünïcode Société", "zoë"),
        ("Acme", "x%2Fy"),
    ],
)
def test_provisioning_uri_labels_round_trip_with_reserved_characters_encoded(issuer: str, account: str) -> None:
    """Issuer and account come back exactly from the label and the issuer parameter; '/', spaces and every other
    reserved character are percent-encoded in both, leaving one raw ':' between issuer and account."""
    secret = totp.generate_secret()
    parsed_issuer, parsed_account, query = parse_key_uri(
        totp.provisioning_uri(secret, TotpParams(), account=account, issuer=issuer)
    )
    assert (parsed_issuer, parsed_account) == (issuer, account)
    assert query == {"secret": [secret], "issuer": [issuer]}


def test_a_colon_in_the_account_is_mapped_and_in_the_issuer_refused() -> None:
    """The Key Uri Format forbids ':' in either part: an account's becomes U+FF1A (apps show it like a colon and
    never split on it); an issuer with one is a programming error (the configuration refuses it)."""
    uri = totp.provisioning_uri(totp.generate_secret(), TotpParams(), account="corp:alice", issuer="Acme")
    assert parse_key_uri(uri)[:2] == ("Acme", "corp\uff1aalice")
    with pytest.raises(ValueError, match="issuer"):
        totp.provisioning_uri(totp.generate_secret(), TotpParams(), account="alice", issuer="Acme:EU")
