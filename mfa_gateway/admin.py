"""Administrator commands that work on the store and shared state: users list/show/reset, rekey."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from mfa_gateway import config
from mfa_gateway.core.keyring import KeyringError
from mfa_gateway.core.users import canonical_user
from mfa_gateway.ports import CredentialStore, EnrollmentStore
from mfa_gateway.runtime import build_runtime, build_state, build_store, longest_session, open_sources, totp_cipher
from mfa_gateway.secrets.keys import Keys
from mfa_gateway.service.account import reset_everywhere
from mfa_gateway.service.mfa import Caller

PAGE = 500
T = TypeVar("T")
ADMIN_TIMEOUT = 10.0
"""Seconds ``users reset`` waits for the running gateway's admin listener."""


async def run(settings: config.Settings, action: str, name: str | None, *, qr: Path | None = None) -> int:
    if action == "enroll":  # a whole runtime of its own: the service's enrollment, audit included
        assert name is not None
        return await _enroll(settings, canonical_user(name), qr)
    if action == "reset":
        assert name is not None
        return await _reset(settings, canonical_user(name))
    sources = open_sources(settings)
    sources.load_now()
    store = build_store(settings, sources)
    state = build_state(settings, sources)
    try:
        await store.migrate()
        if action == "list":
            listed = 0
            async for line in _listing(store, store):
                print(line)
                listed += 1
            if not listed:
                print("no enrollments yet (users enroll on the gateway's pages, or: mfa-gateway users enroll NAME)")
            return 0
        assert name is not None
        user_id = canonical_user(name)
        if action == "show":
            found = await store.get_enrollment(user_id)
            keys = await store.credentials_of(user_id)
            if found is None and not keys:
                print(f"{user_id}: not enrolled")
                return 1
            if found is not None:
                left = await store.count_unused_backup_codes(user_id)
                print(f"{user_id}: {found.status}, backup codes left {left}, key {found.key_id}")
                activated = f", activated {iso_utc(found.activated_at)}" if found.activated_at is not None else ""
                print(f"  created {iso_utc(found.created_at)}{activated}")
            else:
                print(f"{user_id}: no authenticator app")
            for key in keys:
                used = iso_utc(key.last_used_at) if key.last_used_at is not None else "never"
                synced = ", synced passkey" if key.backup_eligible else ""
                print(f"  security key {key.name!r}: added {iso_utc(key.created_at)}, last used {used}{synced}")
            for event in await store.recent_audit(user_id, 10):
                print(f"  {iso_utc(event.at)} {event.event} {event.result} {event.client_ip or ''}".rstrip())
            return 0
        raise ValueError(f"unknown action {action!r}")
    finally:
        await state.close()
        await store.close()
        sources.close()


async def _reset(settings: config.Settings, user_id: str) -> int:
    """A lost phone: the user's sessions and JWTs revoked on every replica, the enrollment deleted, lockouts lifted,
    an ``mfa.reset`` audit event written. With Redis this process does it all (the revocation reaches every replica
    through the feed). With ``state.backend: memory`` sessions and lockouts live in the running gateway's memory:
    it is asked to do the reset through its admin listener; if it cannot be reached, the enrollment is still deleted
    here, and the exit code is 1 with what to do."""
    if settings.state.backend == "memory":
        try:
            deleted = await asyncio.to_thread(_reset_through_admin_listener, settings, user_id)
        except AdminListenerError as exc:
            print(f"mfa-gateway: {exc}", file=sys.stderr)
        else:
            print(f"{user_id}: {_deleted(deleted)}; sessions and tokens revoked, lockouts lifted (running gateway)")
            return 0
    runtime = build_runtime(settings)
    try:
        await runtime.store.migrate()
        deleted = await reset_everywhere(
            runtime.mfa,
            runtime.revocations,
            runtime.devices,
            user_id,
            longest_session=longest_session(settings),
            via="cli",
        )
    finally:
        await runtime.close()
    if settings.state.backend == "memory":
        print(
            f"{user_id}: {_deleted(deleted)}; a running gateway's sessions and lockouts for {user_id} are NOT reset: "
            "run this again while it runs, with admin.enabled and admin.token set"
        )
        return 1
    print(f"{user_id}: {_deleted(deleted)}; sessions and tokens revoked on every replica, lockouts lifted")
    return 0


async def _listing(enrollments: EnrollmentStore, credentials: CredentialStore) -> AsyncIterator[str]:
    """One line per user with a second factor, by user id: the authenticator app's enrollment (status, TOTP
    settings, key id) and the number of security keys; a key-only user shows ``active`` and ``-`` for the app. Both
    tables are read a page at a time and merged, so no user is left out and none is held twice in memory."""
    apps = _paged(lambda after: enrollments.list_enrollments(after, PAGE), lambda enrollment: enrollment.user_id)
    keys = _paged(lambda after: credentials.credential_counts(after, PAGE), lambda count: count[0])
    app, key = await anext(apps, None), await anext(keys, None)
    while app is not None or key is not None:
        user = min(name for name in (app.user_id if app else None, key[0] if key else None) if name is not None)
        count = key[1] if key is not None and key[0] == user else 0
        said = f"\t{count} security key{'' if count == 1 else 's'}" if count else ""
        if app is not None and app.user_id == user:
            totp = f"{app.params.algorithm}/{app.params.digits}/{app.params.period}s"
            yield f"{user}\t{app.status}\t{totp}\tkey {app.key_id}{said}"
            app = await anext(apps, None)
        else:
            yield f"{user}\tactive\t-\t-{said}"
        if count:
            key = await anext(keys, None)


