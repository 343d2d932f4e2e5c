"""The ``trading-engine`` command line.

Exit codes: 0 success, 2 usage or configuration error, 1 anything else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .config import load_config
from .errors import ConfigError

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"{args.file}: invalid", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"{args.file}: valid ({len(config.instruments)} instrument(s), "
        f"{len(config.strategies)} strateg{'y' if len(config.strategies) == 1 else 'ies'})"
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    parser = argparse.ArgumentParser(
        prog="trading-engine",
        description="A low-latency trading engine: market data in, safe orders out.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = commands.add_parser(
        "check-config",
        help="validate a configuration file and print each error",
        description="Validate a configuration file (with TRADING_ENGINE__* overrides) "
        "and print each error. Exit 0 when valid, 2 when not.",
    )
    check.add_argument("file", metavar="FILE", help="the TOML configuration file")
    check.set_defaults(handler=_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return EXIT_FAILURE
    return code


if __name__ == "__main__":
    sys.exit(main())
