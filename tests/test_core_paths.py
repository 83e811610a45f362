"""Path normalisation: ambiguous paths are refused, the rest get one canonical decoded and encoded form."""

from __future__ import annotations

import contextlib
import time
from urllib.parse import unquote

import pytest

from mfa_gateway.core.errors import BadRequest
from mfa_gateway.core.paths import MAX_PATH_LENGTH, AmbiguousPath, NormalisedPath, normalise_path

GOOD = [
    # raw, decoded, encoded
    ("/", "/", "/"),
    ("/a/b/", "/a/b/", "/a/b/"),
    ("/admin", "/admin", "/admin"),
    ("//admin", "/admin", "/admin"),
    ("/a///b", "/a/b", "/a/b"),
    ("/a//b//", "/a/b/", "/a/b/"),
    ("/%61dmin", "/admin", "/admin"),
    ("/caf%C3%A9", "/café", "/caf%C3%A9"),
    ("/cafe%CC%81", "/café", "/caf%C3%A9"),  # decomposed é composes under NFC
    ("/café", "/café", "/caf%C3%A9"),  # raw non-ASCII (never sent by browsers) is encoded canonically
    ("/a+b", "/a+b", "/a+b"),
    ("/a%20b", "/a b", "/a%20b"),
    ("/%7Euser", "/~user", "/~user"),
    ("/a:b@c", "/a:b@c", "/a:b@c"),
    ("/a%3Fb", "/a?b", "/a%3Fb"),
    ("/a%23b", "/a#b", "/a%23b"),
    ("/100%25", "/100%", "/100%25"),
    ("/%25zz", "/%zz", "/%25zz"),  # a decoded '%' not followed by two hex digits is not double encoding
    ("/.well-known/acme", "/.well-known/acme", "/.well-known/acme"),
    ("/a..b/c.", "/a..b/c.", "/a..b/c."),
    ("/..a/.b", "/..a/.b", "/..a/.b"),
    ("/!$&'()*+,=-._~", "/!$&'()*+,=-._~", "/!$&'()*+,=-._~"),
    ("/a|b^c[d]", "/a|b^c[d]", "/a%7Cb%5Ec%5Bd%5D"),
    ("/%e2%82%ac", "/€", "/%E2%82%AC"),
    ("/ADMIN", "/ADMIN", "/ADMIN"),
]


@pytest.mark.parametrize(("raw", "decoded", "encoded"), GOOD)
def test_good_paths_normalise_to_one_decoded_and_one_encoded_form(raw: str, decoded: str, encoded: str) -> None:
    """A well-formed path is decoded once, NFC-normalised, slash-collapsed, and re-encoded canonically."""
    assert normalise_path(raw) == NormalisedPath(decoded=decoded, encoded=encoded)


@pytest.mark.parametrize(("raw", "_decoded", "_encoded"), GOOD)
def test_normalisation_is_idempotent_and_encoded_decodes_to_decoded(raw: str, _decoded: str, _encoded: str) -> None:
    """The forwarded form normalises to itself, and decoding it gives exactly the path the policy matched."""
    first = normalise_path(raw)
    assert normalise_path(first.encoded) == first
    assert unquote(first.encoded, errors="strict") == first.decoded


@pytest.mark.parametrize(
    ("raw", "decoded", "encoded"),
    [
        ("/ADMIN", "/admin", "/ADMIN"),
        ("/%41dmin/X", "/admin/x", "/Admin/X"),
        ("/Stra%C3%9Fe", "/strasse", "/Stra%C3%9Fe"),
        ("/%E2%84%AA", "/k", "/K"),  # KELVIN SIGN is K under NFC, in both forms
    ],
)
def test_case_insensitive_folds_the_decoded_form_only(raw: str, decoded: str, encoded: str) -> None:
    """case_insensitive casefolds what the policy matches; the upstream still gets the original case."""
    assert normalise_path(raw, case_insensitive=True) == NormalisedPath(decoded=decoded, encoded=encoded)


def test_case_sensitive_by_default() -> None:
    """Without case_insensitive, /ADMIN stays /ADMIN (an upstream that is case-sensitive serves another page)."""
    assert normalise_path("/ADMIN").decoded == "/ADMIN"