async def _paged(read: Callable[[str | None], Awaitable[list[T]]], user_of: Callable[[T], str]) -> AsyncIterator[T]:
    after: str | None = None
    while page := await read(after):
        for item in page:
            yield item
        after = user_of(page[-1])


def iso_utc(timestamp: float) -> str:
    """A Unix time as ISO 8601 in UTC to the second, ``2026-11-05T14:03:22Z``: what people and tools read alike."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _deleted(deleted: bool) -> str:
    return "enrollment deleted" if deleted else "no enrollment"


class AdminListenerError(Exception):
    """The running gateway's admin listener could not do a reset; the message says why and names the key."""


def _reset_through_admin_listener(settings: config.Settings, user_id: str) -> bool:
    """POST /admin/users/reset to the gateway's admin listener (admin.host/admin.port, bearer admin.token)."""
    admin = settings.admin
    if not admin.enabled or admin.token is None:
        raise AdminListenerError(
            "admin.token: with state.backend: memory, users reset reaches the running gateway through its admin "
            "listener; set admin.enabled: true and admin.token (and restart the gateway)"
        )
    sources = open_sources(settings)
    try:
        sources.load_now()
        token = sources.value("admin.token").reveal()
    finally:
        sources.close()
    host = _loopback_for(admin.host)
    url = f"http://{host}:{admin.port}/admin/users/reset"
    request = urllib.request.Request(
        url,
        data=json.dumps({"user": user_id}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP proxy
    try:
        with opener.open(request, timeout=ADMIN_TIMEOUT) as response:
            return bool(json.load(response)["data"]["enrollmentDeleted"])
    except urllib.error.HTTPError as exc:
        raise AdminListenerError(f"admin.token: the gateway at {url} refused the reset (HTTP {exc.code})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AdminListenerError(
            f"admin.port: no gateway answered at {url} ({reason}); is it running with this config?"
        ) from None


def _loopback_for(host: str) -> str:
    """The address to reach a listener bound to ``host`` from this machine (a wildcard means loopback)."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - reading the bind address, not binding
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


async def _enroll(settings: config.Settings, user_id: str, qr: Path | None) -> int:
    """Start (or restart) a pending enrollment; the user confirms it with a code on the enroll page or API."""
    runtime = build_runtime(settings)
    try:
        await runtime.store.migrate()
        start = await runtime.mfa.start_enrollment(Caller(user_id, None), by_administrator=True)
    finally:
        await runtime.close()
    print(f"enrollment started for {user_id}; give the user, over a trusted channel:")
    print(f"  key (manual entry): {start.secret}")
    print(f"  otpauth URI:        {start.otpauth_url}")
    print("  backup codes:       " + "  ".join(start.backup_codes))
    prefix = settings.prefix
    print(f"The user confirms with a current code at {prefix}/enroll (or POST {prefix}/api/mfa/verify).")
    if qr is not None:
        await asyncio.to_thread(_write_private, qr, start.qr_svg)
        print(f"QR code written to {qr}")
    return 0


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


async def rekey(settings: config.Settings) -> int:
    """Move every TOTP secret to the primary key (Transit: rewrap, the plaintext never leaves Vault). Resumable and
    safe to interrupt: rows already moved are skipped, and each move is compare-and-set."""
    sources = open_sources(settings)
    sources.load_now()
    cipher = totp_cipher(sources, Keys(sources))
    await cipher.start()
    primary = cipher.primary
    store = build_store(settings, sources)
    moved: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    try:
        await store.migrate()
        after = None
        while page := await store.list_enrollments(after, PAGE):
            for enrollment in page:
                if enrollment.key_id == primary:
                    continue
                try:
                    ciphertext = await cipher.reencrypt(enrollment.secret_ciphertext, context=enrollment.user_id)
                except KeyringError:
                    failed[enrollment.key_id] += 1
                    continue
                if await store.update_secret(
                    enrollment.user_id, enrollment.secret_ciphertext, ciphertext, cipher.key_id_of(ciphertext)
                ):
                    moved[enrollment.key_id] += 1
            after = page[-1].user_id
    finally:
        await store.close()
        sources.close()
    for kid, count in sorted(moved.items()):
        print(f"re-encrypted {count} from key {kid} to {primary}")
    for kid, count in sorted(failed.items()):
        print(f"could not decrypt {count} under key {kid} (unknown or disabled)")
    if not moved and not failed:
        print(f"every enrollment is already under key {primary}")
    return 1 if failed else 0
