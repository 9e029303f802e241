"""``silc-bench clip-benchmark -- <args>``: clip_benchmark's own CLI with model type ``silc`` registered.

Everything after ``--`` goes to ``clip_benchmark.cli`` unchanged, e.g.
``silc-bench clip-benchmark -- eval --model_type silc --model SPEC --dataset wds/x --dataset_root DIR``.
"""

from __future__ import annotations

import argparse
import sys

from silc.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``silc-bench clip-benchmark``."""
    parser.description = (
        "Run clip_benchmark's own command line (clip_benchmark.cli) with model type 'silc' "
        "registered, so --model takes any silc-bench model SPEC. Put clip_benchmark's arguments after '--'."
    )
    parser.add_argument(
        "cb_args",
        nargs=argparse.REMAINDER,
        metavar="-- ARGS",
        help="clip_benchmark arguments, e.g. eval --model_type silc --model SPEC --dataset ...",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Register ``silc`` in clip_benchmark's model registry and hand the arguments to its CLI."""
    from adapters.clip_benchmark import register_model_type

    cb_args = list(args.cb_args)
    if cb_args and cb_args[0] == "--":
        cb_args = cb_args[1:]
    if not cb_args:
        raise UserError(
            "clip-benchmark: expected clip_benchmark arguments after '--', e.g. -- eval --model_type "
            "silc --model SPEC --dataset wds/NAME --dataset_root DIR"
        )
    register_model_type()
    from clip_benchmark import cli

    saved = sys.argv
    sys.argv = ["clip_benchmark", *cb_args]
    try:
        cli.main()
    except SystemExit as e:  # argparse --help / usage errors inside clip_benchmark
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        sys.argv = saved
    return 0
