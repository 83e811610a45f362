"""``mfa-gateway secrets check``: resolve every secret reference; report source and version, never a value."""

from __future__ import annotations

import argparse
import contextlib

from mfa_gateway import config
from mfa_gateway.cli.common import EXIT_CONFIG, Commands, add_command, add_config
from mfa_gateway.core.errors import MfaError


def register(commands: Commands) -> None:
    secrets_cmd = commands.add_parser(
        "secrets", help="inspect the gateway's own secrets", description="Inspect the gateway's own secrets."
    )
    actions = secrets_cmd.add_subparsers(required=True, metavar="ACTION")
    check = add_command(
        actions,
        "check",
        "resolve every secret reference and report what loaded and from where (never a value)",
        "mfa-gateway secrets check --config /etc/mfa-gateway/gateway.yaml",
    )
    add_config(check)
    check.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """One line per secret: its config key, reference, whether it loaded, from where and which version; and the
    primary key id of each keyring. Exit 0 when everything loaded, 2 otherwise."""
    from mfa_gateway.runtime import open_sources
    from mfa_gateway.secrets.keys import Keys

    settings = config.load_settings(args.config)
    sources = open_sources(settings)
    failures = sources.cache.load_now()
    sources.close()  # everything below reads what was loaded
    statuses = {status.ref: status for status in sources.cache.status()}
    for key, ref in sources.refs.items():
        status = statuses[str(ref)]
        if status.usable:
            print(f"{key}: ok  {ref}  from {status.source} (version {status.version})")
        else:
            print(f"{key}: FAILED  {ref}  {status.last_error or 'not loaded'}")
    for key in sources.fixed:
        print(f"{key}: literal or env value (accepted in mode: demo only)")
    keys = Keys(sources)
    for name in ("keyring", "session_keyring"):
        with contextlib.suppress(MfaError):  # a keyring that did not load is already reported above
            print(f"{name}: primary key {getattr(keys, name).primary}")
    return EXIT_CONFIG if failures else 0
