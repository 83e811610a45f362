"""Administrator commands that work on the store and shared state: users list/show/reset, rekey."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

from mfa_gateway import config
from mfa_gateway.core.keyring import KeyringError
from mfa_gateway.core.users import canonical_user
from mfa_gateway.runtime import build_runtime, build_state, build_store
from mfa_gateway.secret_store import Keys, open_sources, totp_cipher
from mfa_gateway.service.attempts import login_key, user_key
from mfa_gateway.service.mfa import Caller

PAGE = 500


async def run(settings: config.Settings, action: str, name: str | None, *, qr: Path | None = None) -> int:
    if action == "enroll":  # a whole runtime of its own: the service's enrollment, audit included
        assert name is not None
        return await _enroll(settings, canonical_user(name), qr)
    sources = open_sources(settings)
    sources.load_now()
    store = build_store(settings, sources)
    state = build_state(settings, sources)
    try:
        await store.migrate()
        if action == "list":
            after = None
            while page := await store.list_enrollments(after, PAGE):
                for enrollment in page:
                    print(
                        f"{enrollment.user_id}\t{enrollment.status}\t{enrollment.params.algorithm}/"
                        f"{enrollment.params.digits}/{enrollment.params.period}s\tkey {enrollment.key_id}"
                    )
                after = page[-1].user_id
            return 0
        assert name is not None
        user_id = canonical_user(name)
        if action == "show":
            found = await store.get_enrollment(user_id)
            if found is None:
                print(f"{user_id}: not enrolled")
                return 1
            left = await store.count_unused_backup_codes(user_id)
            print(f"{user_id}: {found.status}, backup codes left {left}, key {found.key_id}")
            for event in await store.recent_audit(user_id, 10):
                print(f"  {event.at:.0f} {event.event} {event.result} {event.client_ip or ''}")
            return 0
        deleted = await store.delete_enrollment(user_id)
        await state.clear_failures([user_key(user_id), login_key(user_id)])
        lifted = (
            "lockouts lifted"
            if settings.state.backend == "redis"
            else ("lockouts live in the running gateway's memory (state.backend: memory); restart it to lift them")
        )
        print(f"{user_id}: {'enrollment deleted' if deleted else 'no enrollment'}; {lifted}")
        return 0
    finally:
        await state.close()
        await store.close()
        sources.close()


async def _enroll(settings: config.Settings, user_id: str, qr: Path | None) -> int:
    """Start (or restart) a pending enrollment; the user confirms it with a code on the enroll page or API."""
    runtime = build_runtime(settings)
    try:
        await runtime.store.migrate()
        start = await runtime.mfa.start_enrollment(Caller(user_id, None))
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
    cipher = totp_cipher(settings, sources, Keys(sources))
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
