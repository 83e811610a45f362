"""Remembered devices, the use cases: trust a browser after MFA, let it stand in for the second factor, list and
revoke its grants (the rules are in ``core.devices``).

Every outcome is one audit event, ``device.trusted``, ``device.used`` (success, or failure with a reason from
``Refusal``) and ``device.revoked``, naming the grant by its public id: never the token, nor its hash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mfa_gateway.core import devices
from mfa_gateway.core.devices import DeviceGrant, DeviceMfa, Refusal
from mfa_gateway.core.model import AuditEvent
from mfa_gateway.ports import AuditSink, DeviceStore
from mfa_gateway.service.mfa import Caller


@dataclass(frozen=True, slots=True)
class Trusted:
    """A new grant, and the token for the browser's cookie: handed out this once, never stored."""

    token: str
    grant: DeviceGrant


class DeviceService:
    def __init__(self, store: DeviceStore, audit: AuditSink, clock: Callable[[], float], *, keep: int) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self._keep = keep

    async def trust(
        self, caller: Caller, *, factor: str, age: float, label: str, replacing: str | None = None
    ) -> Trusted:
        """Remember the caller's browser for ``age`` seconds after first factor ``factor`` (the caller just passed
        MFA on a rule that remembers devices that long). ``replacing``: the token the browser held until now; its
        grant, if it is the caller's, is revoked, so one browser holds one grant."""
        if replacing and devices.well_formed(replacing):
            old = await self._store.device_grant(devices.token_hash(replacing))
            if old is not None and old.user_id == caller.user_id:
                await self.revoke(caller, old.id)
        now = self._clock()
        token = devices.new_token()
        grant = DeviceGrant(
            id=devices.new_grant_id(),
            user_id=caller.user_id,
            factor=factor,
            token_hash=devices.token_hash(token),
            label=label,
            created_at=now,
            expires_at=now + min(age, devices.MAX_AGE),
        )
        await self._store.add_device_grant(grant, keep=self._keep, now=now)
        await self._emit("device.trusted", caller, "success", grant=grant.id, factor=factor)
        return Trusted(token, grant)

    async def recognise(self, caller: Caller, token: str, *, factor: str, max_age: float) -> DeviceMfa | None:
        """The stand-in for the caller's second factor if ``token`` names a grant of theirs, after ``factor``, on a
        rule accepting devices up to ``max_age`` old (its use recorded); None otherwise, audited with why."""
        presented = devices.token_hash(token) if devices.well_formed(token) else ""
        grant = await self._store.device_grant(presented) if presented else None
        now = self._clock()
        refusal = devices.judge(
            grant, presented=presented, user_id=caller.user_id, factor=factor, max_age=max_age, now=now
        )
        if refusal is None and grant is not None and not await self._store.use_device_grant(grant.id, now):
            refusal = Refusal.REVOKED  # revoked between the read and the use: the revocation wins
        named = {"grant": grant.id} if grant is not None and refusal is not Refusal.OTHER_USER else {}
        if refusal is not None or grant is None:
            await self._emit("device.used", caller, "failure", method="device", reason=str(refusal), **named)
            return None
        await self._emit("device.used", caller, "success", method="device", **named)
        return DeviceMfa(at=now, trusted_at=grant.created_at, expires_at=grant.expires_at)

    async def grants(self, user_id: str) -> list[DeviceGrant]:
        """The user's active grants, oldest first."""
        return await self._store.device_grants_of(user_id, self._clock())

    async def revoke(self, caller: Caller, grant_id: str) -> bool:
        """Revoke one of the caller's grants; False if they have no such active grant."""
        if not await self._store.revoke_device_grant(caller.user_id, grant_id, self._clock()):
            return False
        await self._emit("device.revoked", caller, "success", grant=grant_id)
        return True

    async def revoke_all(self, caller: Caller, *, via: str) -> int:
        """Revoke every grant of the caller (disable, reset, sign-out everywhere); how many there were."""
        count = await self._store.revoke_device_grants(caller.user_id, self._clock())
        if count:
            await self._emit("device.revoked", caller, "success", scope="all", count=str(count), via=via)
        return count

    async def _emit(self, event: str, caller: Caller, result: str, **detail: str) -> None:
        at, user, client = self._clock(), caller.user_id, caller.client_ip
        await self._audit.emit(AuditEvent(at, event, result, user_id=user, client_ip=client, detail=detail))
