"""Request-path normalisation: one canonical path that the policy matches and the upstream receives.

Auth proxies are bypassed when the proxy and the application read one path two ways (``/public/..%2fadmin``,
``/admin;x``, ``//admin``). The gateway therefore refuses every path whose meaning differs between servers and turns
the rest into one canonical form. :func:`normalise_path` takes the request-target path as sent on the wire
(percent-encoded, query string already removed) and applies these rules, in order:

1. The path must start with ``/`` and be at most 8192 characters long.
2. Refused outright (:class:`AmbiguousPath`, code ``ambiguous_path``):

   - a ``%`` not followed by two hex digits (``/a%zz``, ``/a%2``, IIS-style ``%u002e``);
   - an encoded slash or backslash (``%2F``, ``%2f``, ``%5C``, ``%5c``), and any raw backslash;
   - a raw ``?`` or ``#`` (the query is removed before, a fragment is never sent: the caller passed a whole URL);
   - after decoding: any control character, C0 (0x00-0x1F), DEL (0x7F) or C1 (0x80-0x9F), raw or encoded;
   - decoded bytes that are not valid UTF-8 (``/%ff``, overlong forms such as ``%c0%ae``, encoded surrogates);
   - double encoding: the decoded path still holds ``%`` plus two hex digits (``/%252e%252e/admin``);
   - any ``;``, raw or encoded (path parameters: ``/admin;x`` is ``/admin`` to some servers, not to others);
   - any dot segment, raw or encoded (``/a/../b``, ``/a/%2e%2e/b``, ``/a/./b``, ``/.``, ``/..``): browsers resolve
     them before sending, so a path that still has them is an attack or a broken client. A segment made only of
     dots and spaces (``...``, ``.. ``) is refused too: Windows-based servers trim trailing dots and spaces, which
     turns such a segment into ``..``.

   The checks on the decoded path run after Unicode NFC, because NFC can create ASCII: U+037E (Greek question mark)
   becomes ``;``.
3. Everything else is percent-decoded exactly once (``/%61dmin`` -> ``/admin``, ``/caf%C3%A9`` -> ``/café``, ``+`` stays
   ``+``) and put in Unicode NFC form.
4. Runs of ``/`` collapse into one (``//admin`` -> ``/admin``, ``/a///b`` -> ``/a/b``); a trailing slash is kept.

With ``case_insensitive`` (for upstreams that ignore case: IIS, ASP.NET, Windows and macOS file servers) two more
kinds of path are refused, because such applications compare paths in ways the gateway cannot reproduce:

5. a segment that ends in ``.`` or a space, raw or encoded (``/admin.``, ``/admin%20``, ``/ADMIN./x``): Windows
   removes them, so the application serves ``/admin`` for a path the policy saw as another;
6. a non-ASCII character that some runtime's case-insensitive comparison or compatibility normalisation turns into
   ASCII (:func:`ascii_lookalikes`): the dotless i (U+0131) upper-cases to ``I`` in .NET, Java and JavaScript, so
   ``/adm%C4%B1n`` is ``/admin`` to them while ``str.casefold()`` keeps it apart; ``ß`` is ``ss`` to one runtime and
   itself to another; the Kelvin sign is ``K``. Checked before and after NFC (``I`` plus U+0307 composes to ``İ``).

Without ``case_insensitive`` both are accepted as they are: the application is declared to compare paths byte
for byte, so ``/admin.`` and ``/adm%C4%B1n`` are other paths to it as to the policy, and it receives them unchanged.

The result has two forms. ``decoded`` is what the policy matches: with ``case_insensitive`` it is lower-cased with
``str.casefold()``; when the path has non-ASCII characters the folded form is put in NFC again and the checks of
rule 2 run on it too. ``encoded`` is the canonical re-encoding of the decoded, NFC, *not* case-folded path,
``urllib.parse.quote(path, safe="/:@!$&'()*+,=-._~")``; the gateway forwards it upstream, so the upstream sees
exactly the path the policy matched. ``normalise_path(p.encoded)`` gives ``p`` back (idempotent).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from mfa_gateway.core.errors import BadRequest

MAX_PATH_LENGTH = 8192
ENCODE_SAFE = "/:@!$&'()*+,=-._~"

# Problems visible only in the wire form: after decoding, %2F is an ordinary "/".
_RAW_PROBLEM = re.compile(r"(?P<escape>%(?![0-9A-Fa-f]{2}))|(?P<slash>%(?:2[Ff]|5[Cc]))|(?P<query>[?#])")
# Problems checked on the decoded (and NFC) path, so raw and encoded forms are caught alike. The dot-segment branch
# is linear: the only way to reach its "\." is the first character after the leading spaces of a segment.
_DECODED_PROBLEM = re.compile(
    r"(?P<control>[\x00-\x1f\x7f-\x9f])"
    r"|(?P<backslash>\\)"
    r"|(?P<semicolon>;)"
    r"|(?P<double>%[0-9A-Fa-f]{2})"
    r"|(?P<dots>(?:^|/) *\.[. ]*(?=/|$))"
)
_SLASHES = re.compile(r"//+")
# Windows removes a trailing dot or space from each segment (checked on the decoded path, so %2E and %20 too).
_TRAILING_DOT_OR_SPACE = re.compile(r"[. ](?=/|$)")
_ASCII = re.compile(r"[\x00-\x7f]")
# Code points scanned for ASCII look-alikes: planes 0 and 1 (a test checks that the other planes hold none).
LOOKALIKE_SCAN = range(0x80, 0x20000)

_REASONS = {
    "escape": "The path has a '%' that is not followed by two hex digits.",
    "slash": "The path has an encoded slash or backslash (%2F or %5C).",
    "query": "The path has a raw '?' or '#'; pass the path without query string or fragment.",
    "control": "The path has a control character.",
    "backslash": "The path has a backslash.",
    "semicolon": "The path has a ';' (path parameters are read differently by different servers).",
    "double": "The path is percent-encoded twice.",
    "dots": "The path has a dot segment ('.' or '..'), which browsers resolve before sending.",
    "trailing": "A path segment ends in '.' or a space, which Windows-based servers remove.",
    "lookalike": "The path has a character that case-insensitive servers may read as an ASCII one.",
}


class AmbiguousPath(BadRequest):
    """A request path that servers may read in different ways; refused rather than guessed at."""

    code = "ambiguous_path"
    default_message = "The request path is ambiguous."


@dataclass(frozen=True, slots=True)
class NormalisedPath:
    decoded: str
    encoded: str


def _singleton_target(char: str) -> str:
    """The NFD form of the one character ``char`` canonically stands for, else ``""``: the Angstrom sign stands for
    ``Å``, whose NFD begins with ``A``. Such duplicates exist only to be confused with the letter they copy."""
    decomposition = unicodedata.decomposition(char)
    if not decomposition or decomposition.startswith("<") or " " in decomposition:
        return ""
    return unicodedata.normalize("NFD", chr(int(decomposition, 16)))


def ascii_lookalikes(code_points: Iterable[int]) -> frozenset[str]:
    """The non-ASCII characters among ``code_points`` that case-insensitive comparison or normalisation may turn into
    ASCII: ``str.upper()``, ``str.lower()``, ``str.casefold()`` or NFKC holds an ASCII character, or the character
    is a canonical duplicate of one that begins with ASCII (the Angstrom sign). Derived from ``unicodedata`` rather
    than listed, so new Unicode versions are covered."""
    found = set()
    for code_point in code_points:
        char = chr(code_point)
        if char.isascii() or 0xD800 <= code_point <= 0xDFFF:
            continue
        forms = (char.upper(), char.lower(), char.casefold(), unicodedata.normalize("NFKC", char))
        if any(_ASCII.search(form) for form in forms) or _ASCII.match(_singleton_target(char)):
            found.add(char)
    return frozenset(found)


@functools.cache
def _lookalikes() -> frozenset[str]:
    """Derived on first use (a fraction of a second), only by gateways with ``case_insensitive_paths``. A set, not
    a regex character class: ``isdisjoint`` stays linear and fast where a class of 1,600 characters does not."""
    return ascii_lookalikes(LOOKALIKE_SCAN)


def prepare_case_insensitive() -> None:
    """Derive the look-alike table now (at start) rather than on the first request that needs it."""
    _lookalikes()


def _refuse_case_insensitive_confusions(decoded: str, path: str) -> None:
    """Rules 5 and 6: ``decoded`` is the path before NFC, ``path`` after it."""
    if _TRAILING_DOT_OR_SPACE.search(path) is not None:
        raise AmbiguousPath(_REASONS["trailing"])
    if not decoded.isascii() and not (_lookalikes().isdisjoint(decoded) and _lookalikes().isdisjoint(path)):
        raise AmbiguousPath(_REASONS["lookalike"])


def _refuse_if_problem(pattern: re.Pattern[str], path: str) -> None:
    found = pattern.search(path)
    if found is not None:
        raise AmbiguousPath(_REASONS[found.lastgroup or ""])


def normalise_path(raw: str, *, case_insensitive: bool = False) -> NormalisedPath:
    """Normalise a wire-form request path (see the module docstring) or raise :class:`AmbiguousPath`."""
    if not isinstance(raw, str) or not raw.startswith("/"):
        raise AmbiguousPath("The path must start with '/'.")
    if len(raw) > MAX_PATH_LENGTH:
        raise AmbiguousPath(f"The path is longer than {MAX_PATH_LENGTH} characters.")
    _refuse_if_problem(_RAW_PROBLEM, raw)
    path = decoded = raw
    if "%" in raw or not raw.isascii():
        try:
            decoded = unquote_to_bytes(raw).decode("utf-8")  # strict both ways: lone surrogates, bad or overlong UTF-8
        except UnicodeError:
            raise AmbiguousPath("The path is not valid UTF-8.") from None
        path = decoded if decoded.isascii() else unicodedata.normalize("NFC", decoded)
    _refuse_if_problem(_DECODED_PROBLEM, path)
    if "//" in path:
        path = _SLASHES.sub("/", path)
    encoded = quote(path, safe=ENCODE_SAFE)
    if case_insensitive:
        _refuse_case_insensitive_confusions(decoded, path)
        folded = path.casefold()
        if not path.isascii():  # folding ASCII only lower-cases letters; folding the rest can create ASCII
            folded = unicodedata.normalize("NFC", folded)
            _refuse_if_problem(_DECODED_PROBLEM, folded)
        path = folded
    return NormalisedPath(decoded=path, encoded=encoded)
