"""Session records: what the account page lists of a user's sessions, kept apart from the sessions themselves.

Sessions are sealed cookies, opened with no network call (``core.session``), so the gateway cannot list them; it
writes a record where a session is issued instead, and the authenticated request never reads it (an authenticated
request costs no round trip besides the upstream). A record is therefore a fact of issuance: when the session was
issued (a step-up issues a new one), until when, by which methods, and a coarse label of the browser from a fixed
vocabulary (``devices.device_label``); no client address is kept. Its ``id`` is a public handle the page revokes by,
never the ``sid``, which stays inside the gateway (revocations name it).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass


def new_record_id() -> str:
    """A record's public handle: random, unrelated to the session id, so showing it reveals nothing."""
    return secrets.token_urlsafe(12)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One issued session as the account page shows it; ``sid`` names it to the revocations."""

    id: str
    sid: str
    user_id: str
    methods: tuple[str, ...]
    label: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None

    def active(self, now: float) -> bool:
        return self.revoked_at is None and now < self.expires_at
