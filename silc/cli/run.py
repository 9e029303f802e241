"""``silc-bench run``: every (model x benchmark x protocol) of a suite, one record each, then the comparison table.

With no arguments it evaluates the bundled reference checkpoints (a tiny CLIP and a tiny SiLC) on the default
suite over the synthetic world, which it generates into the user cache on first use.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from silc.cli.device import resolve_device
from silc.errors import UserError

if TYPE_CHECKING:
    from benchmarks.suites import Suite

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"
REFERENCE_ALIASES = ("clip", "silc")


@dataclass(frozen=True)
class WorkItem:
    """One record to produce: the model (index into the model list) and the suite entry (index)."""

    model: int
    entry: int


def reference_specs() -> list[str]:
    """Encoder specs of the bundled reference checkpoints (``clip=...``, ``silc=...``)."""
    specs = []
    for alias in REFERENCE_ALIASES:
        cfg, weights = (
            REFERENCE_DIR / alias / "open_clip_config.json",
            REFERENCE_DIR / alias / "model.safetensors",
        )
        if not (cfg.is_file() and weights.is_file()):
            raise UserError(
                f"{REFERENCE_DIR / alias}: bundled reference checkpoint missing (open_clip_config.json + "
                f"model.safetensors); see {REFERENCE_DIR / 'README.md'} or pass --model"
            )
        specs.append(f"{alias}=openclip:{cfg}@{weights}")
    return specs


def split_work(items: list[WorkItem], rank: int, world_size: int) -> list[WorkItem]:
    """This rank's share: round-robin over the deterministic item order (identical on every rank)."""
    return items[rank::world_size]


def run_suite(
    specs: list[str],
    suite: Suite,
    data_root: Path,
    results_dir: Path,
    rerun: bool = False,
    device: str = "cpu",
    rank: int = 0,
    world_size: int = 1,
) -> tuple[list[Path], int]:
    """Produce this rank's records of (models x suite entries); returns (record paths, number computed)."""
    from adapters import load_encoder
    from benchmarks.registry import get_harness
    from benchmarks.runner import run_harness

    resolved = suite.resolve()
    items = [WorkItem(m, e) for m in range(len(specs)) for e in range(len(resolved))]
    mine = split_work(items, rank, world_size)
    paths: list[Path] = []
    computed = 0
    encoder, loaded_index = None, None
    desc = "silc-bench run" if world_size == 1 else f"silc-bench run [rank {rank}]"
    with logging_redirect_tqdm(), tqdm(total=len(mine), desc=desc, unit="record", position=rank) as bar:
        for item in mine:
            if loaded_index != item.model:
                encoder = None  # free the previous model before loading the next
                encoder = load_encoder(specs[item.model], device=device)
                loaded_index = item.model
            r = resolved[item.entry]
            data = data_root / r.entry.data
            bar.set_postfix_str(f"{encoder.name} {r.entry.benchmark}:{r.protocol_name}")
            record, path, fresh = run_harness(
                get_harness(r.entry.benchmark),
                encoder,
                data,
                r.protocol_name,
                r.protocol,
                results_dir,
                rerun=rerun,
                options=r.entry.options,
            )
            computed += int(fresh)
            paths.append(path)
            bar.update(1)
    return paths, computed


def _gather_paths(paths: list[Path], world_size: int) -> list[Path]:
    """Every rank's record paths (in rank order), for the table rank 0 prints."""
    if world_size == 1:
        return paths
    import torch.distributed as dist

    gathered: list[list[str] | None] = [None] * world_size
    dist.all_gather_object(gathered, [str(p) for p in paths])
    return [Path(p) for part in gathered for p in (part or [])]


def print_table(paths: list[Path], baseline: str | None, out=None) -> None:
    """The main comparison table of the records at ``paths`` (Markdown on stdout)."""
    from benchmarks.records import read_record
    from benchmarks.tables import LoadedRecord, build_table, render

    loaded = [LoadedRecord(p, read_record(p)) for p in sorted(set(paths))]
    print(render(build_table(loaded, "main", baseline), "md", "main"), end="", file=out or sys.stdout)


def _data_root(args: argparse.Namespace, suite: Suite, dist_info) -> Path:
    from silc.distributed import barrier

    if args.data_root:
        return Path(args.data_root)
    if suite.world is None:
        raise UserError(f"--data-root is required for suite {suite.name!r} (it runs on real datasets)")
    from silc.cli.world_cache import ensure_world, world_dir

    preset, seed = str(suite.world["preset"]), int(suite.world["seed"])
    if dist_info.is_main:
        ensure_world(preset, seed)
    barrier(dist_info)
    return world_dir(preset, seed)


def preflight_or_fail(suite: Suite, data_root: Path) -> None:
    """List every missing dataset file/folder (with the expected layout) on stderr and stop before compute."""
    failed = suite.preflight(data_root)
    if failed:
        count = sum(len(f.problems) for f in failed)
        print(f"silc-bench: suite {suite.name!r} cannot run on {data_root}:", file=sys.stderr)
        for f in failed:
            print("\n".join(f"  {line}" for line in f.lines()), file=sys.stderr)
        raise UserError(
            f"{data_root}: {count} missing dataset file(s) or folder(s) listed above; nothing was computed"
        )


def cmd_run(args: argparse.Namespace) -> int:
    from benchmarks.suites import load_suite
    from silc.distributed import cleanup, init_distributed

    suite = load_suite(args.suite)
    suite.resolve()  # unknown benchmark/protocol/knob fails before anything else
    from adapters import parse_spec

    specs = list(args.model) if args.model else reference_specs()
    aliases = [parse_spec(s).alias for s in specs]  # a malformed spec fails here, before any compute
    if args.baseline and args.baseline not in aliases:
        raise UserError(f"--baseline {args.baseline!r}: no --model has that alias ({specs})")
    baseline = args.baseline or ("clip" if "clip" in aliases else None)
    device = resolve_device(args.device)
    dist_info = init_distributed(device)
    try:
        data_root = _data_root(args, suite, dist_info)
        preflight_or_fail(suite, data_root)
        results = Path(args.results or Path("results") / suite.name)
        start = time.perf_counter()
        paths, computed = run_suite(
            specs,
            suite,
            data_root,
            results,
            rerun=args.rerun,
            device=str(dist_info.device),
            rank=dist_info.rank,
            world_size=dist_info.world_size,
        )
        paths = _gather_paths(paths, dist_info.world_size)
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


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a benchmark suite on one or more models and print the comparison table",
        description="Run every (model x benchmark x protocol) of a suite, one result record each (existing "
        "records are skipped), then print the main comparison table. With no arguments: the bundled tiny "
        "CLIP and SiLC on the default suite over the synthetic world.",
    )
    p.add_argument(
        "--model",
        action="append",
        metavar="[ALIAS=]SPEC",
        help="encoder spec (repeatable); default: the bundled reference checkpoints clip and silc",
    )
    p.add_argument(
        "--suite", default="default", help="default | paper | ablations | FILE.yaml (default: default)"
    )
    p.add_argument(
        "--data-root", help="folder holding the suite's datasets (default suite: the cached world)"
    )
    p.add_argument("--results", help="records folder (default: results/<suite name>)")
    p.add_argument("--baseline", help="alias the gains are measured against (default: clip, when present)")
    p.add_argument("--rerun", action="store_true", help="recompute records that already exist")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    p.set_defaults(func=cmd_run)
