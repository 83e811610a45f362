"""What every front door of the command line shares: exit codes, the help layout, the ``--config`` option."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXIT_CONFIG = 2
"""A config, secret or users-file problem: the message names the key and the fix."""

Commands = Any
"""``argparse``'s sub-parser collection (its class is private: ``argparse._SubParsersAction``)."""


def add_command(
    commands: Commands, name: str, summary: str, example: str, *, quiet: bool = True
) -> argparse.ArgumentParser:
    """A sub-command whose ``--help`` ends with an example, laid out as written. A ``quiet`` command (an
    administrator's: it prints its own answer) logs warnings only, unless ``-v/--verbose`` asks for INFO lines."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog="example:\n" + "\n".join(f"  {line}" for line in example.strip().splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if quiet:
        parser.add_argument("-v", "--verbose", action="store_true", help="also print INFO log lines (to stderr)")
    parser.set_defaults(quiet=quiet)
    return parser


def log_level(args: argparse.Namespace) -> str:
    """INFO for the long-running commands (serve, demo) and when ``--verbose`` asks; otherwise warnings only."""
    return "warning" if getattr(args, "quiet", False) and not getattr(args, "verbose", False) else "info"


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, metavar="FILE", help="the gateway's YAML config file")
