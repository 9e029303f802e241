"""``silc-bench regress``: train the ablation variants, compare them with the committed reference, judge them.

Exit 0 when every comparison and gate holds, 1 on any regression (or a refused ``--update``), 2 on bad input
(the logic lives in ``silc_bench.app.regress``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_REFERENCE = "results/reference/ablations"
TIER_CHOICES = ("all", "fingerprints", "metrics")


def cmd_regress(args: argparse.Namespace) -> int:
    """Run the regression of the suite's variants against the reference."""
    from benchmarks.regress_spec import TIERS
    from silc.errors import UserError
    from silc_bench.app.regress import regress

    if args.force and not args.update:
        raise UserError("--force: only meaningful with --update")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs: expected an integer >= 1, got {args.jobs}")
    return regress(
        args.suite,
        Path(args.reference),
        tiers=TIERS if args.tier == "all" else (args.tier,),
        update=args.update,
        force=args.force,
        work=Path(args.work) if args.work else None,
        jobs=args.jobs,
        budget_minutes=args.budget_minutes,
        device=args.device,
    )


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of ``silc-bench regress``."""
    p.description = (
        "Train every variant of the suite's 'train' section on the synthetic world (fixed seeds, deterministic, "
        "one process per variant) and compare it with the reference: per-step trajectories and evaluation "
        "fingerprints of short runs (tier 'fingerprints'), then the metrics of full runs with the suite's "
        "signal gate and findings checks (tier 'metrics'). Exit status 1 on any regression."
    )
    p.add_argument(
        "--suite", default="ablations", help="suite with 'train' and 'fingerprint' (default: ablations)"
    )
    p.add_argument("--reference", default=DEFAULT_REFERENCE, help="reference folder (default: %(default)s)")
    p.add_argument(
        "--tier",
        choices=TIER_CHOICES,
        default="all",
        help="which tier(s) to run (default: all, fingerprints first)",
    )
    p.add_argument(
        "--budget-minutes", type=float, default=30.0, help="fail (exit 1) past this much time (default: 30)"
    )
    p.add_argument(
        "--jobs",
        type=int,
        help="variants trained at once (default: usable cores / the suite's threads per run)",
    )
    p.add_argument("--update", action="store_true", help="rewrite the reference from this run (loudly)")
    p.add_argument(
        "--force",
        action="store_true",
        help="with --update: write the reference even if a gate fails (the reference's meta.json records it)",
    )
    p.add_argument("--work", help="folder for the runs and records (default: a new temporary folder)")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="training and evaluation device of the metrics tier (default: cpu, as the reference)",
    )
    p.set_defaults(func=cmd_regress)
