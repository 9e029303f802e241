"""Run a suite: every (model x benchmark x protocol) of it, one record each (under torchrun every rank takes
part in every record); print its table."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from silc.errors import UserError

if TYPE_CHECKING:
    from benchmarks.suites import Suite


@dataclass(frozen=True)
class WorkItem:
    """One record to produce: the model (index into the model list) and the suite entry (index)."""

    model: int
    entry: int


def requeue(queue: list[WorkItem], item: WorkItem) -> None:
    """Put a deferred ``item`` back after the last queued item of its model (the queue is ordered by model), so
    its model, loaded now, is not loaded again for it."""
    after = max((i for i, queued in enumerate(queue) if queued.model == item.model), default=-1)
    queue.insert(after + 1, item)


def run_suite(
    specs: list[str],
    suite: Suite,
    data_root: Path,
    results_dir: Path,
    rerun: bool = False,
    device: str = "cpu",
    bootstrap: int | None = None,
    skip_bad_images: bool = False,
    identities: list[dict[str, Any]] | None = None,
) -> tuple[list[Path], int]:
    """Produce the records of (models x suite entries); returns (record paths, number computed). Under torchrun
    every rank processes every record in the same order, each computed by all ranks together (rank 0 decides
    and writes: :func:`benchmarks.runner.run_harness`), so every rank returns the same.
    ``bootstrap`` (resamples for the intervals) overrides the suite entries' own; ``skip_bad_images`` sets that
    option on every entry; ``identities`` (from the preflight, per entry) go into the records. A record another process is
    computing (a concurrent run on the same results folder) is deferred after its model's other records, then
    waited for."""
    from adapters import load_encoder
    from benchmarks.claims import ClaimedElsewhere
    from benchmarks.registry import get_harness
    from benchmarks.runner import run_harness
    from benchmarks.sharding import is_main

    resolved = suite.resolve()
    overrides = {"bootstrap": bootstrap} if bootstrap is not None else {}
    overrides |= {"skip_bad_images": True} if skip_bad_images else {}
    items = [WorkItem(m, e) for m in range(len(specs)) for e in range(len(resolved))]
    paths: list[Path] = []
    computed = 0
    encoder, loaded_index = None, None
    bar = tqdm(total=len(items), desc="silc-bench run", unit="record", disable=None if is_main() else True)
    with logging_redirect_tqdm(), bar:
        queue, deferred = list(items), []
        while queue:
            item = queue.pop(0)
            if loaded_index != item.model:
                encoder = None  # free the previous model before loading the next
                encoder = load_encoder(specs[item.model], device=device)
                loaded_index = item.model
            r = resolved[item.entry]
            data = data_root / r.entry.data
            bar.set_postfix_str(f"{encoder.name} {r.entry.benchmark}:{r.protocol_name}")
            try:
                record, path, fresh = run_harness(
                    get_harness(r.entry.benchmark),
                    encoder,
                    data,
                    r.protocol_name,
                    r.protocol,
                    results_dir,
                    rerun=rerun,
                    options={**r.entry.options, **overrides},
                    wait=item in deferred,  # a second time round: wait for the other process, then reuse
                    dataset_identity=identities[item.entry] if identities else None,
                )
            except ClaimedElsewhere:
                deferred.append(item)
                requeue(queue, item)
                continue
            computed += int(fresh)
            paths.append(path)
            bar.update(1)
    return paths, computed


def print_table(paths: list[Path], baseline: str | None, out=None) -> None:
    """The main comparison table of the records at ``paths`` (Markdown on stdout): gains with their paired-bootstrap
    95 % intervals (bold where the interval excludes 0) when the records kept per-sample outcomes."""
    from benchmarks.records import read_record
    from benchmarks.table_render import caption, render
    from benchmarks.table_rows import LoadedRecord
    from benchmarks.tables import build_table

    loaded = [LoadedRecord(p, read_record(p)) for p in sorted(set(paths))]
    df = build_table(loaded, "main", baseline)
    print(render(df, "md", "main") + caption(df), end="", file=out or sys.stdout)


def suite_data_root(suite: Suite, data_root: str | None, is_main: bool = True, barrier=None) -> Path:
    """``data_root`` if given, else the suite's synthetic world (generated into the cache by the main rank)."""
    from silc_bench.app.world_cache import ensure_world, world_dir

    if data_root:
        return Path(data_root)
    if suite.world is None:
        raise UserError(f"--data-root is required for suite {suite.name!r} (it runs on real datasets)")
    preset, seed = str(suite.world["preset"]), int(suite.world["seed"])
    if is_main:
        ensure_world(preset, seed)
    if barrier is not None:
        barrier()
    return world_dir(preset, seed)


def preflight_or_fail(
    suite: Suite, data_root: Path, device: str, allow_nonstandard: bool = False
) -> list[dict[str, Any]]:
    """List every problem of every entry (with the expected layout) on stderr and stop before compute; else each
    entry's dataset identity, for its records."""
    check = suite.check(data_root, device, allow_nonstandard)
    if check.failed:
        count = sum(len(f.problems) for f in check.failed)
        print(f"silc-bench: suite {suite.name!r} cannot run on {data_root}:", file=sys.stderr)
        for f in check.failed:
            print("\n".join(f"  {line}" for line in f.lines()), file=sys.stderr)
        raise UserError(f"{data_root}: {count} problem(s) listed above; nothing was computed")
    return check.identities


def preflight_on_main(
    suite: Suite, data_root: Path, device: str, allow_nonstandard: bool
) -> list[dict[str, Any]]:
    """:func:`preflight_or_fail` on the main rank only (it reads every entry's files), its outcome broadcast: every
    rank returns the identities or raises the same UserError (exit 2 on every rank, none left waiting)."""
    from benchmarks.sharding import on_main

    return on_main(lambda: preflight_or_fail(suite, data_root, device, allow_nonstandard))
