"""``mfa-gateway users``: builtin users (add) and enrollments (enroll, list, show, reset)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from mfa_gateway import config
from mfa_gateway.adapters.users_file import UsersFile
from mfa_gateway.cli.common import Commands, add_command, add_config
from mfa_gateway.core.hashing import Hasher
from mfa_gateway.core.users import User, canonical_user

MIN_PASSWORD = 12

ADMIN_ACTIONS = (
    (
        "list",
        "list users with a second factor (user, status, TOTP settings, key id, security keys)",
        "mfa-gateway users list --config FILE",
    ),
    (
        "show",
        "show one user's enrollment and recent audit events (times in UTC, ISO 8601)",
        "mfa-gateway users show alice --config FILE",
    ),
    (
        "reset",
        "lost phone: revoke the user's sessions and tokens, delete the enrollment, lift lockouts",
        "mfa-gateway users reset alice --config FILE",
    ),
)


def register(commands: Commands) -> None:
    users = commands.add_parser(
        "users",
        help="manage builtin users and enrollments",
        description="Manage builtin users and enrollments.",
    )
    actions = users.add_subparsers(required=True, metavar="ACTION")
    add = add_command(
        actions,
        "add",
        "add or replace a builtin user (asks for the password)",
        """
mfa-gateway users add alice --email alice@example.com --group staff --config FILE
echo 'correct horse battery staple' | mfa-gateway users add alice --password-stdin --config FILE
""",
    )
    add.add_argument("name", help="the user name to sign in with")
    add.add_argument("--email", help="sent to the app in the email header; kept if omitted")
    add.add_argument("--group", action="append", dest="groups", help="a group (repeat for several); kept if omitted")
    add_config(add)
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input instead of asking"
    )
    add.set_defaults(run=run_add)
    enroll = add_command(
        actions,
        "enroll",
        "start an enrollment for a user (prints key and backup codes)",
        "mfa-gateway users enroll alice --qr alice-qr.svg --config FILE",
    )
    enroll.add_argument("name", help="the user to enroll")
    add_config(enroll)
    enroll.add_argument("--qr", type=Path, metavar="FILE", help="also write the QR code as an SVG file (mode 0600)")
    enroll.set_defaults(run=run_admin, action="enroll")
    for action, summary, example in ADMIN_ACTIONS:
        sub = add_command(actions, action, summary, example)
        if action != "list":
            sub.add_argument("name", help="the user name")
        add_config(sub)
        sub.set_defaults(run=run_admin, action=action)


def run_add(args: argparse.Namespace) -> int:
    settings = config.load_settings(args.config)
    users_file = settings.identity.users_file
    if settings.identity.source != "builtin" or users_file is None:
        raise config.ConfigError(["identity.source: users add needs the builtin identity source and users_file"])
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat: ") != password:
            print("mfa-gateway: the passwords differ", file=sys.stderr)
            return 1
    if len(password) < MIN_PASSWORD:
        print(f"mfa-gateway: use a password of at least {MIN_PASSWORD} characters", file=sys.stderr)
        return 1
    users = UsersFile(users_file)
    existing = users.get(args.name)
    groups = tuple(args.groups) if args.groups else (existing.groups if existing else ())
    email = args.email if args.email is not None else (existing.email if existing else None)
    user = User(canonical_user(args.name), Hasher(settings.hashing.params()).hash(password), email, groups)
    users.put(user)
    print(f"user {user.username} saved in {users_file}")
    return 0


def run_admin(args: argparse.Namespace) -> int:
    from mfa_gateway import admin

    settings = config.load_settings(args.config)
    return asyncio.run(admin.run(settings, args.action, getattr(args, "name", None), qr=getattr(args, "qr", None)))
