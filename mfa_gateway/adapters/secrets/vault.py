"""``vault:`` secrets: one field of a KV version 2 secret on Vault or OpenBao.

The change check reads the secret's metadata (``<mount>/metadata/<path>``), which carries version numbers but no
value, so an unchanged secret costs one small request per refresh and its value never crosses the network again.
The gateway's policy therefore needs ``read`` on both ``<mount>/data/<path>`` and ``<mount>/metadata/<path>``.

Where the mount ends is asked once per reference (``sys/internal/ui/mounts/<location>``, as ``vault kv get`` does),
so a mount whose own path has slashes (``vault:teams/platform/kv/mfa#keyring``) works. A server that does not answer
that question for the gateway's token (404, 403) leaves the first segment as the mount.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import hvac.exceptions

from mfa_gateway.adapters.secrets.vault_auth import VaultSession
from mfa_gateway.core.secret import Secret
from mfa_gateway.ports import Fetched, PermanentSecretError, SecretProvider
from mfa_gateway.secrets.refs import SecretRef, SecretRefError, field_value


class VaultProvider(SecretProvider):
    """Reads through a ``VaultSession``, which the Transit cipher may share; whoever built the session closes it."""

    def __init__(self, session: VaultSession) -> None:
        self.session = session
        self._mounts: dict[str, tuple[str, str]] = {}  # location -> (mount, path inside it)
        self._lock = threading.Lock()

    def split(self, ref: SecretRef) -> tuple[str, str]:
        """The mount and the path inside it, found once per location (nested mounts included)."""
        with self._lock:
            known = self._mounts.get(ref.location)
        if known is not None:
            return known

        def ask(client: Any) -> Any:
            try:
                return client.adapter.get(f"/v1/sys/internal/ui/mounts/{ref.location}")
            except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidPath, hvac.exceptions.InvalidRequest):
                return None  # not answered for this token or server: the first segment is the mount

        answer = self.session.call(f"finding the mount of {ref}", ask)
        mount_path = answer.get("data", {}).get("path") if isinstance(answer, dict) else None
        mount = mount_path.strip("/") if isinstance(mount_path, str) else ""
        if mount and ref.location.startswith(mount + "/"):
            found = (mount, ref.location[len(mount) + 1 :])
        else:
            found = (ref.mount, ref.path)
        with self._lock:
            self._mounts[ref.location] = found
        return found

    def fetch(self, ref: SecretRef) -> Fetched:
        mount, path = self.split(ref)

        def read(client: Any) -> Any:
            return client.secrets.kv.v2.read_secret_version(
                path=path, version=ref.version, mount_point=mount, raise_on_deleted_version=True
            )

        response = self.session.call(f"reading {ref}", read)
        try:
            data = response["data"]["data"]
            version = int(response["data"]["metadata"]["version"])
        except (KeyError, TypeError, ValueError):
            raise PermanentSecretError(f"{ref}: the answer is not a KV v2 secret; is {mount}/ a KV v2 mount?") from None
        if not isinstance(data, dict):
            raise PermanentSecretError(f"{ref}: the secret holds no key/value data")
        try:
            value = field_value(data, ref.field, ref) if ref.field else json.dumps(data)
        except SecretRefError as exc:
            raise PermanentSecretError(str(exc)) from None
        return Fetched(Secret(value), str(version), f"vault kv {ref.location} (version {version})")

    def current_version(self, ref: SecretRef) -> str | None:
        """The version a fetch would return, from metadata; None when only a real read can tell (deletion pending)."""

        mount, path = self.split(ref)

        def read(client: Any) -> Any:
            return client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)

        response = self.session.call(f"reading the metadata of {ref}", read)
        try:
            metadata = response["data"]
            version = ref.version if ref.version is not None else int(metadata["current_version"])
            state = (metadata.get("versions") or {}).get(str(version))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise PermanentSecretError(f"{ref}: the metadata is not KV v2 metadata; is {mount}/ KV v2?") from None
        if state is None:
            raise PermanentSecretError(f"{ref}: version {version} does not exist")
        if state.get("destroyed"):
            raise PermanentSecretError(f"{ref}: version {version} was destroyed; point the reference at a live one")
        if state.get("deletion_time"):
            return None  # deleted, or scheduled for deletion (delete_version_after): let the read decide
        return str(version)
