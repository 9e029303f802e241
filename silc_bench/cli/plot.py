"""``silc-bench plot``: PNG charts of result records (gains vs the baseline, per-class IoU deltas)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_plot(args: argparse.Namespace) -> int:
    from benchmarks.plots import plot_all
    from benchmarks.tables import default_baseline, load_results

    loaded = load_results(args.results)
    baseline = args.baseline or default_baseline(loaded)
    for path in plot_all(loaded, baseline, Path(args.out)):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of ``silc-bench plot``."""
    p.description = (
        "Write gains.png (each model's gain over the baseline on every key metric, one panel per "
        "benchmark) and, for segmentation records with per-class IoU, seg-classes-<model>-<protocol>.png."
    )
    p.add_argument("--results", default="results/default", help="records folder (default: results/default)")
    p.add_argument("--baseline", help="alias the gains are measured against (default: clip, when present)")
    p.add_argument("--out", required=True, help="folder for the PNG files")
    p.set_defaults(func=cmd_plot)
