"""The builtin users file: YAML with Argon2id password hashes, written by ``mfa-gateway users add``.

    users:
      alice: {email: alice@example.com, password_hash: "$argon2id$v=19$...", groups: [admins]}

The file is re-read when its modification time changes, so adding a user needs no restart.
"""

from __future__ import annotations

import os
import tempfile
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
        self._reload_if_changed()
        users = {**self._users, user.username: user}
        document = {
            "users": {
                u.username: {"email": u.email, "password_hash": u.password_hash, "groups": list(u.groups)}
                for u in sorted(users.values(), key=lambda u: u.username)
            }
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
