"""``mfa-gateway check-config``: validate a config file and what serve would open at start."""

from __future__ import annotations

import argparse
import sys

from mfa_gateway import config
from mfa_gateway.adapters.users_file import UsersFile
from mfa_gateway.cli.common import Commands, add_command, add_config


def register(commands: Commands) -> None:
    check = add_command(
        commands,
        "check-config",
        "validate a config file and its secret references (exit 2 with the problems)",
        "mfa-gateway check-config --config /etc/mfa-gateway/gateway.yaml",
    )
    add_config(check)
    check.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mfa_gateway.runtime import open_sources
    from mfa_gateway.secrets.keys import Keys

    settings = config.load_settings(args.config)
    sources = open_sources(settings)
    try:
        sources.load_now()
        keys = Keys(sources)
        keys.keyring, keys.session_keyring, keys.signing_keys  # noqa: B018 - each document parses
    finally:
        sources.close()
    check_start_files(settings)
    print(
        f"{args.config}: valid (mode {settings.mode}, identity {settings.identity.source}, "
        f"state {settings.state.backend}, store {settings.store.url.split(':', 1)[0]})"
    )
    return 0


def check_start_files(settings: config.Settings) -> None:
    """What serve reads or opens at start beyond the secrets: the users file (a malformed or unreadable one stops
    serve, exit 2) and the audit file. A missing users file does not stop serve (no users yet): a warning says so."""
    from mfa_gateway.adapters.audit import JsonLinesAudit

    users_file = settings.identity.users_file
    if settings.identity.source == "builtin" and users_file is not None:
        if not users_file.exists():
            print(
                f"mfa-gateway: warning: identity.users_file: {users_file} does not exist: nobody can sign in until "
                f"'mfa-gateway users add NAME --config FILE' creates it",
                file=sys.stderr,
            )
        UsersFile(users_file).all()
    problem = JsonLinesAudit.problem(settings.audit.path)
    if problem is not None:
        raise config.ConfigError(
            [f"audit.path: cannot append to {settings.audit.path}: {problem}; fix the path or its permissions"]
        )
