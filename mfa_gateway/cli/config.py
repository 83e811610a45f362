"""``mfa-gateway config schema``: the config file's JSON Schema, for editors and CI checks."""

from __future__ import annotations

import argparse
import json

from mfa_gateway.cli.common import Commands, add_command
from mfa_gateway.config import json_schema


def register(commands: Commands) -> None:
    config_cmd = commands.add_parser("config", help="describe the config file", description="Describe the config file.")
    actions = config_cmd.add_subparsers(required=True, metavar="ACTION")
    schema = add_command(
        actions,
        "schema",
        "print the config file's JSON Schema (draft 2020-12)",
        "mfa-gateway config schema > gateway.schema.json",
    )
    schema.set_defaults(run=run_schema)


def run_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2, sort_keys=False))
    return 0
