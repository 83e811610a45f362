"""``mfa-gateway serve``: run the gateway from a config file."""

from __future__ import annotations

import argparse
import sys

from mfa_gateway import config
from mfa_gateway.cli.common import EXIT_CONFIG, Commands, add_command, add_config


def register(commands: Commands) -> None:
    serve = add_command(
        commands, "serve", "run the gateway", "mfa-gateway serve --config /etc/mfa-gateway/gateway.yaml", quiet=False
    )
    add_config(serve)
    serve.add_argument(
        "--workers", type=int, metavar="N", help="processes sharing the port (overrides the workers key)"
    )
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mfa_gateway.web.server import ListenerUnavailable, serve

    overrides = {"workers": args.workers} if args.workers is not None else None
    settings = config.load_settings(args.config, overrides)
    try:
        serve(settings)  # each worker sets up logging from the settings
    except ListenerUnavailable as exc:
        print(f"mfa-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0
