"""Logging: one JSON object per line (or plain text for a terminal), every line through a redaction step.

The gateway never logs a code, secret, cookie or password on purpose; redaction is the second line of defence for
what a library or an exception message might carry:

* every secret value the gateway loaded (keyrings, passwords, tokens) is registered here the moment it is read and
  replaced wherever it appears in a line (``register_secret``);
* ``Bearer`` credentials, JWT-shaped strings, Vault tokens, AWS access key ids, a ``code=123456`` pair, and the
  value of any ``name=value`` or ``"name": value`` pair whose name says password, secret, token, cookie or
  authorization;
* structured fields (``extra=``) with such names are replaced whole.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Literal

REDACTED = "[redacted]"
_NAMES = r"password|passwd|secret|token|cookie|authorization|api[_-]?key|credential|otp|totp"
"""What a field or ``name=value`` pair is called when its value must never be logged (one list for both uses)."""
_SENSITIVE_NAME = re.compile(rf"(?i)({_NAMES})")
_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # a JWT
    re.compile(r"\b(hvs|hvb|hvr|s|b)\.[A-Za-z0-9_-]{20,}"),  # Vault / OpenBao tokens
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"__Host-[A-Za-z0-9_-]+=[^\s;,\"']+"),  # a __Host- cookie and its value
    re.compile(r"(?i)\b(code|token|mfa_token)(\"?\s*[:=]\s*\"?)\d{6,10}\b"),  # a TOTP code as a value
)
_PAIR = re.compile(
    rf"(?i)(?<![/\w.-])(?P<name>[\w.-]*(?:{_NAMES})"
    r"[\w.-]*)(?P<sep>\"?\s*[:=]\s*\"?)(?P<value>[^\s\"',;&}]+)"
)
_SKIP_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
MIN_REGISTERED_LENGTH = 6
MIN_PIECE_LENGTH = 16


class _Registry:
    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        """The value, and the pieces a log line could carry on their own: each string inside a JSON document (key
        material, a password field) and each line of a multi-line value (a PEM key), when long enough to be secret."""
        if len(value) < MIN_REGISTERED_LENGTH or value in self._values:
            return
        pieces = {value}
        try:
            document = json.loads(value)
        except ValueError:
            document = None
        for leaf in _strings(document) if isinstance(document, (dict, list)) else [value]:
            pieces |= {part.strip() for part in [leaf, *leaf.splitlines()] if len(part.strip()) >= MIN_PIECE_LENGTH}
        with self._lock:
            self._values = self._values | pieces

    @property
    def values(self) -> frozenset[str]:
        return self._values

    def scrub(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text


def _strings(document: object) -> list[str]:
    if isinstance(document, str):
        return [document]
    if isinstance(document, dict):
        return [leaf for item in document.values() for leaf in _strings(item)]
    if isinstance(document, list):
        return [leaf for item in document for leaf in _strings(item)]
    return []


_registry = _Registry()


def registered_secrets() -> frozenset[str]:
    """Every secret value (and piece) registered so far: what no log line may contain (the tests check this)."""
    return _registry.values


def register_secret(value: str) -> None:
    """Make sure ``value`` never appears in a log line, whoever writes it (called when a secret is loaded)."""
    _registry.add(value)


def redact(text: str) -> str:
    text = _registry.scrub(text)
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return _PAIR.sub(lambda m: m["name"] + m["sep"] + REDACTED, text)


def _redact_value(name: str, value: Any) -> Any:
    if _SENSITIVE_NAME.search(name):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's ``extra`` fields, and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name, value in record.__dict__.items():
            if name not in _SKIP_FIELDS and not name.startswith("_"):
                entry[name] = _redact_value(name, value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal (``make demo``), redacted the same way."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The message, the fields and the traceback are redacted each on its own (the logger's name and the level
        are not data: ``mfa_gateway.secrets: …`` must not read as a ``secrets: value`` pair)."""
        message = redact(record.getMessage())
        # exc_text/stack_info: another handler may have formatted the record already and cached its raw traceback
        clean = logging.makeLogRecord(
            {**record.__dict__, "msg": message, "args": None, "exc_info": None, "exc_text": None, "stack_info": None}
        )
        line = super().format(clean)
        fields = [
            f"{name}={_redact_value(name, value)}"
            for name, value in record.__dict__.items()
            if name not in _SKIP_FIELDS and not name.startswith("_")
        ]
        if fields:
            line += " " + " ".join(fields)
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        if record.stack_info:
            line += "\n" + redact(self.formatStack(record.stack_info))
        return line


def configure(level: str = "info", fmt: Literal["json", "text"] = "json") -> None:
    """Send every log line to standard error through the chosen formatter (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations report through our own start-up line
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the gateway writes its own access events