ATTACKS = [
    # dot segments, raw and encoded
    "/admin/../admin",
    "/public/../admin",
    "/a/./b",
    "/.",
    "/..",
    "/./",
    "/../",
    "/a/..",
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/%2e%2e/admin",
    "/%2e/admin",
    "/.%2e/admin",
    "//../admin",
    "/a/.../b",
    "/a/.. /b",
    "/a/%2e%2e%20/b",
    "/a/ ../b",
    # encoded slash and backslash
    "/admin%2f",
    "/admin%2F",
    "/public/..%2fadmin",
    "/public%2f..%2fadmin",
    "/%5cadmin",
    "/%5Cadmin",
    "/admin\\",
    "/public\\..\\admin",
    # path parameters
    "/admin;x",
    "/admin;jsessionid=1",
    "/admin%3bx",
    "/admin%3B",
    "/admin%CD%BE",  # U+037E GREEK QUESTION MARK becomes ';' under NFC
    "/admin\u037e",
    # control characters, raw and encoded
    "/admin%00",
    "/admin\x00",
    "/admin%0a",
    "/admin%0D",
    "/admin\n",
    "/admin\t",
    "/admin%09",
    "/admin%7f",
    "/admin\x7f",
    "/admin%c2%85",  # C1 NEXT LINE
    "/admin\x85",
    # invalid percent-encoding
    "/a%zz",
    "/a%2",
    "/a%",
    "/%u002e%u002e/admin",
    # not UTF-8, overlong, surrogates
    "/%ff",
    "/%c0%ae%c0%ae/admin",
    "/%c0%af",
    "/%e0%80%ae",
    "/%ed%a0%80",
    "/%c3",
    "/a\udcff",
    # double encoding
    "/%252e%252e/admin",
    "/%252fadmin",
    "/admin%2500",
    # query or fragment left in the path
    "/admin?x=/public",
    "/admin#x",
    # not a path
    "",
    "admin",
    "*",
    "http://evil.com/admin",
    "%2fadmin",
]


@pytest.mark.parametrize("raw", ATTACKS)
def test_ambiguous_paths_are_refused(raw: str) -> None:
    """Every path that servers might read in two ways raises AmbiguousPath (a BadRequest, code ambiguous_path)."""
    with pytest.raises(AmbiguousPath) as caught:
        normalise_path(raw)
    assert isinstance(caught.value, BadRequest)
    assert caught.value.code == "ambiguous_path"


def test_case_folding_cannot_create_what_normalisation_refuses() -> None:
    """U+FB00 (ff ligature) folds to 'ff'; after a '%' that reads as an escape, so the folded form is checked too."""
    assert normalise_path("/%EF%AC%80", case_insensitive=True).decoded == "/ff"
    assert normalise_path("/%25%EF%AC%80").decoded == "/%\ufb00"
    with pytest.raises(AmbiguousPath):
        normalise_path("/%25%EF%AC%80", case_insensitive=True)


@pytest.mark.parametrize("raw", ["/admin%0a", "/a/../b", "/admin;x", "/%ff"])
def test_messages_say_why_without_echoing_the_path(raw: str) -> None:
    """The message explains the refusal in words and never repeats attacker-controlled bytes."""
    with pytest.raises(AmbiguousPath) as caught:
        normalise_path(raw)
    assert caught.value.message and raw not in caught.value.message
    assert "\n" not in caught.value.message


def test_length_limit() -> None:
    """8192 characters are accepted; one more is refused."""
    assert normalise_path("/" + "a" * (MAX_PATH_LENGTH - 1)).decoded.startswith("/a")
    with pytest.raises(AmbiguousPath):
        normalise_path("/" + "a" * MAX_PATH_LENGTH)


@pytest.mark.parametrize(
    "raw",
    [
        "/" + "." * 8000 + "x",
        "/" + ". " * 4000 + "x",
        "/" + "/" * 8000,
        "/" + "%61" * 2700,
        "/" + " " * 8000 + ".x",
    ],
)
def test_worst_case_inputs_are_linear(raw: str) -> None:
    """Adversarial maximum-length paths are handled in well under a few milliseconds (no regex backtracking)."""
    started = time.perf_counter()
    for _ in range(20):
        with contextlib.suppress(AmbiguousPath):
            normalise_path(raw)
    assert (time.perf_counter() - started) / 20 < 0.005
