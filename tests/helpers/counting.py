"""A call counter around a real provider: it observes, every answer still comes from the real backend."""

from __future__ import annotations

from collections import Counter

from mfa_gateway.ports import Fetched, SecretProvider
from mfa_gateway.secrets.refs import SecretRef


class Counting(SecretProvider):
    def __init__(self, inner: SecretProvider) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def fetch(self, ref: SecretRef) -> Fetched:
        self.calls["fetch"] += 1
        return self.inner.fetch(ref)

    def current_version(self, ref: SecretRef) -> str | None:
        self.calls["current_version"] += 1
        return self.inner.current_version(ref)

    def previous(self, ref: SecretRef) -> Fetched | None:
        self.calls["previous"] += 1
        return self.inner.previous(ref)
