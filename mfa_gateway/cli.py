"""The command line, and the composition root: settings in, a running gateway out.

mfa-gateway serve --config FILE          run the gateway
mfa-gateway check-config --config FILE   validate a config file (exit 2 with the problems)
mfa-gateway demo [--data-dir DIR]        run on embedded defaults, generating dev keys on first run
mfa-gateway keygen {keyring,signing}     print a new keyring or signing-key set as JSON
mfa-gateway users add NAME --config FILE add or replace a builtin user (asks for the password)
mfa-gateway users {list,show,reset} …    enrollments: list them, show one, reset one (admin recovery)
mfa-gateway rekey --config FILE          re-encrypt every TOTP secret with the primary key
mfa-gateway secrets check --config FILE  resolve every secret reference; report source and version, never a value
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path

from mfa_gateway import __version__, config, demo, logs
from mfa_gateway.adapters.users_file import UsersFile, UsersFileError
from mfa_gateway.core.errors import MfaError
from mfa_gateway.core.hashing import Hasher
from mfa_gateway.core.keyring import KeyringError, new_keyring_document
from mfa_gateway.core.tokens import SigningKeyError, new_signing_key_document
from mfa_gateway.core.users import User, canonical_user
from mfa_gateway.secrets.refs import SecretRefError
from mfa_gateway.secrets.sources import SecretsNotLoaded

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure("info", "text")
    try:
        return int(args.run(args))
    except config.ConfigError as exc:
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
    parser = argparse.ArgumentParser(prog="mfa-gateway", description="TOTP MFA in front of any web application.")
    parser.add_argument("--version", action="version", version=f"mfa-gateway {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, required=True)
    serve.add_argument("--workers", type=int, help="processes sharing the port (overrides the workers key)")
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check-config", help="validate a config file and its secret references")
    check.add_argument("--config", type=Path, required=True)
    check.set_defaults(run=_check_config)

    demo_cmd = commands.add_parser("demo", help="run on embedded defaults (dev keys, SQLite, in-memory state)")
    demo_cmd.add_argument("--data-dir", type=Path, default=Path(".demo"))
    demo_cmd.add_argument("--port", type=int, default=9090, help="the gateway's port")
    demo_cmd.add_argument("--app-port", type=int, default=9091, help="the bundled demo app's port")
    demo_cmd.set_defaults(run=_demo)

    keygen = commands.add_parser("keygen", help="print a new keyring or signing-key set as JSON")
    keygen.add_argument("kind", choices=["keyring", "signing"])
    keygen.add_argument("--kid", required=True, help="the new key's id, e.g. 2026-11")
    keygen.add_argument("--alg", choices=["EdDSA", "ES256"], default="EdDSA", help="signing keys only")
    keygen.set_defaults(run=_keygen)

    users = commands.add_parser("users", help="manage builtin users and enrollments")
    users_commands = users.add_subparsers(required=True, metavar="ACTION")
    add = users_commands.add_parser("add", help="add or replace a builtin user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--email")
    add.add_argument("--group", action="append", dest="groups", help="a group (repeat for several); kept if omitted")
    add.add_argument("--config", type=Path, required=True)
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(run=_users_add)
    enroll = users_commands.add_parser("enroll", help="start an enrollment for a user (prints key and backup codes)")
    enroll.add_argument("name")
    enroll.add_argument("--config", type=Path, required=True)
    enroll.add_argument("--qr", type=Path, help="also write the QR code as an SVG file")
    enroll.set_defaults(run=_users_admin, action="enroll")
    for action, helptext in (
        ("list", "list enrollments"),
        ("show", "show one user's enrollment"),
        ("reset", "lost phone: revoke the user's sessions and tokens, delete the enrollment, lift lockouts"),
    ):
        sub = users_commands.add_parser(action, help=helptext)
        if action != "list":
            sub.add_argument("name")
        sub.add_argument("--config", type=Path, required=True)
        sub.set_defaults(run=_users_admin, action=action)

    secrets_cmd = commands.add_parser("secrets", help="inspect the gateway's own secrets")
    secrets_commands = secrets_cmd.add_subparsers(required=True, metavar="ACTION")
    secrets_check = secrets_commands.add_parser(
        "check", help="resolve every secret reference and report what loaded and from where (never a value)"
    )
    secrets_check.add_argument("--config", type=Path, required=True)
    secrets_check.set_defaults(run=_secrets_check)

    rekey = commands.add_parser("rekey", help="re-encrypt every TOTP secret with the primary key")
    rekey.add_argument("--config", type=Path, required=True)
    rekey.set_defaults(run=_rekey)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from mfa_gateway.web.server import ListenerUnavailable, serve

    overrides = {"workers": args.workers} if args.workers is not None else None
    settings = config.load_settings(args.config, overrides)
    try:
        serve(settings)  # each worker sets up logging from the settings
    except ListenerUnavailable as exc:
        print(f"mfa-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _check_config(args: argparse.Namespace) -> int:
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
    _check_start_files(settings)
    print(
        f"{args.config}: valid (mode {settings.mode}, identity {settings.identity.source}, "
        f"state {settings.state.backend}, store {settings.store.url.split(':', 1)[0]})"
    )
    return 0


def _check_start_files(settings: config.Settings) -> None:
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


def _secrets_check(args: argparse.Namespace) -> int:
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


def _demo(args: argparse.Namespace) -> int:
    from aiohttp import web

    from mfa_gateway.demo_app import create_demo_app
    from mfa_gateway.web.server import serve, start_site

    settings, password = demo.prepare(args.data_dir.resolve(), args.port, args.app_port)

    async def start_app() -> web.AppRunner:
        return await start_site(create_demo_app({demo.DEMO_USER: password}), "127.0.0.1", args.app_port)

    print(demo.instructions(settings, password), flush=True)
    serve(settings, extra=start_app)
    return 0


def _keygen(args: argparse.Namespace) -> int:
    document = (
        new_keyring_document(args.kid) if args.kind == "keyring" else new_signing_key_document(args.kid, args.alg)
    )
    print(document)
    return 0


def _users_add(args: argparse.Namespace) -> int:
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
    if len(password) < 12:
        print("mfa-gateway: use a password of at least 12 characters", file=sys.stderr)
        return 1
    users = UsersFile(users_file)
    existing = users.get(args.name)
    groups = tuple(args.groups) if args.groups else (existing.groups if existing else ())
    email = args.email if args.email is not None else (existing.email if existing else None)
    user = User(canonical_user(args.name), Hasher(settings.hashing.params()).hash(password), email, groups)
    users.put(user)
    print(f"user {user.username} saved in {users_file}")
    return 0


def _users_admin(args: argparse.Namespace) -> int:
    from mfa_gateway import admin

    settings = config.load_settings(args.config)
    return asyncio.run(admin.run(settings, args.action, getattr(args, "name", None), qr=getattr(args, "qr", None)))


def _rekey(args: argparse.Namespace) -> int:
    from mfa_gateway import admin

    settings = config.load_settings(args.config)
    return asyncio.run(admin.rekey(settings))
