"""Embedded defaults for ``mfa-gateway demo``: generated dev keys, SQLite, in-memory state, one demo user.

Everything lives in one data folder (``.demo`` by default) and is made on the first run only. The demo relaxes
exactly two production rules, and says so: cookies are sent over plain HTTP (``session.secure: false``), and the
server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import yaml

from mfa_gateway import config
from mfa_gateway.adapters.users_file import UsersFile
from mfa_gateway.core.hashing import Hasher
from mfa_gateway.core.keyring import new_keyring_document
from mfa_gateway.core.tokens import new_signing_key_document
from mfa_gateway.core.users import User

DEMO_USER = "demo"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def prepare(data_dir: Path, port: int) -> tuple[config.Settings, str]:
    """Create the demo's files if missing; return its settings and the demo user's password."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    if not (data_dir / "keyring.json").exists():
        _write_private(data_dir / "keyring.json", new_keyring_document("demo-1"))
    if not (data_dir / "signing-keys.json").exists():
        _write_private(data_dir / "signing-keys.json", new_signing_key_document("demo-sig-1"))
    settings_doc = {
        "mode": "demo",
        "listen": {"host": "127.0.0.1", "port": port},
        "identity": {"source": "builtin", "users_file": "users.yaml"},
        "store": {"url": "sqlite+aiosqlite:///mfa-gateway.db"},
        "state": {"backend": "memory"},
        "session": {"cookie_name": "mfa_session", "secure": False},
        "secrets": {"keyring": "file:keyring.json", "signing_keys": "file:signing-keys.json"},
        "audit": {"path": "audit.log"},
    }
    config_path = data_dir / "gateway.yaml"
    config_path.write_text(
        "# Written by `mfa-gateway demo`. Demo only: cookies without Secure, dev keys on local disk.\n"
        + yaml.safe_dump(settings_doc, sort_keys=False),
        encoding="utf-8",
    )
    settings = config.load_settings(config_path)
    password_file = data_dir / "demo-password.txt"
    if not password_file.exists():
        password = secrets.token_urlsafe(12)
        assert settings.identity.users_file is not None
        UsersFile(settings.identity.users_file).put(
            User(DEMO_USER, Hasher(settings.hashing.params()).hash(password), "demo@example.test")
        )
        _write_private(password_file, password + "\n")
    return settings, password_file.read_text(encoding="utf-8").strip()


def instructions(settings: config.Settings, password: str) -> str:
    base = f"http://127.0.0.1:{settings.listen.port}{settings.prefix}"
    return f"""
mfa-gateway demo (mode: demo; dev keys and data in {settings.store.url.rsplit("/", 1)[0].split("///")[-1]})

  user: {DEMO_USER}    password: {password}

  curl -s {base}/healthz
  curl -s -c jar -H 'Content-Type: application/json' -d '{{"username":"{DEMO_USER}","password":"{password}"}}' \\
       {base}/api/login
  curl -s -b jar -c jar -H 'Content-Type: application/json' -d '{{}}' {base}/api/mfa/enable
  curl -s -b jar -c jar -H 'Content-Type: application/json' -d '{{"token":"123456"}}' {base}/api/mfa/verify
  curl -s -b jar {base}/api/mfa/status
"""
