"""``silc-bench table``: result records as the paper's tables (main, ablation, full, ovss) in Markdown, LaTeX or
CSV."""

from __future__ import annotations

import argparse
import sys

from silc.io import atomic_write_text


def cmd_table(args: argparse.Namespace) -> int:
    from benchmarks.table_models import default_baseline
    from benchmarks.table_render import render
    from benchmarks.tables import build_table

    group = seed_pattern(args)
    loaded = selected_records(args, group)
    baseline = args.baseline or default_baseline(loaded, group)
    df = build_table(loaded, args.layout, baseline, group=group, resamples=args.bootstrap)
    text = render(df, args.format, args.layout, latex_std=args.latex_std)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def selected_records(args: argparse.Namespace, group: str | None) -> list:
    """The records under ``--results`` of the models ``--models`` names (all when it is not given)."""
    from benchmarks.table_models import select_models
    from benchmarks.table_rows import load_results

    loaded = load_results(args.results)
    return select_models(loaded, [m for m in args.models.split(",") if m], group) if args.models else loaded


def seed_pattern(args: argparse.Namespace) -> str | None:
    """The seed-group regex of ``--group``/``--no-group`` (None: no groups)."""
    from benchmarks.table_models import SEED_PATTERN

    return None if args.no_group else (args.group or SEED_PATTERN)


def add_comparison_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``table`` and ``plot``: baseline, seed groups, bootstrap resamples."""
    p.add_argument("--results", default="results/default", help="records folder (default: results/default)")
    p.add_argument(
        "--baseline",
        help="alias or seed group the gains are measured against (default: clip, when present)",
    )
    p.add_argument(
        "--group",
        metavar="PATTERN",
        help="regex matching whole aliases, its first group (or group 'name') naming the recipe; two or more "
        "aliases of one recipe (its seeds) become one column, mean ± std (default: ^(.*)-s(\\d+)$, i.e. "
        "NAME-s0, NAME-s1, ...)",
    )
    p.add_argument("--no-group", action="store_true", help="no seed groups: one column per alias")
    p.add_argument(
        "--models",
        metavar="NAMES",
        help="comma-separated aliases or seed-group names to show (default: every model under --results)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        metavar="N",
        help="resamples of the paired bootstrap of the gains' 95%% intervals (default: as many as the records' "
        "own intervals used, normally 1000, the fewest where two records differ; 0: no intervals)",
    )


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of ``silc-bench table``."""
    p.description = (
        "Turn the result records under --results into a table. Records for the same benchmark under "
        "different protocols get separate rows naming the protocol; two records for the same cell are refused. "
        "Gains carry a 95 % interval from a paired bootstrap over the records' per-sample outcomes (bold: the "
        "interval excludes 0); seeds of one recipe (NAME-s0, NAME-s1, ...) show as mean ± std."
    )
    add_comparison_options(p)
    p.add_argument(
        "--layout",
        choices=("main", "ablation", "full", "ovss"),
        default="main",
        help="main | ablation | full | ovss (default: main; full also shows each seed; ovss: one row per model, "
        "the mIoU of the ovss8 suite's eight benchmarks and their mean, as SCLIP / NACLIP print them)",
    )
    p.add_argument(
        "--format", choices=("md", "latex", "csv"), default="md", help="md | latex | csv (default: md)"
    )
    p.add_argument(
        "--latex-std",
        choices=("small", "plain"),
        default="small",
        help="LaTeX seed groups: small = mean{\\scriptsize $\\pm$std} as papers print them, plain = "
        "mean $\\pm$ std (default: small)",
    )
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_table)
