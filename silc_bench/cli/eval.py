"""``silc-bench eval <benchmark>``: run one registered harness on one model and write one result record."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from silc.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    """``eval`` with one sub-command per registered harness, its flags built from the harness's typed options."""
    from benchmarks.registry import harnesses
    from silc_bench.cli.options import add_option_flags

    parser.description = "Run one benchmark harness on one model; prints the metrics and the record path."
    benches = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name, harness in harnesses().items():
        sub = benches.add_parser(name, help=harness.description, description=harness.description)
        _common_arguments(sub, harness)
        add_option_flags(sub.add_argument_group(f"{name} options"), harness.options_type)
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


def run(args: argparse.Namespace) -> int:
    """Load the model, resolve and pin the protocol, run (or reuse) the record, print metrics and its path. Under
    torchrun the ranks share the benchmark's images; rank 0 checks the data, writes and prints."""
    from benchmarks.registry import get_harness
    from benchmarks.sharding import on_main
    from silc.distributed import cleanup, init_distributed
    from silc_bench.app.device import resolve_device
    from silc_bench.cli.options import options_from_args

    harness = get_harness(args.benchmark)
    options = options_from_args(harness.options_type, args)
    protocol_name = args.protocol or harness.default_protocol
    protocol = harness.resolve_protocol(protocol_name, options.knobs())
    data = Path(args.data)
    dist_info = init_distributed(resolve_device(args.device))
    try:
        on_main(lambda: _preflight(harness, data, protocol, options, str(dist_info.device)))
        return _evaluate(args, harness, data, protocol_name, protocol, options, dist_info)
    finally:
        cleanup()


def _preflight(harness, data: Path, protocol: dict, options, device: str) -> None:
    """Every problem of the data for this harness and protocol, in one line (a UserError), before any compute."""
    problems = list(dict.fromkeys(harness.preflight(data, protocol, options, device)))
    if len(problems) > 1:  # all of them, still one line
        raise UserError(
            f"{len(problems)} problems: " + " ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        )
    if problems:
        raise UserError(problems[0])


def _evaluate(args, harness, data: Path, protocol_name: str, protocol: dict, options, dist_info) -> int:
    """Run (or reuse) the record on every rank; rank 0 prints its metrics and path."""
    from adapters import load_encoder
    from benchmarks.runner import run_harness

    encoder = load_encoder(args.model, device=dist_info.device)
    record, path, computed = run_harness(
        harness, encoder, data, protocol_name, protocol, args.results, rerun=args.rerun, options=options
    )
    if not dist_info.is_main:
        return 0
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
