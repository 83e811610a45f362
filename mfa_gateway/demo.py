"""``mfa-gateway demo``: the gateway in front of a bundled legacy app, on embedded defaults.

The bundled app (``mfa_gateway.demo_app``) has its own login form and session cookie and knows nothing about MFA.
The gateway intercepts its login (``identity.source: upstream_login``), asks for a TOTP code (or walks a new user
through enrollment) and only then releases the app's session. Keys, the SQLite database and the demo password
are made in the data folder (``.demo`` by default) on the first run and kept; state is in memory.

The demo relaxes exactly one production rule, and says so: cookies are sent over plain HTTP
(``session.secure: false``), because it listens on 127.0.0.1 only. It is opened as http://localhost: browsers
treat that name as a secure context and accept it as a WebAuthn relying party (an IP address is neither), so
security keys and passkeys work in the demo too (``mode: demo`` alone allows an http origin, and only on
localhost).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import yaml

from mfa_gateway import config
from mfa_gateway.core.keyring import new_keyring_document
from mfa_gateway.core.tokens import new_signing_key_document

DEMO_USER = "demo"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def in_front_of(app_url: str) -> dict[str, Any]:
    """The demo gateway's settings that concern the app: login interception, policy, plain-HTTP cookies."""
    return {
        "mode": "demo",
        "upstream": {"url": app_url},
        "identity": {
            "source": "upstream_login",
            "upstream_login": {
                "login_path": "/login",
                "session_cookie": "legacy_session",
                "whoami_path": "/api/whoami",
                "success_status": [303],
            },
        },
        "policy": {
            "default": "mfa",
            "rules": [
                {"name": "public pages", "path": r"^/(public|static/.*|login)?$", "action": "bypass"},
                {"name": "admin", "path": r"^/admin(/|$)", "action": "mfa"},
            ],
        },
        "session": {"cookie_name": "mfa_session", "secure": False},
    }


def prepare(data_dir: Path, port: int, app_port: int) -> tuple[config.Settings, str]:
    """Create the demo's keys and password on first run, write its config; return settings and password."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    if not (data_dir / "keyring.json").exists():
        _write_private(data_dir / "keyring.json", new_keyring_document("demo-1"))
    if not (data_dir / "signing-keys.json").exists():
        _write_private(data_dir / "signing-keys.json", new_signing_key_document("demo-sig-1"))
    if not (data_dir / "demo-password.txt").exists():
        _write_private(data_dir / "demo-password.txt", secrets.token_urlsafe(12) + "\n")
    document = {
        **in_front_of(f"http://127.0.0.1:{app_port}"),
        "listen": {"host": "127.0.0.1", "port": port},
        "store": {"url": "sqlite+aiosqlite:///mfa-gateway.db"},
        "state": {"backend": "memory"},
        "secrets": {"keyring": "file:keyring.json", "signing_keys": "file:signing-keys.json"},
        "audit": {"path": "audit.log"},
        "log_format": "text",
        "admin": {"enabled": False},  # no second port to collide with on a developer's machine
        "webauthn": {"origins": [browser_url(port)], "rp_id": "localhost"},
    }
    config_path = data_dir / "gateway.yaml"
    config_path.write_text(
        "# Rewritten by every `mfa-gateway demo` run. Demo only: cookies without Secure, dev keys on local disk.\n"
        + yaml.safe_dump(document, sort_keys=False),
        encoding="utf-8",
    )
    password = (data_dir / "demo-password.txt").read_text(encoding="utf-8").strip()
    return config.load_settings(config_path), password


def browser_url(port: int) -> str:
    """Where a browser opens the demo: localhost, the one plain-HTTP name WebAuthn accepts."""
    return f"http://localhost:{port}"


def instructions(settings: config.Settings, password: str) -> str:
    url = browser_url(settings.listen.port)
    return f"""
mfa-gateway demo: the gateway at {url} in front of a bundled legacy app ({settings.upstream.url}).

  Open {url}/admin and sign in to the app as:   user {DEMO_USER}   password {password}
  The gateway holds the app's login until you have set up an authenticator app or a security key or passkey
  (first time), then asks for it. {url}/ and {url}/public need no sign-in.
  Security keys need the name localhost: on http://127.0.0.1:{settings.listen.port} they are refused.

  Sign out: {url}{settings.prefix}/logout        Your account: {url}{settings.prefix}/account
  Health: {url}{settings.prefix}/healthz        Data, keys and audit log: {Path(settings.audit.path).parent}
"""
