"""``mfa-gateway rekey``: re-encrypt every TOTP secret with the keyring's primary key."""

from __future__ import annotations

import argparse
import asyncio

from mfa_gateway import config
from mfa_gateway.cli.common import Commands, add_command, add_config


def register(commands: Commands) -> None:
    rekey = add_command(
        commands,
        "rekey",
        "re-encrypt every TOTP secret with the primary key",
        "mfa-gateway rekey --config /etc/mfa-gateway/gateway.yaml",
    )
    add_config(rekey)
    rekey.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mfa_gateway import admin

    settings = config.load_settings(args.config)
    return asyncio.run(admin.rekey(settings))
