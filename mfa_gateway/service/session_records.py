"""The account page's sessions, the use cases: record a session where it is issued, list the user's live ones,
end one of them, or every one but the caller's ("sign out everywhere else"), on every replica.

A record is written once, at issuance, and read only by these use cases: an authenticated request never touches it.
The list is the records still active in SQL *and* not revoked in this replica's revocation view, which every
replica shares (by sid, and by user with a cut time), so a session signed out, replaced at a step-up or cut by
"sign out everywhere" leaves the list without a write to its record (the row is purged when it expires).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from mfa_gateway.core.model import AuditEvent
from mfa_gateway.core.session import Session, new_session_id
from mfa_gateway.core.session_records import SessionRecord, new_record_id
from mfa_gateway.ports import AuditSink, SessionRecordStore
from mfa_gateway.service.mfa import Caller
from mfa_gateway.service.revocations import RevocationView


class SessionRecords:
    def __init__(
        self,
        store: SessionRecordStore,
        revocations: RevocationView,
        audit: AuditSink,
        clock: Callable[[], float],
        *,
        longest_session: float,
    ) -> None:
        self._store = store
        self._revocations = revocations
        self._audit = audit
        self._clock = clock
        self._longest_session = longest_session

    async def issued(self, session: Session, label: str) -> None:
        """Record a session just issued (``label``: the browser, from ``devices.device_label``)."""
        record = SessionRecord(
            id=new_record_id(),
            sid=session.sid,
            user_id=session.user_id,
            methods=session.methods,
            label=label,
            created_at=session.issued_at,
            expires_at=session.expires_at,
        )
        await self._store.add_session_record(record, now=self._clock())

    async def live(self, user_id: str) -> list[SessionRecord]:
        """The user's sessions that still work, oldest first."""
        records = await self._store.session_records_of(user_id, self._clock())
        return [r for r in records if not self._revocations.is_revoked(r.sid, r.user_id, r.created_at)]

    async def end(self, caller: Caller, record_id: str) -> bool:
        """End one of the caller's sessions, named by its record's public id, on every replica; False if the caller
        has no such live session."""
        record = await self._store.revoke_session_record(caller.user_id, record_id, self._clock())
        if record is None:
            return False
        await self._revocations.revoke_session_id(record.sid, record.expires_at)
        await self._emit(caller, record=record.id)
        return True

    async def end_others(self, caller: Caller, current: Session) -> Session:
        """End every session and JWT of the caller but ``current``, on every replica, and return ``current`` issued
        again under a new sid, for the caller to give the browser through the one place that issues (and records)
        a session.

        The user is cut at now, as "sign out everywhere" does, so sessions without a record (issued before records
        existed, or a first factor's alone) and JWTs end too, and a session another replica issues during the call
        is either before the cut (ended) or after it (a new sign-in). The current session cannot survive the cut
        under its old sid; its successor is issued strictly after the cut."""
        cut = await self._revocations.revoke_user(caller.user_id, self._longest_session)
        now = max(self._clock(), math.nextafter(cut, math.inf))
        await self._store.revoke_session_records(caller.user_id, now, keep_sid=None)
        successor = replace(current, sid=new_session_id(), issued_at=now, last_seen=now)
        await self._emit(caller, scope="others")
        return successor

    async def _emit(self, caller: Caller, **detail: str) -> None:
        at, user, client = self._clock(), caller.user_id, caller.client_ip
        event = AuditEvent(at, "session.revoked", "success", user_id=user, client_ip=client, detail=detail)
        await self._audit.emit(event)
