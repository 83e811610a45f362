"""Open-redirect guard for the "where to go after sign-in" target (``next`` / ``rd`` parameters).

:func:`safe_redirect` returns the target unchanged when it is safe, else the default. Safe means one of:

(a) a relative path on this site: it starts with exactly one ``/`` (not ``//``, not ``/\\``);
(b) an absolute ``http``/``https`` URL whose host (case-insensitive, port ignored) matches one of ``allowed_hosts``
    (exact or ``*.example.com``, as in the policy), with no userinfo (``user@``).

Browsers and applications are lenient in ways attackers use: they drop tabs and newlines anywhere, strip leading
spaces and controls, read ``\\`` as ``/``, and some layers percent-decode a target before using it. So, on top of
(a)/(b), a target is refused when:

- it is longer than 2048 characters, empty, or not a string;
- it has any character outside printable ASCII: whitespace, controls, DEL, non-ASCII (a URL on the wire is ASCII;
  this also blocks look-alikes such as U+FF0F or U+3002 that IDNA maps onto ``/`` and ``.``);
- it has a backslash anywhere, raw or percent-encoded (``%5C``);
- once percent-decoded repeatedly until stable (at most 4 rounds, else refused), it has a control character anywhere
  (``%0d%0a``, ``%2509``), or no longer starts with exactly one ``/`` (``/%2F%2Fevil.com``, ``/%5Cevil.com``);
- an absolute URL's authority is anything other than ``host`` or ``host:port`` with an ASCII host name or a
  bracketed IPv6 literal: ``@``, ``%``, a second ``:`` or an empty host all refuse it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote

from mfa_gateway.core.hosts import host_matches, normalise_host

MAX_REDIRECT_LENGTH = 2048
_DECODE_ROUNDS = 4

# Printable ASCII except the backslash: anything else refuses the target before any parsing.
_PRINTABLE = re.compile(r"[!-\[\]-~]+")
_ABSOLUTE = re.compile(
    r"(?i:https?)://(?P<authority>(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?)(?:[/?#]|\Z)"
)
_DECODED_PROBLEM = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def _fully_decoded(target: str) -> str | None:
    """``target`` percent-decoded until it stops changing; ``None`` if that takes more than a few rounds."""
    for _ in range(_DECODE_ROUNDS):
        if "%" not in target:
            return target
        decoded = unquote(target, errors="replace")
        if decoded == target:
            return target
        target = decoded
    return target if "%" not in target or unquote(target, errors="replace") == target else None


def _is_relative(target: str) -> bool:
    return target.startswith("/") and target[1:2] not in ("/", "\\")


def safe_redirect(target: str | None, *, allowed_hosts: Sequence[str], default: str = "/") -> str:
    """``target`` when it is a safe place to send the browser after sign-in, else ``default``."""
    if not isinstance(target, str) or not target or len(target) > MAX_REDIRECT_LENGTH:
        return default
    if not _PRINTABLE.fullmatch(target):
        return default
    decoded = _fully_decoded(target)
    if decoded is None or _DECODED_PROBLEM.search(decoded):
        return default
    if target.startswith("/"):
        return target if _is_relative(target) and _is_relative(decoded) else default
    absolute = _ABSOLUTE.match(target)
    if absolute is None:
        return default
    host = normalise_host(absolute.group("authority"))
    if host and any(host_matches(pattern, host) for pattern in allowed_hosts):
        return target
    return default
