"""``silc-bench regress``: train the ablation variants briefly, evaluate them, compare with the committed reference.

Exit 0 when every metric of every variant lies within tolerance of the reference, 1 on any regression, 2 on bad
input (the logic lives in ``silc_bench.app.regress``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_REFERENCE = "results/reference/ablations.jsonl"


def cmd_regress(args: argparse.Namespace) -> int:
    """Run the regression of the suite's variants against the reference."""
    from silc_bench.app.regress import regress

    return regress(
        args.suite,
        Path(args.reference),
        update=args.update,
        work=Path(args.work) if args.work else None,
        budget_minutes=args.budget_minutes,
        device=args.device,
    )


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of ``silc-bench regress``."""
    p.description = (
        "Train every variant of the suite's 'train' section on the synthetic world (fixed seeds, "
        "deterministic), evaluate it with the suite's benchmarks, and compare every metric with the reference "
        "within the suite's tolerances. Exit status 1 on any metric outside tolerance."
    )
    p.add_argument(
        "--suite", default="ablations", help="suite with 'train' and 'tolerances' (default: ablations)"
    )
    p.add_argument("--reference", default=DEFAULT_REFERENCE, help="reference JSONL (default: %(default)s)")
    p.add_argument(
        "--budget-minutes", type=float, default=20.0, help="stop (exit 1) past this time (default: 20)"
    )
    p.add_argument("--update", action="store_true", help="rewrite the reference from this run (loudly)")
    p.add_argument("--work", help="folder for the runs and records (default: a new temporary folder)")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="training and evaluation device (default: cpu, as the reference)",
    )
    p.set_defaults(func=cmd_regress)
