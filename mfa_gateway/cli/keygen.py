"""``mfa-gateway keygen``: print a new keyring or signing-key set as JSON."""

from __future__ import annotations

import argparse

from mfa_gateway.cli.common import Commands, add_command
from mfa_gateway.core.keyring import new_keyring_document
from mfa_gateway.core.tokens import new_signing_key_document


def register(commands: Commands) -> None:
    keygen = add_command(
        commands,
        "keygen",
        "print a new keyring or signing-key set as JSON",
        """
(umask 077; mfa-gateway keygen keyring --kid 2026-11 > keyring.json)
(umask 077; mfa-gateway keygen signing --kid sig-2026-11 --alg ES256 > signing-keys.json)
""",
    )
    keygen.add_argument(
        "kind",
        choices=["keyring", "signing"],
        help="keyring: TOTP-secret and session encryption keys; signing: JWT signing keys",
    )
    keygen.add_argument("--kid", required=True, help="the new key's id, e.g. 2026-11")
    keygen.add_argument(
        "--alg", choices=["EdDSA", "ES256"], default="EdDSA", help="signing keys only: the algorithm (default: EdDSA)"
    )
    keygen.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    document = (
        new_keyring_document(args.kid) if args.kind == "keyring" else new_signing_key_document(args.kid, args.alg)
    )
    print(document)
    return 0
