"""``mfa-gateway injector --config FILE``: the mutating admission webhook that injects the gateway sidecar.

It answers the API server's AdmissionReviews for pods labelled ``mfa-gateway.io/inject: "true"`` over HTTPS
(``mfa_gateway.web.injector``), with the settings of its own config file (``config/injector.yaml``). A config
problem exits 2 with one line per problem naming the key and the fix; SIGTERM stops it gracefully.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mfa_gateway import logs
from mfa_gateway.cli.common import EXIT_CONFIG, Commands, add_command


def register(commands: Commands) -> None:
    command = add_command(
        commands,
        "injector",
        "run the admission webhook that adds the gateway sidecar to pods labelled mfa-gateway.io/inject",
        """
mfa-gateway injector --config /etc/mfa-gateway-injector/injector.yaml
mfa-gateway injector --config injector.yaml --log-format text   # on a terminal (tls.cert_file and key_file)
""",
        quiet=False,
    )
    command.add_argument("--config", type=Path, required=True, metavar="FILE", help="the injector's YAML config file")
    command.add_argument(
        "--log-format", choices=("json", "text"), default="json", help="json (one object per line, the default) or text"
    )
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mfa_gateway.config.injector import load_injector_config
    from mfa_gateway.runtime.injector import build_injector
    from mfa_gateway.web.injector import serve_injector
    from mfa_gateway.web.server import ListenerUnavailable

    config = load_injector_config(args.config)  # a ConfigError is exit 2, in cli.main
    logs.configure("info", args.log_format)
    runtime = build_injector(config)
    try:
        serve_injector(runtime)
    except ListenerUnavailable as exc:
        print(f"mfa-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0
