"""``silc-bench experiment``: train a suite's recipes with every seed, evaluate them, write the write-up's tables.

Exit 0 when every table is written, 1 when a training run fails (its log tail is shown), 2 on bad input (the logic
lives in ``silc_bench.app.experiment``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run the experiment of ``--suite``; print each table it writes."""
    from benchmarks.suites import load_suite
    from silc.errors import UserError
    from silc_bench.app.experiment import run_experiment
    from silc_bench.app.variant_runs import TrainingFailed

    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs: expected an integer >= 1, got {args.jobs}")
    suite = load_suite(args.suite)
    runs = Path(args.runs) if args.runs else Path("runs") / suite.name
    results = Path(args.results) if args.results else Path("results") / suite.name
    tables = [t for t in args.tables.split(",") if t] if args.tables else None
    try:
        written = run_experiment(suite, runs, results, tables, args.jobs, args.device)
    except TrainingFailed as e:
        print(f"silc-bench experiment: {e}", file=sys.stderr)
        return 1
    for path in written:
        print(path.read_text())
    return 0


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of ``silc-bench experiment``."""
    p.description = (
        "Train every recipe of the suite's 'experiment' section with every seed on the suite's synthetic world "
        "(one process per run, as many at once as the cores allow), evaluate each run on the suite's benchmarks "
        "and write each table (RESULTS/<table>.md). Resumable: finished runs and existing records are reused, an "
        "interrupted run goes on from its last checkpoint."
    )
    p.add_argument(
        "--suite", default="paper_synth", help="suite with an 'experiment' section (default: %(default)s)"
    )
    p.add_argument("--runs", help="folder for the training runs (default: runs/<suite name>)")
    p.add_argument("--results", help="folder for the records and tables (default: results/<suite name>)")
    p.add_argument(
        "--tables", metavar="NAMES", help="comma-separated tables to produce (default: all, in order)"
    )
    p.add_argument("--jobs", type=int, help="runs trained at once (default: usable cores / threads per run)")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="training and evaluation device (default: cpu)",
    )
    p.set_defaults(func=cmd_experiment)
