"""``mfa-gateway demo``: the gateway on embedded defaults in front of the bundled legacy app."""

from __future__ import annotations

import argparse
from pathlib import Path

from mfa_gateway import demo
from mfa_gateway.cli.common import Commands, add_command


def register(commands: Commands) -> None:
    demo_cmd = add_command(
        commands,
        "demo",
        "run on embedded defaults (dev keys, SQLite, in-memory state) in front of a bundled demo app",
        "mfa-gateway demo --data-dir .demo --port 9090 --app-port 9091",
        quiet=False,
    )
    demo_cmd.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".demo"),
        metavar="DIR",
        help="where dev keys, the password and the database are kept (default: .demo)",
    )
    demo_cmd.add_argument("--port", type=int, default=9090, help="the gateway's port (default: 9090)")
    demo_cmd.add_argument("--app-port", type=int, default=9091, help="the bundled demo app's port (default: 9091)")
    demo_cmd.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from mfa_gateway.demo_app import create_demo_app
    from mfa_gateway.web.server import serve, start_site

    settings, password = demo.prepare(args.data_dir.resolve(), args.port, args.app_port)

    async def start_app() -> web.AppRunner:
        return await start_site(create_demo_app({demo.DEMO_USER: password}), "127.0.0.1", args.app_port)

    print(demo.instructions(settings, password), flush=True)
    serve(settings, extra=start_app)
    return 0
