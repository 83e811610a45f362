"""The secrets tests' leak check: values a test creates must never reach the log.

``leaks`` is an autouse fixture; the conftest of each folder of secrets tests (tests/unit/secrets/ and
tests/integration/secrets/) imports it, so it runs for every test there and nowhere else.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


@dataclass
class LeakGuard:
    """Secret values a test created; at teardown none may appear in the captured log."""

    values: set[str] = field(default_factory=set)

    def new(self, prefix: str = "s") -> str:
        value = f"{prefix}-{secrets.token_hex(12)}"
        self.values.add(value)
        return value

    def clean(self, text: object) -> bool:
        rendered = str(text) + repr(text)
        return not any(value in rendered for value in self.values)


@pytest.fixture(autouse=True)
def leaks(caplog: pytest.LogCaptureFixture) -> Iterator[LeakGuard]:
    guard = LeakGuard()
    caplog.set_level(logging.DEBUG, logger="mfa_gateway")
    yield guard
    # caplog.text at teardown holds only the teardown phase's records: read every phase's records instead.
    text = "\n".join(logging.Formatter().format(r) for when in ("setup", "call") for r in caplog.get_records(when))
    leaked = [value for value in guard.values if value in text]
    assert leaked == [], "a secret value reached the log"
