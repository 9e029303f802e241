"""The ``silc-bench`` command line: the one layer that wires silc, adapters and benchmarks together."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from silc import __version__
from silc.errors import UserError

# Each module defines ``register(subparsers)`` adding its sub-command(s); each sub-command sets ``func``.
COMMAND_MODULES = [
    "silc.cli.data",
    "silc.cli.info",
    "silc.cli.eval",
    "silc.cli.clip_benchmark",
    "silc.cli.run",
    "silc.cli.table",
    "silc.cli.plot",
    "silc.cli.regress",
    "silc.cli.train",
    "silc.cli.export",
    "silc.cli.plot_train",
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every sub-command of COMMAND_MODULES."""
    parser = argparse.ArgumentParser(
        prog="silc-bench", description="SiLC trainer and vision-language benchmark suite."
    )
    parser.add_argument("--version", action="version", version=f"silc-bench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, and turn a UserError into one line on stderr and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"silc-bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("silc-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
