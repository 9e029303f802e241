"""``silc-bench table``: result records as the paper's tables (main, ablation, full) in Markdown, LaTeX or CSV."""

from __future__ import annotations

import argparse
import sys

from silc.io import atomic_write_text


def cmd_table(args: argparse.Namespace) -> int:
    from benchmarks.tables import build_table, default_baseline, load_results, render

    loaded = load_results(args.results)
    baseline = args.baseline or default_baseline(loaded)
    text = render(build_table(loaded, args.layout, baseline), args.format, args.layout)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of ``silc-bench table``."""
    p.description = (
        "Turn the result records under --results into a table. Records for the same benchmark under "
        "different protocols get separate rows naming the protocol; two records for the same cell are refused."
    )
    p.add_argument("--results", default="results/default", help="records folder (default: results/default)")
    p.add_argument("--baseline", help="alias the gains are measured against (default: clip, when present)")
    p.add_argument(
        "--layout",
        choices=("main", "ablation", "full"),
        default="main",
        help="main | ablation | full (default: main)",
    )
    p.add_argument(
        "--format", choices=("md", "latex", "csv"), default="md", help="md | latex | csv (default: md)"
    )
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_table)
