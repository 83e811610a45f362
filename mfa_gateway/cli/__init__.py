"""The command line: one module per front door, each adding its sub-command (``register``) and running it.

mfa-gateway serve --config FILE          run the gateway                                  (cli/serve.py)
mfa-gateway check-config --config FILE   validate a config file (exit 2 with the problems) (cli/check_config.py)
mfa-gateway demo [--data-dir DIR]        run on embedded defaults, generating dev keys     (cli/demo.py)
mfa-gateway keygen {keyring,signing}     print a new keyring or signing-key set as JSON    (cli/keygen.py)
mfa-gateway users add NAME --config FILE add or replace a builtin user (asks for the password)
mfa-gateway users {enroll,list,show,reset} …  enrollments; reset is the lost-phone recovery (cli/users.py)
mfa-gateway rekey --config FILE          re-encrypt every TOTP secret with the primary key (cli/rekey.py)
mfa-gateway secrets check --config FILE  resolve every secret reference; never a value     (cli/secrets.py)
mfa-gateway config schema                print the config file's JSON Schema               (cli/config.py)
mfa-gateway inject -f FILE --image IMAGE add the gateway sidecar to opted-in workloads      (cli/inject.py)
mfa-gateway injector --config FILE       the admission webhook doing the same in-cluster   (cli/injector.py)

Here: ``main`` (the console script's entry point, ``mfa_gateway.cli:main``), and the one place a failure becomes
an exit code and a message on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mfa_gateway import __version__, logs
from mfa_gateway.adapters.users_file import UsersFileError
from mfa_gateway.cli import check_config, demo, inject, injector, keygen, rekey, secrets, serve, users
from mfa_gateway.cli import config as config_cmd
from mfa_gateway.cli.common import EXIT_CONFIG, log_level
from mfa_gateway.config import ConfigError
from mfa_gateway.core.errors import MfaError
from mfa_gateway.core.keyring import KeyringError
from mfa_gateway.core.tokens import SigningKeyError
from mfa_gateway.secrets.refs import SecretRefError
from mfa_gateway.secrets.sources import SecretsNotLoaded

__all__ = ["EXIT_CONFIG", "main"]

FRONT_DOORS = (serve, check_config, demo, keygen, users, secrets, rekey, config_cmd, inject, injector)
"""The sub-commands, in the order ``--help`` lists them."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure(log_level(args), "text")
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"mfa-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (SecretRefError, KeyringError, SigningKeyError, SecretsNotLoaded) as exc:
        print(f"mfa-gateway: a secret could not be loaded: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except MfaError as exc:
        print(f"mfa-gateway: {exc.message}", file=sys.stderr)
        return 1
    except UsersFileError as exc:
        print(f"mfa-gateway: identity.users_file: {exc}; fix the file or recreate it with 'users add'", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mfa-gateway",
        description="TOTP MFA in front of any web application.",
        epilog="example:\n  mfa-gateway demo\n  mfa-gateway check-config --config gateway.yaml\n"
        "  mfa-gateway serve --config gateway.yaml\n\n'mfa-gateway COMMAND --help' shows each command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mfa-gateway {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for front_door in FRONT_DOORS:
        front_door.register(commands)
    return parser
