"""The builtin users file: YAML with Argon2id password hashes, written by ``mfa-gateway users add``.

    users:
      alice: {email: alice@example.com, password_hash: "$argon2id$v=19$...", groups: [admins]}

The file is re-read when its modification time changes, so adding a user needs no restart. Writers (``users add``,
and a gateway storing a password re-hashed to the current Argon2id settings at sign-in) take a lock file beside it,
``.<name>.lock``, and replace the file atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import os
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from mfa_gateway.core.users import User, canonical_user


class UsersFileError(Exception):
    pass


class UsersFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._users: dict[str, User] = {}
        self._mtime: float | None = None

    def get(self, username: str) -> User | None:
        self._reload_if_changed()
        return self._users.get(canonical_user(username))

    def all(self) -> list[User]:
        self._reload_if_changed()
        return sorted(self._users.values(), key=lambda user: user.username)

    def _reload_if_changed(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._users, self._mtime = {}, None
            return
        if mtime != self._mtime:
            self._users = _parse(self.path)
            self._mtime = mtime

    def put(self, user: User) -> None:
        """Add or replace a user; the file is replaced atomically and kept private (mode 0600)."""
        with self._locked():
            self._reload_if_changed()
            self._write({**self._users, user.username: user})

    def replace_hash(self, username: str, expected_hash: str, new_hash: str) -> bool:
        """Store a re-hash of a user's password, unless the entry changed meanwhile (``users add`` set a new
        password: it wins). ``OSError`` when the file cannot be written (a read-only mount)."""
        with self._locked():
            self._reload_if_changed()
            user = self._users.get(canonical_user(username))
            if user is None or not hmac.compare_digest(user.password_hash.encode(), expected_hash.encode()):
                return False
            self._write({**self._users, user.username: replace(user, password_hash=new_hash)})
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time, across processes (``users add`` and the gateways' re-hashes): without it, two
        read-modify-write cycles could each drop the other's change."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent / f".{self.path.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, users: dict[str, User]) -> None:
        document = {
            "users": {
                u.username: {"email": u.email, "password_hash": u.password_hash, "groups": list(u.groups)}
                for u in sorted(users.values(), key=lambda u: u.username)
            }
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-", suffix=".yaml")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                yaml.safe_dump(document, handle, sort_keys=False)
            Path(tmp).replace(self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._reload_if_changed()


def _parse(path: Path) -> dict[str, User]:
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        entries = data.get("users") or {}
        users = {}
        for name, entry in entries.items():
            username = canonical_user(str(name))
            users[username] = User(
                username=username,
                password_hash=str(entry["password_hash"]),
                email=entry.get("email"),
                groups=tuple(str(g) for g in entry.get("groups") or ()),
            )
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError) as exc:
        raise UsersFileError(f"{path}: expected 'users: {{NAME: {{password_hash: ..., email: ...}}}}'") from exc
    return users
