"""Building a real gateway for tests: settings from a dict, dev keys in tmp files, an injected clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mfa_gateway import config
from mfa_gateway.adapters.audit import MemoryAudit
from mfa_gateway.adapters.users_file import UsersFile
from mfa_gateway.core import totp
from mfa_gateway.core.hashing import Hasher
from mfa_gateway.core.keyring import new_keyring_document
from mfa_gateway.core.model import TotpParams
from mfa_gateway.core.tokens import new_signing_key_document
from mfa_gateway.core.users import User
from mfa_gateway.runtime import Runtime, build_runtime
from tests.helpers.support import merge_overrides

FAST_HASHING = {"time_cost": 1, "memory_kib": 8192, "parallelism": 1, "max_concurrency": 4}
START = 1_800_000_000.0


@dataclass
class FakeClock:
    """Injected time: tests move it forward instead of sleeping."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def write_keys(directory: Path) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    keyring, signing = directory / "keyring.json", directory / "signing.json"
    if not keyring.exists():
        keyring.write_text(new_keyring_document("test-1"))
        signing.write_text(new_signing_key_document("sig-1"))
    return {"keyring": f"file:{keyring}", "signing_keys": f"file:{signing}"}


def write_config(tmp_path: Path, document: dict[str, object]) -> Path:
    """``document`` written as ``tmp_path/gateway.yaml``, for the command line to read."""
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def base_config(tmp_path: Path) -> dict[str, object]:
    """A minimal valid gateway.yaml document (builtin users, SQLite, fast hashing, dev keys in ``tmp_path``)."""
    return {
        "identity": {"source": "builtin", "users_file": "users.yaml"},
        "store": {"url": "sqlite+aiosqlite:///mfa.db"},
        "hashing": FAST_HASHING,
        "secrets": write_keys(tmp_path / "keys"),
    }


def make_settings(tmp_path: Path, overrides: Mapping[str, Any] | None = None) -> config.Settings:
    raw: dict[str, Any] = {
        "identity": {"source": "builtin", "users_file": "users.yaml"},
        "store": {"url": "sqlite+aiosqlite:///mfa.db"},
        "hashing": FAST_HASHING,
        # Tests move the clock by days without the background refresh running: keep file secrets servable.
        "secrets": {**write_keys(tmp_path / "keys"), "cache": {"max_stale": 10**9}},
        "audit": {"path": str(tmp_path / "audit.log")},
    }
    return config.parse_settings(merge_overrides(raw, overrides or {}), base_dir=tmp_path)


def add_user(
    settings: config.Settings, name: str, password: str, email: str | None = None, groups: tuple[str, ...] = ()
) -> None:
    assert settings.identity.users_file is not None
    hasher = Hasher(settings.hashing.params())
    UsersFile(settings.identity.users_file).put(User(name, hasher.hash(password), email, groups))


def make_runtime(settings: config.Settings, clock: Callable[[], float]) -> tuple[Runtime, MemoryAudit]:
    audit = MemoryAudit()
    return build_runtime(settings, clock=clock, audit=audit), audit


def current_code(secret: str, clock: FakeClock, params: TotpParams | None = None, offset: int = 0) -> str:
    params = params or TotpParams()
    return totp.code_at(secret, params, totp.time_step(clock.now, params) + offset)


async def database_contents(url: str) -> bytes:
    """Every value of every table, as bytes: what someone who stole the database would have."""
    from sqlalchemy import MetaData, select
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    chunks: list[bytes] = []
    try:
        async with engine.connect() as conn:
            metadata = MetaData()
            await conn.run_sync(metadata.reflect)
            for table in metadata.sorted_tables:
                for row in (await conn.execute(select(table))).all():
                    chunks += [v if isinstance(v, bytes) else str(v).encode() for v in row]
    finally:
        await engine.dispose()
    return b"\n".join(chunks)
