"""Each process's view of revoked sessions, read on every request without a network call.

The view is filled from shared state at start, kept current by the revocation feed (Redis pub/sub across
replicas), and resynchronised every ``resync_every`` seconds in case a message was lost during a reconnect.
While the feed is broken the view is *unhealthy*: the gateway then refuses protected routes (fail closed)
rather than trust sessions it might not know to be revoked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mfa_gateway.core.errors import DependencyUnavailable
from mfa_gateway.core.model import Revocation, RevocationKind
from mfa_gateway.core.session import Session
from mfa_gateway.ports import SharedState

log = logging.getLogger("mfa_gateway.revocations")


class RevocationView:
    def __init__(self, state: SharedState, clock: Callable[[], float], *, resync_every: float = 30.0) -> None:
        self._state = state
        self._clock = clock
        self._resync_every = resync_every
        self._sessions: dict[str, float] = {}  # sid -> forget after
        self._users: dict[str, tuple[float, float]] = {}  # user -> (revoked at, forget after)
        self._healthy = asyncio.Event()

    @property
    def healthy(self) -> bool:
        return self._healthy.is_set()

    @healthy.setter
    def healthy(self, value: bool) -> None:
        if value:
            self._healthy.set()
        else:
            self._healthy.clear()

    async def wait_healthy(self, seconds: float) -> bool:
        """Wait until the feed is live (at start-up, before accepting traffic); False after ``seconds``."""
        try:
            await asyncio.wait_for(self._healthy.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def is_revoked(self, sid: str | None, user_id: str, issued_at: float) -> bool:
        """Whether a session (or a token with a session id) was revoked by id, or by its user after it was issued."""
        if sid is not None and sid in self._sessions:
            return True
        cutoff = self._users.get(user_id)
        return cutoff is not None and issued_at <= cutoff[0]

    def apply(self, revocation: Revocation) -> None:
        if revocation.kind is RevocationKind.SESSION:
            self._sessions[revocation.subject] = revocation.until
        else:
            previous = self._users.get(revocation.subject)
            if previous is None or previous[0] <= revocation.at:
                self._users[revocation.subject] = (revocation.at, revocation.until)

    async def revoke_session(self, session: Session) -> None:
        await self.revoke_session_id(session.sid, session.expires_at)

    async def revoke_session_id(self, sid: str, until: float) -> None:
        await self._publish(Revocation(RevocationKind.SESSION, sid, self._clock(), until))

    async def revoke_user(self, user_id: str, longest_session: float) -> float:
        """Revoke every session and token of the user issued until now; the cut time (now)."""
        now = self._clock()
        await self._publish(Revocation(RevocationKind.USER, user_id, now, now + longest_session))
        return now

    async def _publish(self, revocation: Revocation) -> None:
        self.apply(revocation)  # this process refuses the session at once, whatever the feed does
        await self._state.revoke(revocation)

    async def resync(self) -> None:
        now = self._clock()
        current = await self._state.revocations(now)
        self._sessions = {sid: until for sid, until in self._sessions.items() if until > now}
        self._users = {user: entry for user, entry in self._users.items() if entry[1] > now}
        for revocation in current:
            self.apply(revocation)

    async def run(self) -> None:
        """Follow the feed forever (a background task of the web app); reconnect with backoff on failure."""
        backoff = 0.5
        while True:
            try:
                await self._follow()
            except* DependencyUnavailable:
                if self.healthy:
                    log.warning("revocation feed lost; refusing protected routes until it is back")
                self.healthy = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    async def _follow(self) -> None:
        """Consume the feed and resync periodically; returns only by an exception (or cancellation)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._consume())
            await asyncio.sleep(0)  # let the subscription start before the snapshot, so nothing falls between
            await self.resync()
            self.healthy = True
            while True:
                await asyncio.sleep(self._resync_every)
                await self.resync()

    async def _consume(self) -> None:
        async for revocation in self._state.revocation_feed():
            self.apply(revocation)
