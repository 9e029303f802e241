"""The ``silc-bench`` command line: argparse only. Commands are registered by name with a one-line help; a
command's module (which defines ``configure(parser)``) is imported only when that command runs or shows its
help, so ``silc-bench --help`` imports nothing heavy and ``silc-bench train`` no evaluation stack."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from silc import __version__
from silc.errors import UserError

# name -> (module defining ``configure(parser)``, one-line help shown by ``silc-bench --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": (
        "silc_bench.cli.data",
        "write the synthetic world, OV-COCO files, COCO-Object or the ovss8 synthetic layouts, or preview a data folder",
    ),
    "info": (
        "silc_bench.cli.info",
        "print a model's name, dims, patch size, normalisation, dense modes and weights fingerprint",
    ),
    "eval": ("silc_bench.cli.eval", "run one benchmark on one model and write its result record"),
    "clip-benchmark": (
        "silc_bench.cli.clip_benchmark",
        "run clip_benchmark's CLI with model type 'silc' (--model_type silc --model SPEC)",
    ),
    "run": (
        "silc_bench.cli.run",
        "run a benchmark suite on one or more models and print the comparison table",
    ),
    "table": (
        "silc_bench.cli.table",
        "build a results table (main, ablation or full layout) from result records",
    ),
    "plot": (
        "silc_bench.cli.plot",
        "plot gains over the baseline and per-class IoU deltas from result records",
    ),
    "regress": (
        "silc_bench.cli.regress",
        "train the ablation variants briefly and compare their metrics with the committed reference",
    ),
    "experiment": (
        "silc_bench.cli.experiment",
        "train a suite's recipes with every seed, evaluate them and write its tables (resumable)",
    ),
    "train": ("silc_bench.cli.train", "train a CLIP / SiLC model from a YAML config"),
    "export": (
        "silc_bench.cli.export",
        "export a run's student weights to safetensors (+ open_clip JSON config)",
    ),
    "plot-train": ("silc_bench.cli.plot_train", "plot a run's training curves from RUN/log.jsonl"),
}


def selected_command(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first argument that is not a global option), if it is a known one."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser: every command listed with its help; only ``command``'s module imported and configured."""
    parser = argparse.ArgumentParser(
        prog="silc-bench", description="SiLC trainer and vision-language benchmark suite."
    )
    parser.add_argument("--version", action="version", version=f"silc-bench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, and turn a UserError into one line on stderr and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(selected_command(argv))
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
