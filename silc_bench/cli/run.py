"""``silc-bench run``: every (model x benchmark x protocol) of a suite, one record each, then the comparison table.

With no arguments it evaluates the bundled reference checkpoints (a tiny CLIP and a tiny SiLC) on the default
suite over the synthetic world, which it generates into the user cache on first use.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from silc.errors import UserError


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of ``silc-bench run``."""
    p.description = (
        "Run every (model x benchmark x protocol) of a suite, one result record each (existing "
        "records are skipped), then print the main comparison table. With no arguments: the bundled tiny "
        "CLIP and SiLC on the default suite over the synthetic world."
    )
    p.add_argument(
        "--model",
        action="append",
        metavar="[ALIAS=]SPEC",
        help="encoder spec (repeatable); default: the bundled reference checkpoints clip and silc",
    )
    p.add_argument(
        "--suite",
        default="default",
        help=(
            "default | paper | ablations | paper_synth | ovss8 | ovss8_sclip | ovss8_clearclip | ovss8_naclip"
            " (the ovss8 ones also as NAME_synth) | FILE.yaml (default: default)"
        ),
    )
    p.add_argument(
        "--data-root", help="folder holding the suite's datasets (default suite: the cached world)"
    )
    p.add_argument("--results", help="records folder (default: results/<suite name>)")
    p.add_argument("--baseline", help="alias the gains are measured against (default: clip, when present)")
    p.add_argument("--rerun", action="store_true", help="recompute records that already exist")
    p.add_argument(
        "--bootstrap",
        type=int,
        metavar="N",
        help="bootstrap resamples for the 95%% intervals of new records (default: 1000; 0: none)",
    )
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out images that do not decode (listed in each record's skipped_images) instead of stopping",
    )
    p.add_argument(
        "--allow-nonstandard",
        action="store_true",
        help="run entries whose data is not the public dataset they claim; their rows get the folder's own name",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Resolve suite and models, produce the records (resumable; under torchrun the ranks share each record's
    images), print the table."""
    from adapters import parse_spec
    from benchmarks.options import HarnessOptions
    from benchmarks.suites import load_suite
    from silc.distributed import barrier, cleanup, init_distributed
    from silc_bench.app.device import resolve_device
    from silc_bench.app.references import reference_specs
    from silc_bench.app.suite_run import preflight_on_main, print_table, run_suite, suite_data_root

    suite = load_suite(args.suite)
    suite.resolve()  # unknown benchmark/protocol/knob fails before anything else
    if args.bootstrap is not None:
        HarnessOptions(
            bootstrap=args.bootstrap
        )  # a bad --bootstrap fails here too, not after the first record
    specs = list(args.model) if args.model else reference_specs()
    aliases = [parse_spec(s).alias for s in specs]  # a malformed spec fails here, before any compute
    if args.baseline and args.baseline not in aliases:
        raise UserError(f"--baseline {args.baseline!r}: no --model has that alias ({specs})")
    baseline = args.baseline or ("clip" if "clip" in aliases else None)
    device = resolve_device(args.device)
    dist_info = init_distributed(device)
    try:
        data_root = suite_data_root(
            suite, args.data_root, dist_info.is_main, barrier=lambda: barrier(dist_info)
        )
        identities = preflight_on_main(suite, data_root, str(dist_info.device), args.allow_nonstandard)
        results = Path(args.results or Path("results") / suite.name)
        start = time.perf_counter()
        paths, computed = run_suite(
            specs,
            suite,
            data_root,
            results,
            rerun=args.rerun,
            device=str(dist_info.device),
            bootstrap=args.bootstrap,
            skip_bad_images=args.skip_bad_images,
            identities=identities,
        )
        if dist_info.is_main:
            wall = time.perf_counter() - start
            print(
                f"{len(paths)} record(s) in {results} ({computed} computed here, {wall:.1f} s)",
                file=sys.stderr,
            )
            print_table(paths, baseline)
    finally:
        cleanup()
    return 0
