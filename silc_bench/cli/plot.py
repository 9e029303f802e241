"""``silc-bench plot``: PNG charts of result records (gains vs the baseline with intervals, per-class IoU deltas)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_plot(args: argparse.Namespace) -> int:
    from benchmarks.plots import plot_all
    from benchmarks.table_models import default_baseline
    from silc_bench.cli.table import seed_pattern, selected_records

    group = seed_pattern(args)
    loaded = selected_records(args, group)
    baseline = args.baseline or default_baseline(loaded, group)
    for path in plot_all(loaded, baseline, Path(args.out), group=group, resamples=args.bootstrap):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of ``silc-bench plot``."""
    from silc_bench.cli.table import add_comparison_options

    p.description = (
        "Write gains.png (each model's or seed group's gain over the baseline on every key metric, one panel "
        "per benchmark, error bars from the paired-bootstrap 95 % interval, solid bars where it excludes 0) and, "
        "for segmentation records with per-class IoU, seg-classes-<model>-<protocol>-<hash>.png (per-class "
        "deltas, with per-class paired intervals when both records kept per-sample outcomes)."
    )
    add_comparison_options(p)
    p.add_argument("--out", required=True, help="folder for the PNG files")
    p.set_defaults(func=cmd_plot)
