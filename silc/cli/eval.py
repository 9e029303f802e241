"""``silc-bench eval <benchmark>``: run one registered harness on one model and write one result record."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from silc.cli.device import resolve_device
from silc.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` with one sub-command per registered harness (each with its own options)."""
    from benchmarks.registry import harnesses

    parser = subparsers.add_parser(
        "eval",
        help="run one benchmark on one model and write its result record",
        description="Run one benchmark harness on one model; prints the metrics and the record path.",
    )
    benches = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name, harness in harnesses().items():
        sub = benches.add_parser(name, help=harness.description, description=harness.description)
        _common_arguments(sub, harness)
        harness.add_arguments(sub)
        sub.set_defaults(func=run)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _common_arguments(parser: argparse.ArgumentParser, harness) -> None:
    parser.add_argument(
        "--model",
        required=True,
        metavar="SPEC",
        help="[ALIAS=]openclip:<model or config.json>[@<weights>], or a SiLC checkpoint/run dir",
    )
    parser.add_argument(
        "--data", required=True, metavar="ROOT", help="dataset root (its public on-disk layout)"
    )
    parser.add_argument(
        "--protocol",
        choices=sorted(harness.protocols),
        help=f"named protocol (default: {harness.default_protocol})",
    )
    parser.add_argument(
        "--results", default="results", metavar="DIR", help="result records folder (default: results)"
    )
    parser.add_argument("--rerun", action="store_true", help="recompute even if the record exists")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    parser.add_argument("--batch-size", type=int, default=64, help="images per encoder batch (default: 64)")
    parser.add_argument("--workers", type=int, help="DataLoader worker processes (default: min(4, CPUs))")
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="feature cache (default: $SILC_BENCH_CACHE or ~/.cache/silc-bench/features)",
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")


def run(args: argparse.Namespace) -> int:
    """Load the model, resolve and pin the protocol, run (or reuse) the record, print metrics and its path."""
    from adapters import load_encoder
    from benchmarks.registry import get_harness
    from benchmarks.runner import run_harness

    if args.batch_size < 1 or (args.workers is not None and args.workers < 0):
        raise UserError("--batch-size must be >= 1 and --workers >= 0")
    harness = get_harness(args.benchmark)
    protocol_name = args.protocol or harness.default_protocol
    protocol = harness.resolve_protocol(protocol_name, harness.protocol_overrides(args))
    data = Path(args.data)
    problems = harness.preflight(data)
    if problems:
        raise UserError(problems[0])
    encoder = load_encoder(args.model, device=resolve_device(args.device))
    known = {
        "model",
        "data",
        "protocol",
        "results",
        "rerun",
        "device",
        "func",
        "command",
        "benchmark",
        "verbose",
    }
    options = {k: v for k, v in vars(args).items() if k not in known} | {"results_dir": args.results}
    record, path, computed = run_harness(
        harness, encoder, data, protocol_name, protocol, args.results, rerun=args.rerun, options=options
    )
    if not computed:
        print(f"(existing record reused; --rerun to recompute) {path}")
    for key, value in record.metrics.items():
        print(f"{key}: {_fmt(value)}")
    for note in record.extra.get("notes", []) if isinstance(record.extra, dict) else []:
        print(f"note: {note}")
    print(f"images/s: {record.images_per_s:g}  wall: {record.wall_time_s:g} s  samples: {record.num_samples}")
    print(f"record: {path}")
    return 0


def _fmt(value: object) -> str:
    if value is None:
        return "undefined"
    if isinstance(value, float):
        return f"{value:.6f}"
    return json.dumps(value)
