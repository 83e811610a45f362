"""What may be written into an HTTP header field (RFC 9110, section 5.1 and 5.5).

A name is a token. A value holds no control character but tab: a CR or LF would end or split the header block (a
client's text turned into headers of its own), and aiohttp's serialiser refuses the same set, so anything written
past it must be checked here.
"""

from __future__ import annotations

import re

NAME_PATTERN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_NAME = re.compile(NAME_PATTERN)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def is_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def is_value(value: str) -> bool:
    return _CONTROL.search(value) is None
