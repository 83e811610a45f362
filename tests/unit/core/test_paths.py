"""Path normalisation: ambiguous paths are refused, the rest get one canonical decoded and encoded form."""

from __future__ import annotations

import contextlib
import sys
import time
import unicodedata
from urllib.parse import unquote

import pytest

from mfa_gateway.core.errors import BadRequest
from mfa_gateway.core.paths import (
    LOOKALIKE_SCAN,
    MAX_PATH_LENGTH,
    AmbiguousPath,
    NormalisedPath,
    ascii_lookalikes,
    normalise_path,
)

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
        ("/CAF%C3%89", "/café", "/CAF%C3%89"),  # É folds to é: no runtime makes ASCII of it
        ("/.well-known/a.b", "/.well-known/a.b", "/.well-known/a.b"),  # dots that end no segment
        ("/a%20b/c", "/a b/c", "/a%20b/c"),
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
    """U+FB00 (ff ligature) folds to 'ff', which after a '%' would read as an escape: refused when folding."""
    assert normalise_path("/%25%EF%AC%80").decoded == "/%\ufb00"
    for raw in ("/%25%EF%AC%80", "/%EF%AC%80"):
        with pytest.raises(AmbiguousPath):
            normalise_path(raw, case_insensitive=True)


CASE_INSENSITIVE_CONFUSIONS = [
    # a segment ending in a dot or a space, raw or encoded: Windows removes them
    "/admin.",
    "/admin%2E",
    "/admin%2e",
    "/admin%20",
    "/admin ",
    "/ADMIN./x",
    "/admin../x",
    "/admin.%20/x",
    "/a/admin. ",
    # letters that another runtime's case-insensitive comparison or normalisation turns into ASCII
    "/adm%C4%B1n",  # U+0131 dotless i: upper() is I
    "/adm\u0131n",
    "/%C4%B0NDEX",  # U+0130 capital I with dot: lower() holds i
    "/ADMI%CC%87N",  # I + U+0307 composes to U+0130 under NFC
    "/%C5%BFecret",  # U+017F long s: upper() is S
    "/%E2%84%AAey",  # U+212A Kelvin sign: K
    "/%E2%84%ABngstrom",  # U+212B Angstrom sign: stands for Å, which is A and a ring
    "/stra%C3%9Fe",  # ß: ss to casefold and upper(), ß to ordinal comparison
    "/%EF%BD%81dmin",  # U+FF41 fullwidth a: NFKC a
    "/%EF%BC%8Fadmin",  # U+FF0F fullwidth solidus: NFKC /
    "/%C2%AAdmin",  # U+00AA feminine ordinal: NFKC a
    "/%F0%9D%90%9Admin",  # U+1D41A mathematical bold a (plane 1)
]


@pytest.mark.parametrize("raw", CASE_INSENSITIVE_CONFUSIONS)
def test_case_insensitive_refuses_what_windows_or_unicode_folding_reads_as_another_path(raw: str) -> None:
    """With case_insensitive, trailing dots/spaces and ASCII look-alike letters are 400 ambiguous_path."""
    with pytest.raises(AmbiguousPath) as caught:
        normalise_path(raw, case_insensitive=True)
    assert caught.value.code == "ambiguous_path"
    assert raw not in caught.value.message


@pytest.mark.parametrize("raw", CASE_INSENSITIVE_CONFUSIONS)
def test_case_sensitive_mode_passes_them_through_unchanged(raw: str) -> None:
    """Without case_insensitive the application compares bytes: /admin. is another path to it as to the policy, and
    it receives the very path the policy matched (only NFC's canonical rewrites, such as the Kelvin sign to K)."""
    normalised = normalise_path(raw)
    assert unquote(normalised.encoded, errors="strict") == normalised.decoded
    assert normalised.decoded == unicodedata.normalize("NFC", unquote(raw, errors="strict"))


def test_ascii_lookalikes_are_derived_from_unicode_data() -> None:
    """The derived set holds the known cases, no ordinary non-ASCII letter, and nothing outside the scanned planes."""
    found = ascii_lookalikes(LOOKALIKE_SCAN)
    assert {"\u0131", "\u0130", "\u017f", "\u212a", "\u212b", "\u00df", "\ufb00", "\uff41"} <= found
    assert not {"é", "É", "ñ", "ж", "Ω", "α", "\u00c5", "中"} & found
    assert ascii_lookalikes(range(LOOKALIKE_SCAN.stop, sys.maxunicode + 1)) == frozenset()


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
        "/" + "\u00e9" * 2700,
        "/" + "%C3%A9" * 1300,
        "/" + "a." * 4000,
    ],
)
@pytest.mark.parametrize("case_insensitive", [False, True])
def test_worst_case_inputs_are_linear(raw: str, case_insensitive: bool) -> None:
    """Adversarial maximum-length paths cost milliseconds, not the seconds regex backtracking would take.

    The bound is on this process's CPU time (a loaded machine does not inflate it) and 20x the few milliseconds a
    linear pass takes here: what it catches is the super-linear blow-up, not a slow machine."""
    normalise_path("/\u00e9", case_insensitive=case_insensitive)  # the look-alike table is derived once, at start
    started = time.process_time()
    for _ in range(20):
        with contextlib.suppress(AmbiguousPath):
            normalise_path(raw, case_insensitive=case_insensitive)
    assert (time.process_time() - started) / 20 < 0.1
